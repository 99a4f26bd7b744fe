"""The bot's settings as typed dataclasses: one `BotConfig` read from YAML plus `key=value`
overrides (`babelbot.config.load_config`). Importing this module loads no model, so light
commands (`babelbot route`) start fast."""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from babelbot.config import ConfigError
from babelbot.models import DEFAULT_MODEL, babelbot_home
from babelbot.paths import ADAPTERS_DIR

DEFAULT_ENCODER = ADAPTERS_DIR / "encoder-e5-use"


@dataclass
class GenerationSettings:
    """How replies are generated."""

    max_new_tokens: int = 96  # reply length cap; ~10 s at 9 tokens/s on 2 CPU cores
    temperature: float = 0.0  # 0 is greedy: the same question gets the same answer
    top_p: float = 0.9  # nucleus sampling, used only when temperature > 0
    repetition_penalty: float = 1.0  # >1 also penalises copying the knowledge base from the prompt

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@dataclass
class ServingSettings:
    """How requests share the model (bot/batch_engine.py)."""

    max_batch: int = 32  # requests decoding together; more wait for a free row
    prefill_chunk: int = 256  # prompt tokens prefilled per step, so long prompts do not stall decoding
    max_resident_adapters: int = 16  # adapters in memory at once; the least recently used one goes first
    max_waiting: int = 256  # requests queued beyond the batch; more get "busy, try again in a moment"
    request_timeout_s: float = 300.0  # a reply not finished by then is cancelled and the customer told

    def __post_init__(self):
        if min(self.max_batch, self.prefill_chunk, self.max_resident_adapters, self.max_waiting, self.request_timeout_s) <= 0:
            raise ValueError(f"serving settings must be positive: {self}")


@dataclass
class DialogueSettings:
    """Limits of one conversation."""

    max_message_chars: int = 1500  # longer messages get a notice; keeps one turn well inside the window
    context_tokens: int = 2048  # prompt budget: older turns are dropped to fit (CPU prefill cost grows with it)
    default_language: str = "en"  # for the first message when it is too short to tell
    # Answers (bot/dialogue.py): the similarity thresholds were chosen on data/answers_eval/dev.jsonl.
    fact_similarity: float = 0.33  # below: no fact answers the question ("I don't know, a human can help")
    facts_in_prompt: int = 3  # retrieved facts the reply prompt carries
    sibling_gap: float = 0.05  # a same-topic runner-up this close to the best fact answers too (both are stated)
    check_answers: bool = True  # check each draft's numbers and language before sending
    regenerate: bool = True  # a draft that fails the check is drafted once more before the fallback
    language_check_min_letters: int = 20  # shorter drafts are not language-checked (too short to tell)

    def __post_init__(self):
        if self.max_message_chars < 1 or self.context_tokens < 256:
            raise ValueError("max_message_chars must be >= 1 and context_tokens >= 256")


@dataclass
class TelegramConfig:
    """The Telegram front end. The token comes from here or from TELEGRAM_BOT_TOKEN."""

    token: str = field(default="", repr=False)
    base_url: str = "https://api.telegram.org/bot"  # point at a local Bot API server to test
    base_file_url: str = "https://api.telegram.org/file/bot"
    agents_chat_id: int | None = None  # where handoff summaries go and agents answer
    allowed_user_ids: list[int] = field(default_factory=list)  # empty: everyone
    rate_limit_messages: int = 8  # per user ...
    rate_limit_window_s: float = 30.0  # ... in this many seconds
    edit_interval_s: float = 1.0  # Telegram allows about one edit a second per chat
    max_retries: int = 4  # on 429 (after its retry_after) and on network errors, with backoff
    webhook_url: str = ""  # empty: long polling
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = field(default="", repr=False)

    def __post_init__(self):
        if self.edit_interval_s < 0 or self.rate_limit_messages < 1 or self.max_retries < 0:
            raise ValueError("edit_interval_s >= 0, rate_limit_messages >= 1 and max_retries >= 0 are required")
        if self.webhook_url and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.webhook_secret):
            raise ValueError("webhook mode needs webhook_secret: 1-256 characters of A-Z, a-z, 0-9, _ and -")

    def resolved_token(self) -> str:
        token = self.token or os.environ.get("TELEGRAM_BOT_TOKEN", "")
        if not token:
            raise ConfigError(
                "no Telegram bot token: set TELEGRAM_BOT_TOKEN (from @BotFather) or telegram.token in the config file"
            )
        return token


@dataclass
class BotConfig:
    """Everything `babelbot serve|chat|reply` needs; `key=value` on the command line overrides."""

    model: str = DEFAULT_MODEL  # catalog name, .gguf file, local folder or hub id
    device: str | None = None  # cpu, cuda, cuda:1; None picks CUDA when present
    dtype: str = "auto"  # auto: fp32 on CPU, bf16 on CUDA
    database: str = ""  # SQLite file of conversations; empty: $BABELBOT_HOME/conversations.sqlite3
    adapters_dir: str = str(ADAPTERS_DIR)
    adapter_methods: list[str] = field(default_factory=lambda: ["lora", "prompt_tuning"])  # which kinds to serve
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
