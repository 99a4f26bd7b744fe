"""The engine serves LoRA and prompt-tuning adapters exactly as plain PEFT does."""

import json
import shutil

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from adapters.registry import load_registry
from babelbot.models import load_model, model_fingerprint
from bot.config import GenerationSettings
from bot.engine import Engine
from evals.adapters import greedy_reply
from prompts.formats import PlainFormat, Prompt, Turn

PROMPT = Prompt(system="Be brief.", turns=(Turn("user", "Hola, ¿dónde está mi pedido NW-12345?"),))


def plain_peft_reply(tiny_model_dir, adapter_dir) -> str:
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).eval() if adapter_dir else base.eval()
    _, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    return greedy_reply(model, tokenizer, PlainFormat(), PROMPT, max_new_tokens=16)


def test_each_adapter_generates_exactly_like_plain_peft(tiny_model_dir, tiny_adapters_dir):
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=16))
    loaded = engine.load_adapters(load_registry(tiny_adapters_dir), model_fingerprint(str(tiny_model_dir)))
    assert sorted(loaded) == ["reply-es-lora", "reply-es-prompt-tuning"]
    replies = {}
    for name in (None, "reply-es-lora", "reply-es-prompt-tuning", None):  # base again: adapters leave no trace
        replies[name] = engine.complete(PROMPT, name)
        # The engine never shows half a character: a reply cut inside one ends before it.
        expected = plain_peft_reply(tiny_model_dir, tiny_adapters_dir / name if name else None).rstrip("\ufffd").strip()
        assert replies[name].strip() == expected, name
    assert len(set(replies.values())) == 3  # the adapters really change the output


def test_soft_prompt_generation_matches_peft_forward_step_by_step(tiny_model_dir, tiny_adapters_dir):
    """The ground truth for a prompt-tuning adapter: PEFT's forward over the whole sequence
    (soft prompt once, no cache), one greedy token at a time. `soft_prompts.generate` must
    give the same tokens; PEFT's own `generate` (soft prompt again at every cached step with
    transformers 5) does not, which is why the workaround exists."""
    import torch

    from babelbot import soft_prompts

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, tiny_adapters_dir / "reply-es-prompt-tuning").eval()
    _, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    input_ids = tokenizer(PlainFormat().apply(PROMPT), return_tensors="pt")["input_ids"]
    expected = []
    with torch.no_grad():
        sequence = input_ids
        for _ in range(12):
            token = model(input_ids=sequence).logits[0, -1].argmax().item()
            expected.append(token)
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        settings = dict(max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
        ours = soft_prompts.generate(model, input_ids, **settings)[0].tolist()
        peft_own = model.generate(input_ids=input_ids, **settings)[0, input_ids.shape[1] :].tolist()
    assert ours == expected
    assert peft_own != expected  # when this fails PEFT has fixed it: babelbot/soft_prompts.py can go


def test_corrupt_or_foreign_adapters_are_refused_and_the_rest_served(tiny_model_dir, tiny_adapters_dir, tmp_path, caplog):
    root = tmp_path / "adapters"
    shutil.copytree(tiny_adapters_dir, root)
    (root / "reply-es-lora" / "adapter_model.safetensors").write_bytes(b"\0garbage")
    card = json.loads((root / "reply-es-prompt-tuning" / "card.json").read_text())
    shutil.copytree(root / "reply-es-prompt-tuning", root / "reply-fr-prompt-tuning")
    card.update(name="reply-fr-prompt-tuning", languages=["fr"], base_fingerprint="f" * 64)
    (root / "reply-fr-prompt-tuning" / "card.json").write_text(json.dumps(card))
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=8))
    loaded = engine.load_adapters(load_registry(root), model_fingerprint(str(tiny_model_dir)))
    assert list(loaded) == ["reply-es-prompt-tuning"]
    assert "refusing adapter reply-es-lora" in caplog.text and "trained on other base weights" in caplog.text
    assert engine.complete(PROMPT, "reply-es-prompt-tuning")
    with pytest.raises(ValueError, match="not loaded"):
        engine.complete(PROMPT, "reply-es-lora")


def test_the_bot_answers_through_the_adapter_for_the_language(tiny_model_dir, tiny_adapters_dir, tmp_path):
    from bot.build import build_manager
    from bot.config import BotConfig

    config = BotConfig(model=str(tiny_model_dir), adapters_dir=str(tiny_adapters_dir), database=str(tmp_path / "c.sqlite3"))
    manager = build_manager(config)
    spanish = manager.handle("s", "Hola, ¿dónde está mi pedido NW-12345?")
    assert spanish.route.adapter == "reply-es-lora"  # LoRA preferred over prompt tuning
    assert spanish.read()
    italian = manager.handle("i", "Buongiorno, dov'è il mio ordine?")
    assert italian.route.language == "it" and italian.route.adapter == "reply-es-lora"  # nearest language
    assert manager.handle("f", "Bonjour, où est ma commande ?").route.adapter is None  # base model
    question, answer = manager.store.turns(manager.store.session("s"))
    assert question.adapter == "reply-es-lora"
    # A random model may stop at once; then the stored answer is the "error" notice, which no adapter wrote.
    assert answer.role == "assistant" and answer.adapter == ("reply-es-lora" if answer.kind == "message" else None)
