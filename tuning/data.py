"""The training data: schema checks (`babelbot data check`), splits, and task examples.

Files under `data/` (schema in data/README.md):
    conversations/<lang>.jsonl   support conversations, user turns labelled with an intent
    summaries/<lang>.jsonl       English handoff summaries of some of those conversations
    translations/<lang>.jsonl    agent text ⇄ customer language
    parallel/messages.jsonl      the same customer message in all 10 languages
    intents/seed.jsonl           short labelled messages for the first intent detector
    romanized/messages.jsonl     served languages written in Latin letters (Hinglish), for the language detector
    router_eval/, transfer_eval/ held-out test messages (any language), never trained on
    language_dev/                short messages in 30 other languages for choosing the language detector's weights

Splits are by conversation (never by line) from a hash of the conversation id, so they are
stable when files grow: 80% train, 10% dev, 10% test. A summary goes with its conversation.
"""

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from babelbot.jsonl import read_jsonl_file as read_jsonl
from babelbot.jsonl import split_of
from babelbot.labels import INTENTS
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR
from prompts.formats import Prompt, Turn
from prompts.knowledge import INTENT_TOPICS, facts_for_topics
from prompts.tasks import reply_prompt, summarize_prompt, translate_prompt

SPLITS = ("train", "dev", "test")


# -- schema checks ---------------------------------------------------------------------------

def _check_text(record: dict, key: str) -> str | None:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        return f"{key}: must be a non-empty string"
    return None


def check_conversation(record: dict) -> list[str]:
    problems = []
    if record.get("language") not in TRAINING_LANGUAGES:
        problems.append(f"language: must be one of {TRAINING_LANGUAGES}, got {record.get('language')!r}")
    turns = record.get("turns")
    if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
        return problems + ["turns: must be a list of user/assistant pairs"]
    for index, turn in enumerate(turns):
        role = "user" if index % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != role:
            problems.append(f"turns[{index}].role: must be {role!r} (turns alternate, user first)")
            continue
        if problem := _check_text(turn, "text"):
            problems.append(f"turns[{index}].{problem}")
        if role == "user" and turn.get("intent") not in INTENTS:
            problems.append(f"turns[{index}].intent: must be one of the 13 intents, got {turn.get('intent')!r}")
    return problems


def check_summary(record: dict) -> list[str]:
    return [p for p in (_check_text(record, "conversation_id"), _check_text(record, "summary")) if p]


def check_translation(record: dict) -> list[str]:
    problems = [p for p in (_check_text(record, "source"), _check_text(record, "target")) if p]
    for key in ("source_language", "target_language"):
        if record.get(key) not in TRAINING_LANGUAGES:
            problems.append(f"{key}: must be one of {TRAINING_LANGUAGES}")
    if record.get("source_language") == record.get("target_language"):
        problems.append("target_language: must differ from source_language")
    return problems


def check_parallel(record: dict) -> list[str]:
    problems = [] if record.get("intent") in INTENTS else ["intent: must be one of the 13 intents"]
    texts = record.get("texts")
    if not isinstance(texts, dict):
        return problems + ["texts: must map language codes to texts"]
    missing = [lang for lang in TRAINING_LANGUAGES if not isinstance(texts.get(lang), str) or not texts[lang].strip()]
    return problems + ([f"texts: missing or empty for {missing}"] if missing else [])


def check_intent_example(record: dict) -> list[str]:
    problems = [] if record.get("intent") in INTENTS else ["intent: must be one of the 13 intents"]
    if record.get("language") not in TRAINING_LANGUAGES:
        problems.append(f"language: must be one of {TRAINING_LANGUAGES}")
    return problems + [p for p in (_check_text(record, "text"),) if p]


def check_romanized_message(record: dict) -> list[str]:
    """romanized: a message in a served language written in Latin letters ("order cancel kar do")."""
    problems = check_intent_example(record)
    text = record.get("text")
    if isinstance(text, str) and any(char.isalpha() and "LATIN" not in unicodedata.name(char, "") for char in text):
        problems.append("text: must be written in Latin letters only")
    return problems


def check_test_message(record: dict) -> list[str]:
    """router_eval, transfer_eval and language_dev: any language, as an ISO 639-1 code."""
    problems = [] if record.get("intent") in INTENTS else ["intent: must be one of the 13 intents"]
    language = record.get("language")
    if not (isinstance(language, str) and len(language) == 2 and language.isascii() and language.islower()):
        problems.append(f"language: must be an ISO 639-1 code such as 'tr', got {language!r}")
    return problems + [p for p in (_check_text(record, "text"),) if p]


