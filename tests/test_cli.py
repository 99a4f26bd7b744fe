import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from babelbot.config import ConfigError, load_config
from babelbot.labels import INTENTS
from bot.config import BotConfig
from bot.store import Store
from prompts.locales import locale_for


def babelbot(*args, stdin: str = ""):
    return subprocess.run(
        [sys.executable, "-m", "babelbot.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_route_jsonl_keeps_ids_and_reports_language_intent_adapter():
    lines = [
        {"id": 7, "text": "¿Dónde está mi pedido NW-12345?"},
        {"id": "b", "text": "我想退货"},
        {"id": None, "text": ""},
    ]
    run = babelbot("route", "--jsonl", "-", stdin="\n".join(json.dumps(line) for line in lines) + "\n")
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [o["id"] for o in out] == [7, "b", None]
    assert [o["language"] for o in out[:2]] == ["es", "zh"]
    assert all(o["intent"] in INTENTS and "adapter" in o for o in out)
    assert out[0]["intent"] == "order_status"


def test_route_jsonl_reports_bad_lines_and_goes_on(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "text": "hello"}\nnot json\n{"id": 3}\n{"id": 4, "text": "bonjour, où est ma commande ?"}\n')
    run = babelbot("route", "--jsonl", str(path))
    assert run.returncode == 1
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [o.get("id") for o in out] == [1, None, None, 4]
    assert out[1]["error"].startswith("line 2:") and out[2]["error"].startswith("line 3:")
    assert out[3]["language"] == "fr"


def test_bad_config_is_a_clear_error_not_a_traceback():
    run = babelbot("route", "--jsonl", "-", "temprature=0.5")
    assert run.returncode == 2 and "unknown config keys ['temprature']" in run.stderr and "Traceback" not in run.stderr


@dataclass
class Inner:
    size: int = 1

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.5
    flag: bool = False
    device: str | None = None
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def test_load_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: file\ninner:\n  size: 3\n")
    config = load_config(Outer, path, ["rate=0.25", "flag=yes", "device=none", "inner.size=4"])
    assert config == Outer(name="file", rate=0.25, flag=True, device=None, inner=Inner(size=4))
    with pytest.raises(ConfigError, match=r"unknown config keys \['inner.sise'\]"):
        load_config(Outer, None, ["inner.sise=2"])
    with pytest.raises(ConfigError, match="rate: expected float"):
        load_config(Outer, None, ["rate=fast"])
    with pytest.raises(ConfigError, match="inner.size must be >= 1"):
        load_config(Outer, None, ["inner.size=0"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["rate"])
    # Lists on the command line: comma-separated, or written as in YAML
    assert load_config(Outer, None, ["tags=es,de"]).tags == ["es", "de"]
    assert load_config(Outer, None, ["tags=[es, de]"]).tags == ["es", "de"]


def test_bot_config_defaults_are_valid():
    config = load_config(BotConfig, None, ["generation.max_new_tokens=32", "dialogue.context_tokens=1024"])
    assert config.generation.max_new_tokens == 32 and config.dialogue.context_tokens == 1024
    with pytest.raises(ConfigError, match="max_new_tokens"):
        load_config(BotConfig, None, ["generation.max_new_tokens=0"])


def test_reply_jsonl_answers_each_line_as_a_new_conversation(tiny_model_dir, babelbot_home):
    lines = [{"id": "a", "text": "Hello, where is my order?"}, {"id": "b", "text": "   "}]
    run = babelbot(
        "reply", "--jsonl", "-", f"model={tiny_model_dir}", "generation.max_new_tokens=8",
        stdin="\n".join(json.dumps(line) for line in lines),
    )
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "b"]
    assert out[0]["language"] == "en" and out[0]["reply"]
    assert out[1]["reply"] == "Please type a message so I can help you."
    assert not (babelbot_home / "conversations.sqlite3").exists()  # kept out of the real database


def test_adapters_list_show_verify(tiny_model_dir, tiny_adapters_dir, tmp_path):
    import shutil

    root = tmp_path / "adapters"
    shutil.copytree(tiny_adapters_dir, root)
    listed = babelbot("adapters", "list", "--dir", str(root))
    assert listed.returncode == 0 and "reply-es-lora\treply\tes\tlora" in listed.stdout
    shown = babelbot("adapters", "show", "reply-es-prompt-tuning", "--dir", str(root))
    assert json.loads(shown.stdout)["method"] == "prompt_tuning"
    ok = babelbot("adapters", "verify", "--dir", str(root), "--model", str(tiny_model_dir))
    assert ok.returncode == 0 and ok.stdout.count(": ok") == 2
    (root / "reply-es-lora" / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    bad = babelbot("adapters", "verify", "--dir", str(root))
    assert bad.returncode == 1 and "reply-es-lora: " in bad.stdout and "corrupt" in bad.stdout


def test_terminal_chat_shows_the_route_and_keeps_the_session(tiny_model_dir, babelbot_home):
    run = babelbot("chat", "--session", "t1", f"model={tiny_model_dir}", "generation.max_new_tokens=4",
                   stdin="Hola, ¿dónde está mi pedido NW-12345?\n/reset\n")
    assert run.returncode == 0, run.stderr
    assert "[🌐 es · order_status · base model]" in run.stdout
    assert run.stdout.strip().endswith(locale_for("es").notice("reset"))  # /reset answers in Spanish
    store = Store(babelbot_home / "conversations.sqlite3")
    assert store.session("t1").conversation == 2 and store.turns(store.session("t1")) == []
