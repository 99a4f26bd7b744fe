"""Every shipped training recipe parses into a valid TuneConfig and names its launch command."""

from pathlib import Path

import pytest

from babelbot.config import load_config
from tuning.align import AlignConfig
from tuning.train import TuneConfig

ALL_CONFIGS = sorted((Path(__file__).parents[1] / "tuning" / "configs").glob("*.yaml"))
CONFIGS = [path for path in ALL_CONFIGS if not path.stem.startswith("encoder-")]


def test_there_is_a_recipe_per_shipped_adapter():
    names = {path.stem for path in CONFIGS}
    assert {f"reply-{lang}-{m}" for lang in ("en", "es", "hi") for m in ("lora", "prompt-tuning")} <= names
    assert {"summarize-multi-lora", "translate-multi-lora"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    config = load_config(TuneConfig, path)
    assert config.name == path.stem  # the adapter lands in adapters/<recipe name>
    assert f"babelbot tune tuning/configs/{path.name}" in path.read_text()


def test_encoder_recipe_matches_the_shipped_encoder():
    import json

    path = next(p for p in ALL_CONFIGS if p.stem == "encoder-e5-use")
    config = load_config(AlignConfig, path)
    assert f"babelbot encoder train --config tuning/configs/{path.name}" in path.read_text()
    card = json.loads((Path(__file__).parents[1] / "adapters" / config.name / "card.json").read_text(encoding="utf-8"))
    shipped = {k: v for k, v in card["config"].items() if k != "output_dir"}
    recipe = json.loads(json.dumps(vars(config)))  # as the card stores it: tuples become lists
    assert shipped == {k: v for k, v in recipe.items() if k != "output_dir"}
