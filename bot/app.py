"""Building the bot from a config: model → engine, store, router → dialogue manager."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from adapters.registry import load_registry
from babelbot.detect import LanguageDetector, warm_up
from babelbot.models import DEFAULT_MODEL, babelbot_home, load_model, model_fingerprint, resolve_model
from babelbot.paths import ADAPTERS_DIR
from bot.dialogue import DialogueManager, DialogueSettings
from bot.engine import Engine, GenerationSettings, ServingSettings
from bot.intents import DEFAULT_ENCODER, default_intent_detector
from bot.router import Router
from bot.store import Store
from bot.telegram_app import TelegramConfig

log = logging.getLogger(__name__)


@dataclass
class BotConfig:
    """Everything `babelbot serve|chat|reply` needs; `key=value` on the command line overrides."""

    model: str = DEFAULT_MODEL  # catalog name, .gguf file, local folder or hub id
    device: str | None = None  # cpu, cuda, cuda:1; None picks CUDA when present
    dtype: str = "auto"  # auto: fp32 on CPU, bf16 on CUDA
    database: str = ""  # SQLite file of conversations; empty: $BABELBOT_HOME/conversations.sqlite3
    adapters_dir: str = str(ADAPTERS_DIR)
    # The aligned sentence encoder the router's intents and knowledge topics come from; "none":
    # the naive Bayes detector, a route in ~1 ms against ~15 ms on 2 cores, but it knows intents
    # only in the 10 training languages (router_eval: 93.1% against 97.9% right in those, 46.7%
    # against 91.7% in 12 others) and takes knowledge topics from the intent alone.
    intent_encoder: str = str(DEFAULT_ENCODER)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)

    def database_path(self) -> Path:
        return Path(self.database) if self.database else babelbot_home() / "conversations.sqlite3"


def build_router(config: BotConfig, adapters: dict | None = None) -> Router:
    """The router: language, intent, adapter. Without a model (`babelbot route`) it chooses
    among the adapters in the registry; the bot passes the ones its engine loaded."""
    warm_up()
    if adapters is None:
        adapters = load_registry(Path(config.adapters_dir), base_model=config.model)
    log.info("adapters available: %s", sorted(adapters) or "none (base model only)")
    intents = default_intent_detector(None if config.intent_encoder == "none" else Path(config.intent_encoder))
    return Router(LanguageDetector(), intents, adapters, config.dialogue.default_language)


def build_manager(config: BotConfig, store: Store | None = None) -> DialogueManager:
    model, tokenizer = load_model(config.model, device=config.device, dtype=config.dtype)
    engine = Engine(model, tokenizer, config.generation, serving=config.serving)
    registry = load_registry(Path(config.adapters_dir), base_model=config.model)
    if registry:  # hashing the base weights takes a second or two; only worth it with adapters
        engine.load_adapters(registry, model_fingerprint(resolve_model(config.model)))
    store = store or Store(config.database_path())
    return DialogueManager(engine, store, build_router(config, engine.adapters), config.dialogue)
