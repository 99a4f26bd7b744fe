"""Per-language system prompts, a worked example and the fixed messages the bot sends.

One YAML per training language in `prompts/locales/`. A language without a file is served
with the English one plus an instruction to answer in the customer's language.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from babelbot.languages import TRAINING_LANGUAGES, language_name

LOCALES_DIR = Path(__file__).parent / "locales"
NOTICE_KEYS = (
    "empty", "too_long", "handoff", "waiting", "reset", "error", "non_text",
    "welcome", "help", "lang_pinned", "lang_auto", "lang_unknown", "rate_limited",
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
def locale_for(language: str) -> Locale:
    """The locale of a training language, or English told to answer in `language`."""
    if language in TRAINING_LANGUAGES:
        return _read(language)
    english = _read("en")
    name = language_name(language)
    return Locale(
        language=language,
        name=name,
        system=f"{english.system} The customer writes in {name}: answer in {name}.",
        example_customer=english.example_customer,
        example_agent=english.example_agent,
        notices=english.notices,
    )