CHECKS = {
    "conversations": check_conversation,
    "summaries": check_summary,
    "translations": check_translation,
    "parallel": check_parallel,
    "intents": check_intent_example,
    "romanized": check_romanized_message,
    "router_eval": check_test_message,
    "transfer_eval": check_test_message,
    "language_dev": check_test_message,
}
# Folders whose files hold many languages (the others are one <lang>.jsonl per language).
MIXED_LANGUAGE_KINDS = ("parallel", "intents", "romanized", "router_eval", "transfer_eval", "language_dev")


def check_data(root: Path = DATA_DIR) -> list[str]:
    """Every problem as `file:line: field: problem`; an empty list means the data is usable."""
    problems: list[str] = []
    conversation_ids: set[str] = set()
    summaries: list[tuple[Path, int, str]] = []
    for kind, check in CHECKS.items():
        files = sorted((root / kind).glob("*.jsonl"))
        if not files and kind in ("conversations", "summaries", "translations", "parallel"):
            problems.append(f"{root / kind}: no .jsonl files")
        for path in files:
            seen: set[str] = set()
            for number, record, problem in read_jsonl(path):
                where = f"{path}:{number}"
                if problem:
                    problems.append(f"{where}: {problem}")
                    continue
                found = check(record)
                record_id = record.get("id")
                if kind != "intents":
                    if not isinstance(record_id, str) or not record_id:
                        found.append("id: must be a non-empty string")
                    elif record_id in seen:
                        found.append(f"id: {record_id!r} is used twice in this file")
                    seen.add(record_id)
                if kind not in MIXED_LANGUAGE_KINDS and path.stem != record.get("language"):
                    found.append(f"language: {record.get('language')!r} in a file named {path.name}")
                if kind == "conversations" and isinstance(record_id, str):
                    conversation_ids.add(record_id)
                if kind == "summaries" and isinstance(record.get("conversation_id"), str):
                    summaries.append((path, number, record["conversation_id"]))
                problems += [f"{where}: {p}" for p in found]
    for path, number, conversation_id in summaries:
        if conversation_id not in conversation_ids:
            problems.append(f"{path}:{number}: conversation_id: {conversation_id!r} is not in conversations/")
    return problems


# -- task examples -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    """One supervised example: the model sees `prompt` and learns to write `target`."""

    id: str
    task: str
    language: str
    split: str
    prompt: Prompt
    target: str
    target_language: str  # the language the target is written in


def _records(root: Path, kind: str, languages: tuple[str, ...]) -> Iterator[dict]:
    for language in languages:
        path = root / kind / f"{language}.jsonl"
        if path.exists():
            for _, record, problem in read_jsonl(path):
                if problem is None:
                    yield record


def reply_examples(root: Path = DATA_DIR, languages: tuple[str, ...] = TRAINING_LANGUAGES) -> list[Example]:
    """Every assistant turn, with the conversation before it and the knowledge-base entries
    for the intent of the customer turn it answers: exactly the prompt the bot will send."""
    examples = []
    for record in _records(root, "conversations", languages):
        turns = [Turn(t["role"], t["text"]) for t in record["turns"]]
        for index in range(1, len(turns), 2):
            intent = record["turns"][index - 1]["intent"]
            prompt = reply_prompt(record["language"], turns[:index], facts_for_topics(INTENT_TOPICS[intent], record["language"]))
            examples.append(Example(f"{record['id']}#{index}", "reply", record["language"], split_of(record["id"]),
                                    prompt, turns[index].text, record["language"]))
    return examples


def summarize_examples(root: Path = DATA_DIR, languages: tuple[str, ...] = TRAINING_LANGUAGES) -> list[Example]:
    conversations = {r["id"]: r for r in _records(root, "conversations", languages)}
    examples = []
    for record in _records(root, "summaries", languages):
        conversation = conversations.get(record["conversation_id"])
        if conversation is None:
            continue
        turns = [Turn(t["role"], t["text"]) for t in conversation["turns"]]
        examples.append(Example(record["id"], "summarize", record["language"], split_of(conversation["id"]),
                                summarize_prompt(turns), record["summary"], "en"))
    return examples


def translate_examples(root: Path = DATA_DIR, languages: tuple[str, ...] = TRAINING_LANGUAGES) -> list[Example]:
    examples = []
    for record in _records(root, "translations", languages):
        prompt = translate_prompt(record["source"], record["source_language"], record["target_language"])
        examples.append(Example(record["id"], "translate", record["language"], split_of(record["id"]),
                                prompt, record["target"], record["target_language"]))
    return examples


TASK_EXAMPLES = {"reply": reply_examples, "summarize": summarize_examples, "translate": translate_examples}
