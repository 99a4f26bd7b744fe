"""Every shipped training recipe parses into a valid TuneConfig and names its launch command."""

from pathlib import Path

import pytest

from babelbot.config import load_config
from tuning.train import TuneConfig

CONFIGS = sorted((Path(__file__).parents[1] / "tuning" / "configs").glob("*.yaml"))


def test_there_is_a_recipe_per_shipped_adapter():
    names = {path.stem for path in CONFIGS}
    assert {f"reply-{lang}-{m}" for lang in ("en", "es", "hi") for m in ("lora", "prompt-tuning")} <= names
    assert {"summarize-multi-lora", "translate-multi-lora"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    config = load_config(TuneConfig, path)
    assert config.name == path.stem  # the adapter lands in adapters/<recipe name>
    assert f"babelbot tune tuning/configs/{path.name}" in path.read_text()
