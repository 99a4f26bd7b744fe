"""Adapters: the one card schema, finding adapters, and choosing one for a (language, task).

Vocabulary: an *adapter* is a trained folder `adapters/<name>/` plus its *card* (`card.json`,
its metadata); a *recipe* is the YAML in `tuning/configs/` that trains one. A PEFT adapter
holds PEFT's `adapter_config.json` and `adapter_model.safetensors`; the router's sentence
encoder holds `head.safetensors` (task "encode", method "contrastive_head"; never a reply
adapter). `AdapterCard` is the only code that writes or reads a card:

    {"format_version": 1, "name": "reply-es-lora", "task": "reply", "languages": ["es"],
     "method": "lora", "base_model": "gemma-3-270m", ...training figures and config}

A card with several languages is a multilingual adapter. Cards hold no absolute paths of the
machine that trained them.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from babelbot.encoders import ENCODER_METHOD, ENCODER_TASK, HEAD_FILE, AlignedEncoder, Backbone, EncoderError, load_encoder
from babelbot.languages import NEAREST_TRAINING_LANGUAGE
from babelbot.paths import ADAPTERS_DIR

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
CARD_FORMAT_VERSION = 1
METHODS = ("lora", "prompt_tuning")  # PEFT methods the engine serves
CARD_METHODS = (*METHODS, ENCODER_METHOD)
FILES = {"lora": ("adapter_config.json", "adapter_model.safetensors"),
         "prompt_tuning": ("adapter_config.json", "adapter_model.safetensors"), ENCODER_METHOD: (HEAD_FILE,)}


@dataclass(frozen=True)
class AdapterCard:
    name: str
    task: str
    languages: tuple[str, ...]
    method: str
    base_model: str
    path: Path
    base_fingerprint: str | None = None  # SHA-256 of the base weights it was trained on
    extra: dict = field(default_factory=dict, compare=False)  # training figures, config, encoder fields

    @property
    def multilingual(self) -> bool:
        return len(self.languages) > 1

    def to_dict(self) -> dict:
        card = {"format_version": CARD_FORMAT_VERSION, "name": self.name, "task": self.task,
                "languages": list(self.languages), "method": self.method, "base_model": self.base_model}
        if self.base_fingerprint:
            card["base_fingerprint"] = self.base_fingerprint
        return card | self.extra

    def save(self) -> None:
        """Write `card.json` into the adapter's folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CARD_FILE).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class AdapterError(ValueError):
    """An adapter folder that cannot be used; the message names the file and the problem."""


def read_card(folder: Path) -> AdapterCard:
    path = folder / CARD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AdapterError(f"{path}: cannot read the adapter card ({error})") from None
    if raw.get("format_version") != CARD_FORMAT_VERSION:
        raise AdapterError(f"{path}: format_version must be {CARD_FORMAT_VERSION}, got {raw.get('format_version')!r}")
    missing = [key for key in ("name", "task", "languages", "method", "base_model") if key not in raw]
    if missing:
        raise AdapterError(f"{path}: missing keys {missing}")
    if raw["method"] not in CARD_METHODS:
        raise AdapterError(f"{path}: method must be one of {CARD_METHODS}, got {raw['method']!r}")
    for required in FILES[raw["method"]]:
        if not (folder / required).is_file():
            raise AdapterError(f"{folder}: {required} is missing; retrain or re-copy the adapter")
    core = ("format_version", "name", "task", "languages", "method", "base_model", "base_fingerprint")
    return AdapterCard(
        name=raw["name"],
        task=raw["task"],
        languages=tuple(raw["languages"]),
        method=raw["method"],
        base_model=raw["base_model"],
        path=folder,
        base_fingerprint=raw.get("base_fingerprint"),
        extra={key: value for key, value in raw.items() if key not in core},
    )


def is_encoder(folder: Path) -> bool:
    try:
        return json.loads((folder / CARD_FILE).read_text(encoding="utf-8")).get("task") == ENCODER_TASK
    except (OSError, ValueError, AttributeError):
        return False


