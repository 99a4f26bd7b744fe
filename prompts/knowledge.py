"""The Northwind Store knowledge base: the same policies in every training language.

Replies are grounded in it: the prompt carries the entries relevant to the message (found
by the router's encoder, or by its intent), so the model quotes policy instead of inventing it.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from babelbot.languages import TRAINING_LANGUAGES

KNOWLEDGE_DIR = Path(__file__).parent / "knowledge"
TOPICS = (
    "returns", "refunds", "shipping_times", "shipping_costs", "payment_methods",
    "account_help", "order_changes", "warranty", "contact_hours",
)

# Which policies answer which intent. Intents with no policy (greeting, goodbye,
# out_of_scope) get the contact hours so the bot can always say how to reach a person.
INTENT_TOPICS: dict[str, tuple[str, ...]] = {
    "greeting": ("contact_hours",),
    "order_status": ("shipping_times",),
    "cancel_order": ("order_changes", "refunds"),
    "return_refund": ("returns", "refunds"),
    "shipping_info": ("shipping_times", "shipping_costs"),
    "change_order": ("order_changes",),
    "payment_problem": ("payment_methods",),
    "account_access": ("account_help",),
    "product_info": ("warranty",),
    "complaint": ("returns", "warranty", "contact_hours"),
    "human_agent": ("contact_hours",),
    "goodbye": ("contact_hours",),
    "out_of_scope": ("contact_hours",),
}


@dataclass(frozen=True)
class Entry:
    topic: str
    title: str
    text: str


@cache
def knowledge_base(language: str) -> dict[str, Entry]:
    """All entries in `language`; English for languages without a translation."""
    if language not in TRAINING_LANGUAGES:
        language = "en"
    path = KNOWLEDGE_DIR / f"{language}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = raw["entries"]
    if raw.get("language") != language or tuple(entries) != TOPICS:
        raise ValueError(f"{path}: expected language {language!r} and topics {TOPICS} in that order")
    return {topic: Entry(topic, entries[topic]["title"].strip(), entries[topic]["text"].strip()) for topic in TOPICS}


def entries_for(intent: str, language: str) -> list[Entry]:
    return entries_for_topics(INTENT_TOPICS[intent], language)


def entries_for_topics(topics: tuple[str, ...], language: str) -> list[Entry]:
    knowledge = knowledge_base(language)
    return [knowledge[topic] for topic in topics]


def render_entries(entries: list[Entry]) -> str:
    return "\n".join(f"- {entry.title}: {entry.text}" for entry in entries)
