"""Shared fixtures: a tiny random model built here (seconds, no files), the real default model
converted once per run into a temporary BABELBOT_HOME, and a tmp home for everything else."""

import os
from pathlib import Path

import pytest
import torch

from babelbot.models import DEFAULT_MODEL, load_model, resolve_model
from prompts.knowledge import KNOWLEDGE_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; fail fast if code tries


def build_tiny_model(folder: Path) -> Path:
    """A randomly initialised Llama with a byte-level BPE tokenizer trained on our own texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [path.read_text(encoding="utf-8") for path in sorted(KNOWLEDGE_DIR.glob("*.yaml"))]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


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
