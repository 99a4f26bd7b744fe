import json
import shutil
from collections import Counter

from babelbot.labels import INTENTS
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR
from tuning.data import check_data, reply_examples, split_of, summarize_examples, translate_examples


def test_shipped_data_is_clean_and_big_enough():
    assert check_data() == []
    examples = reply_examples()
    per_language = Counter(e.language for e in examples)
    assert all(per_language[lang] >= 300 for lang in TRAINING_LANGUAGES), per_language
    first_intents = Counter()
    for lang in TRAINING_LANGUAGES:
        for line in (DATA_DIR / "conversations" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines():
            first_intents[json.loads(line)["turns"][0]["intent"]] += 1
    assert set(first_intents) == set(INTENTS)
    assert {e.split for e in examples} == {"train", "dev", "test"}
    assert len(summarize_examples()) == 240 and len(translate_examples()) == 400


def test_splits_are_by_conversation():
    by_conversation = {}
    for example in reply_examples(languages=("es",)):
        conversation = example.id.split("#")[0]
        by_conversation.setdefault(conversation, set()).add(example.split)
    assert all(len(splits) == 1 for splits in by_conversation.values())
    assert split_of("es-c001") == split_of("es-c001")
    records = [json.loads(line) for line in (DATA_DIR / "summaries" / "es.jsonl").read_text(encoding="utf-8").splitlines()]
    conversation_of = {r["id"]: r["conversation_id"] for r in records}
    for summary in summarize_examples(languages=("es",)):  # a summary goes with its conversation
        assert summary.split == by_conversation[conversation_of[summary.id]].pop()
        by_conversation[conversation_of[summary.id]].add(summary.split)


def test_reply_example_is_the_prompt_the_bot_sends():
    example = reply_examples(languages=("de",))[0]
    assert example.prompt.turns[-1].role == "user" and example.target
    assert example.prompt.context.startswith("- ")  # knowledge-base entries for the intent


def test_check_names_file_line_and_field(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(DATA_DIR, root)
    path = root / "conversations" / "es.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[4])
    broken["turns"][0]["intent"] = "refund_please"
    broken["turns"][1]["role"] = "user"
    lines[4] = json.dumps(broken, ensure_ascii=False)
    lines[9] = "{not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = root / "summaries" / "fr.jsonl"
    summary.write_text(summary.read_text(encoding="utf-8") + json.dumps(
        {"id": "fr-s99", "language": "fr", "conversation_id": "fr-c999", "summary": "x"}) + "\n", encoding="utf-8")
    transfer = root / "transfer_eval" / "messages.jsonl"
    transfer.write_text(transfer.read_text(encoding="utf-8") + json.dumps(
        {"id": "tr-999", "language": "Turkish", "intent": "order_status", "text": "kargom nerede"}) + "\n", encoding="utf-8")
    problems = check_data(root)
    assert f"{transfer}:391: language: must be an ISO 639-1 code such as 'tr', got 'Turkish'" in problems
    assert f"{path}:5: turns[0].intent: must be one of the 13 intents, got 'refund_please'" in problems
    assert f"{path}:5: turns[1].role: must be 'assistant' (turns alternate, user first)" in problems
    assert any(p.startswith(f"{path}:10: not JSON") for p in problems)
    assert any(p.startswith(f"{summary}:25: conversation_id: 'fr-c999'") for p in problems)
    assert len(problems) == 5