def open_encoder(folder: Path, backbone: Backbone | None = None) -> AlignedEncoder:
    """The sentence encoder in `folder`, through its card."""
    try:
        card = read_card(folder)
    except AdapterError as error:
        raise EncoderError(f"{error}; retrain with `babelbot encoder train`") from None
    return load_encoder(folder, card.to_dict(), backbone)


def verify_encoder(folder: Path) -> list[str]:
    """Problems that would stop the router from using this encoder; empty when it is usable."""
    try:
        encoder = open_encoder(folder)
    except (EncoderError, ImportError) as error:
        return [str(error)]
    return [] if encoder.intent_weights is not None else [f"{folder}: no intent classifier; retrain it"]


def load_registry(root: Path = ADAPTERS_DIR, base_model: str | None = None) -> dict[str, AdapterCard]:
    """Every usable adapter under `root` by name. Unusable ones are logged and skipped, so one
    bad folder never stops the bot; adapters for another base model are skipped the same way."""
    registry: dict[str, AdapterCard] = {}
    for folder in sorted(p for p in root.iterdir() if (p / CARD_FILE).exists()) if root.is_dir() else []:
        if is_encoder(folder):
            continue
        try:
            card = read_card(folder)
        except AdapterError as error:
            log.warning("skipping adapter: %s", error)
            continue
        if base_model is not None and card.base_model != base_model:
            log.warning(
                "skipping adapter %s: trained for base model %s, serving %s", card.name, card.base_model, base_model
            )
            continue
        if card.name in registry:
            log.warning("skipping adapter %s in %s: the name is already used by %s", card.name, folder, registry[card.name].path)
            continue
        registry[card.name] = card
    return registry


def choose_adapter(registry: dict[str, AdapterCard], language: str, task: str) -> AdapterCard | None:
    """The adapter for (language, task), falling back in this order:

    1. a single-language adapter for the customer's language;
    2. a single-language adapter for the nearest training language (`NEAREST_TRAINING_LANGUAGE`);
    3. a multilingual adapter for the task, preferring one that lists the language;
    4. none: the base model, prompted in the customer's language.
    LoRA is preferred over prompt tuning where both exist, then the name decides.
    """
    candidates = sorted(
        (card for card in registry.values() if card.task == task),
        key=lambda card: (card.method != "lora", card.name),
    )
    single = [card for card in candidates if not card.multilingual]
    for wanted in (language, NEAREST_TRAINING_LANGUAGE.get(language)):
        for card in single:
            if wanted in card.languages:
                return card
    multilingual = [card for card in candidates if card.multilingual]
    multilingual.sort(key=lambda card: language not in card.languages)
    return multilingual[0] if multilingual else None


def verify_adapter(folder: Path, base_fingerprint: str | None = None) -> list[str]:
    """Problems that would stop the bot from using this adapter; empty when it is usable."""
    from safetensors import safe_open

    try:
        card = read_card(folder)
    except AdapterError as error:
        return [str(error)]
    problems = []
    try:
        peft_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        expected = {"lora": "LORA", "prompt_tuning": "PROMPT_TUNING"}[card.method]
        if peft_config.get("peft_type") != expected:
            problems.append(f"{folder}/adapter_config.json: peft_type is {peft_config.get('peft_type')!r}, "
                            f"the card says {card.method}")
    except (OSError, ValueError) as error:
        problems.append(f"{folder}/adapter_config.json: unreadable ({error})")
    try:
        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as weights:
            if not list(weights.keys()):
                problems.append(f"{folder}/adapter_model.safetensors: holds no tensors")
    except Exception as error:  # safetensors raises its own error types for damaged files
        problems.append(f"{folder}/adapter_model.safetensors: corrupt ({error}); retrain or re-copy it")
    if base_fingerprint and card.base_fingerprint and card.base_fingerprint != base_fingerprint:
        problems.append(f"{folder}: trained on other base weights ({card.base_fingerprint[:12]}…); "
                        f"this model is {base_fingerprint[:12]}…")
    return problems
