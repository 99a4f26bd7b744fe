"""Shared fixtures: a tiny random model (seconds, no files), the real default model
converted once per run into a temporary BABELBOT_HOME, and a tmp home for everything else."""

import os
from pathlib import Path

import pytest
import torch

from babelbot.models import DEFAULT_MODEL, build_tiny_model, load_model, resolve_model

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
