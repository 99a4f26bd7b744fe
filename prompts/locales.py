"""Per-language system prompts, a worked example and the fixed messages the bot sends.

One YAML per language the bot writes in, in `prompts/locales/`. A customer whose language
has no file is answered in English, after one sentence of apology in their own language
(`prompts/apologies.yaml`) where we have it: a clear English answer serves them better than
the model's guess at a language it was never adapted to.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from babelbot.languages import language_name

LOCALES_DIR = Path(__file__).parent / "locales"
APOLOGIES_FILE = Path(__file__).parent / "apologies.yaml"
NOTICE_KEYS = (
    "empty", "too_long", "handoff", "waiting", "reset", "error", "non_text",
    "welcome", "help", "lang_pinned", "lang_auto", "lang_unknown", "rate_limited",
    "dont_know", "offer_human", "busy", "no_agents",
)


@dataclass(frozen=True)
class Locale:
    language: str  # ISO 639-1 code of the customer's language
    name: str  # the language's own name
    system: str
    example_customer: str
    example_agent: str
    notices: dict[str, str]

    def notice(self, key: str, **values) -> str:
        return self.notices[key].format(**values)


def _read(language: str) -> Locale:
    path = LOCALES_DIR / f"{language}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [key for key in NOTICE_KEYS if key not in raw.get("notices", {})]
    if raw.get("language") != language or missing:
        raise ValueError(f"{path}: language must be {language!r} and notices need {missing}")
    return Locale(
        language=language,
        name=raw["name"],
        system=raw["system"].strip(),
        example_customer=raw["example"]["customer"].strip(),
        example_agent=raw["example"]["agent"].strip(),
        notices={key: raw["notices"][key].strip() for key in NOTICE_KEYS},
    )


@cache
def locale_languages() -> tuple[str, ...]:
    """The languages the bot writes in: those with a locale file."""
    return tuple(sorted(path.stem for path in LOCALES_DIR.glob("*.yaml") if re.fullmatch(r"[a-z]{2}", path.stem)))


def reply_language(language: str) -> str:
    """The language to answer a `language` customer in: theirs when it has a locale, else English."""
    return language if language in locale_languages() else "en"


# Bounded: a locale per language code, and there are fewer than 200 ISO 639-1 codes.
@cache
def locale_for(language: str) -> Locale:
    """The locale to answer a `language` customer with (English for a language without one)."""
    return _read(reply_language(language))


@cache
def _apologies() -> dict[str, str]:
    raw = yaml.safe_load(APOLOGIES_FILE.read_text(encoding="utf-8")) if APOLOGIES_FILE.is_file() else {}
    return dict((raw or {}).get("apologies", {}))


def apology_for(language: str) -> str:
    """The sentence that opens an English answer to a customer we cannot write to in their
    language ("" when we write in it, or have no sentence for it)."""
    return "" if reply_language(language) == language else _apologies().get(language, "")


def language_display_name(language: str) -> str:
    """The language's own name when we have its locale, else its English name."""
    return _read(language).name if language in locale_languages() else language_name(language)
