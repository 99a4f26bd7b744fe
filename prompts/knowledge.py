"""The Northwind Store knowledge base: atomic facts, the same in every language.

One YAML per language in `prompts/knowledge/`: topic titles and facts, each fact one policy
statement under an id shared by every language (`returns.window`: "You can return items
within 30 days of delivery."). A fact's topic is the first part of its id. Replies are
grounded in them: the router retrieves the facts that answer a message, the reply prompt
carries them, and the answer check refuses numbers they do not state.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

KNOWLEDGE_DIR = Path(__file__).parent / "knowledge"
QUESTIONS_FILE = KNOWLEDGE_DIR / "questions.yaml"
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


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Fact:
    id: str  # "returns.window"
    text: str  # in the file's language

    @property
    def topic(self) -> str:
        return self.id.split(".")[0]


@dataclass(frozen=True)
class Knowledge:
    language: str
    titles: dict[str, str]  # topic → its title in this language
    facts: dict[str, Fact]  # fact id → fact, in the file's order


def knowledge_languages() -> tuple[str, ...]:
    """The languages with a knowledge file, English first."""
    codes = sorted(path.stem for path in KNOWLEDGE_DIR.glob("*.yaml") if re.fullmatch(r"[a-z]{2}", path.stem))
    return tuple(sorted(codes, key=lambda code: code != "en"))


@cache
def knowledge_base(language: str) -> Knowledge:
    """The facts in `language`; English for a language without a knowledge file."""
    if language not in knowledge_languages():
        language = "en"
    path = KNOWLEDGE_DIR / f"{language}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise KnowledgeError(f"{path}: cannot read the knowledge file ({error})") from None
    if not isinstance(raw, dict) or raw.get("language") != language:
        raise KnowledgeError(f"{path}: must be a mapping with language: {language}")
    titles, facts = raw.get("topics") or {}, raw.get("facts") or {}
    if tuple(titles) != TOPICS:
        raise KnowledgeError(f"{path}: topics must be {TOPICS} in that order")
    wrong = [fact_id for fact_id in facts if fact_id.split(".")[0] not in TOPICS or not str(facts[fact_id]).strip()]
    if wrong:
        raise KnowledgeError(f"{path}: facts {wrong} need a known topic before the dot and a text")
    if language != "en" and tuple(facts) != tuple(knowledge_base("en").facts):
        missing = sorted(set(knowledge_base("en").facts) - set(facts))
        raise KnowledgeError(f"{path}: must state every English fact, in the English order (missing: {missing})")
    return Knowledge(language, {t: str(titles[t]).strip() for t in TOPICS},
                     {fact_id: Fact(fact_id, str(text).strip()) for fact_id, text in facts.items()})


# Pseudo facts: questions the knowledge base does not answer, and requests for a person.
NOT_COVERED = "not_covered"
REQUEST_HUMAN = "request_human"


@cache
def _questions_file() -> dict:
    raw = yaml.safe_load(QUESTIONS_FILE.read_text(encoding="utf-8")) if QUESTIONS_FILE.is_file() else {}
    return raw if isinstance(raw, dict) else {}


def fact_questions() -> dict[str, tuple[str, ...]]:
    """English questions each fact answers, plus the pseudo facts' keys (NOT_COVERED: questions
    no fact answers; REQUEST_HUMAN: asking for a person): retrieval keys, never shown to anyone."""
    questions = _questions_file().get("questions", {})
    unknown = sorted(set(questions) - set(knowledge_base("en").facts))
    if unknown:
        raise KnowledgeError(f"{QUESTIONS_FILE}: questions for unknown facts {unknown}")
    return {fact_id: tuple(texts) for fact_id, texts in questions.items()} | {
        NOT_COVERED: tuple(_questions_file().get("not_covered", [])),
        REQUEST_HUMAN: tuple(_questions_file().get("request_human", []))}


def facts_by_id(fact_ids: tuple[str, ...] | list[str], language: str) -> list[Fact]:
    facts = knowledge_base(language).facts
    return [facts[fact_id] for fact_id in fact_ids]


def facts_for_topics(topics: tuple[str, ...], language: str) -> list[Fact]:
    """Every fact of `topics`, topic by topic."""
    facts = knowledge_base(language).facts.values()
    return [fact for topic in topics for fact in facts if fact.topic == topic]


def render_facts(facts: list[Fact], language: str) -> str:
    """One line per topic, "- Title: fact fact …", in the order the facts come."""
    titles = knowledge_base(language).titles
    by_topic: dict[str, list[str]] = {}
    for fact in facts:
        by_topic.setdefault(fact.topic, []).append(fact.text)
    return "\n".join(f"- {titles[topic]}: {' '.join(texts)}" for topic, texts in by_topic.items())
