"""Building the bot from a config: model → engine, store, router → dialogue manager."""

import logging
from pathlib import Path

from adapters.registry import load_registry
from babelbot.language_id import LanguageDetector, warm_up
from bot.config import BotConfig
from bot.intents import default_intent_detector
from bot.router import Router

log = logging.getLogger(__name__)


def build_router(config: BotConfig, adapters: dict | None = None, warm: bool = True) -> Router:
    """The router: language, intent, adapter. Without a model (`babelbot route`) it chooses
    among the adapters in the registry; the bot passes the ones its engine loaded. `warm`
    loads every language model up front (seconds once, then ~1 ms a message)."""
    if warm:
        warm_up()
    if adapters is None:
        adapters = load_registry(Path(config.adapters_dir), base_model=config.model)
    log.info("adapters available: %s", sorted(adapters) or "none (base model only)")
    intents = default_intent_detector(None if config.intent_encoder == "none" else Path(config.intent_encoder))
    return Router(LanguageDetector(), intents, adapters, config.dialogue.default_language)


def build_manager(config: BotConfig, store=None):
    """The dialogue manager over a loaded model (DialogueManager); `store` defaults to the config's database."""
    # Imported here: the model stack (torch, transformers) takes seconds to import, and
    # `babelbot route` builds only the router.
    from babelbot.models import load_model, model_fingerprint, resolve_model
    from bot.dialogue import DialogueManager
    from bot.engine import Engine
    from bot.store import Store

    model, tokenizer = load_model(config.model, device=config.device, dtype=config.dtype)
    engine = Engine(model, tokenizer, config.generation, serving=config.serving)
    registry = {name: card for name, card in load_registry(Path(config.adapters_dir), base_model=config.model).items()
                if card.method in config.adapter_methods or card.task != "reply"}
    if registry:  # hashing the base weights takes a second or two; only worth it with adapters
        engine.load_adapters(registry, model_fingerprint(resolve_model(config.model)))
    store = store or Store(config.database_path())
    return DialogueManager(engine, store, build_router(config, engine.adapters), config.dialogue)
