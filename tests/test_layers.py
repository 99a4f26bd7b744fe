"""The one-way layout (DESIGN.md): every import runs down the layers, never up.

    babelbot (core) ← prompts ← adapters ← tuning, bot ← evals, bench

`bot` serves and `tuning` trains: neither imports the other, and nothing imports the
measurement packages. The CLI (`babelbot/cli.py`) and the test helpers (`babelbot/testing.py`)
sit on top of everything and import lazily, so they are exempt.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("babelbot", "prompts", "adapters", "bot", "tuning", "evals", "bench")
# What each package may import from the project (itself always).
ALLOWED: dict[str, set[str]] = {
    "babelbot": set(),
    "prompts": {"babelbot"},
    "adapters": {"babelbot"},
    "tuning": {"babelbot", "prompts", "adapters"},
    "bot": {"babelbot", "prompts", "adapters"},
    "evals": {"babelbot", "prompts", "adapters", "bot", "tuning"},
    "bench": {"babelbot", "prompts", "adapters", "bot", "tuning"},
}
EXEMPT = {Path("babelbot/cli.py"), Path("babelbot/__main__.py"), Path("babelbot/testing.py")}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import of a project package in `path`,
    including imports inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in PACKAGES]
    return found


def backward_imports(root: Path = ROOT) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative in EXEMPT:
                continue
            for line, imported in project_imports(path):
                if imported != package and imported not in ALLOWED[package]:
                    problems.append(f"{relative}:{line} imports {imported} ({package} may import {sorted(ALLOWED[package])})")
    return problems


def test_every_import_runs_down_the_layers():
    assert backward_imports() == []


def test_the_check_finds_a_backward_import(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "bot" / "dialogue.py").write_text("def f():\n    from tuning.data import reply_examples\n", encoding="utf-8")
    (tmp_path / "babelbot" / "models.py").write_text("import prompts.knowledge\n", encoding="utf-8")
    assert backward_imports(tmp_path) == [
        "babelbot/models.py:1 imports prompts (babelbot may import [])",
        "bot/dialogue.py:2 imports tuning (bot may import ['adapters', 'babelbot', 'prompts'])",
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_a_folder(package):
    assert (ROOT / package / "__init__.py").is_file()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_shipped_cards_read_back_through_one_schema_and_hold_no_absolute_paths(tmp_path):
    import json

    from adapters.registry import CARD_FILE, read_card

    folders = sorted(path.parent for path in (ROOT / "adapters").glob(f"*/{CARD_FILE}"))
    assert len(folders) >= 20
    for folder in folders:
        raw = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
        assert not [s for s in _strings(raw) if s.startswith("/") or s[1:3] == ":\\"], folder
        card = read_card(folder)
        assert card.to_dict() == raw, folder  # what is read is what was written
        copy = tmp_path / folder.name
        copy.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors", "head.safetensors"):
            if (folder / name).exists():
                (copy / name).symlink_to(folder / name)
        type(card)(**{**card.__dict__, "path": copy}).save()
        assert read_card(copy).to_dict() == raw
