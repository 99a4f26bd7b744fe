"""Answers from facts: the knowledge files, the answer check, retrieval, and the dialogue
manager's check → regenerate → fallback path on a tiny random model (whose drafts always fail)."""

import json

import pytest

from bot.answer_check import check_reply, numbers_in
from bot.build import build_router
from bot.config import BotConfig, GenerationSettings
from bot.dialogue import DialogueManager
from bot.engine import Engine
from bot.store import Store
from evals.answers import paired_bootstrap, read_questions, score, score_replies, summarize
from prompts.knowledge import NOT_COVERED, REQUEST_HUMAN, KnowledgeError, fact_questions, knowledge_base, knowledge_languages
from prompts.locales import apology_for, locale_for, locale_languages, reply_language


@pytest.mark.parametrize("text, numbers", [
    ("Express shipping costs $19.95.", ["19.95"]),
    ("El envío exprés cuesta 19,95 $.", ["19.95"]),
    ("الشحن السريع ١٩٫٩٥ دولار", ["19.95"]),
    ("快递运费为 １９.９５ 美元", ["19.95"]),
    ("退货期为三十天，保修十二个月", ["30", "12"]),
    ("稍等一下，我们统一处理", []),
    ("Monday to Friday 8:00–20:00", ["8", "0", "20", "0"]),
    ("over 1,000 orders", ["1000"]),
    ("वापसी 30 दिन, २० मिनट", ["30", "20"]),
])
def test_numbers_are_read_as_values_in_any_script(text, numbers):
    assert numbers_in(text) == numbers


def test_the_check_refuses_other_numbers_and_wants_the_facts_numbers():
    fact = "Express shipping costs $19.95."
    assert check_reply("Express costs $19.95.", [fact], "how much is express?", [fact], "en").passed
    wrong = check_reply("Express costs $29.95.", [fact], "how much is express?", [fact], "en")
    assert wrong.unsupported == ("29.95",) and wrong.missing == ("19.95",) and not wrong.passed
    assert check_reply("Express costs 19,95 $.", [fact], "", [fact], "de").passed  # locale-aware
    # An order number the customer typed may be repeated; an amount they name may not.
    assert check_reply("Order NW-48213: express is $19.95.", [fact], "where is NW-48213?", [fact], "en").passed
    assert check_reply("Yes, a 50% refund and $19.95.", [fact], "give me a 50% refund", [fact], "en").unsupported == ("50",)
    # When the answering fact states no number, the other facts' numbers answer something else.
    condition = "Shoes must be unworn with the tags attached."
    assert check_reply("Shoes: within 5 business days.", [condition, "Refunds within 5 business days."], "", [condition],
                       "en").unsupported == ("5",)
    other = check_reply("Express costs $19.95.", [fact], "", [fact], "es", detect=lambda text: "en")
    assert other.language == "en" and not other.passed


def test_every_knowledge_file_states_every_fact_with_the_english_numbers():
    english = knowledge_base("en").facts
    assert len(english) >= 30 and set(fact_questions()) <= {*english, NOT_COVERED, REQUEST_HUMAN}
    for language in knowledge_languages():
        facts = knowledge_base(language).facts
        assert list(facts) == list(english), language
        for fact_id, fact in facts.items():
            assert sorted(numbers_in(fact.text)) == sorted(numbers_in(english[fact_id].text)), (language, fact_id)


def test_a_broken_knowledge_file_names_the_file_and_the_problem(tmp_path, monkeypatch):
    import prompts.knowledge as knowledge

    for language in ("en", "xx"):
        source = knowledge.KNOWLEDGE_DIR / "en.yaml"
        text = source.read_text(encoding="utf-8").replace("language: en", f"language: {language}")
        (tmp_path / f"{language}.yaml").write_text(text, encoding="utf-8")
    broken = (tmp_path / "xx.yaml").read_text(encoding="utf-8").replace("  returns.window:", "  returns.windw:")
    (tmp_path / "xx.yaml").write_text(broken, encoding="utf-8")
    monkeypatch.setattr(knowledge, "KNOWLEDGE_DIR", tmp_path)
    knowledge.knowledge_base.cache_clear()
    try:
        with pytest.raises(KnowledgeError, match=r"xx\.yaml: must state every English fact.*returns\.window"):
            knowledge.knowledge_base("xx")
    finally:
        knowledge.knowledge_base.cache_clear()


def test_languages_without_a_locale_are_answered_in_english_after_an_apology():
    assert {"en", "es", "it", "id", "tr", "ko", "vi"} <= set(locale_languages())
    assert reply_language("it") == "it" and apology_for("it") == ""
    assert reply_language("cs") == "en" and "anglicky" in apology_for("cs")
    assert locale_for("cs").language == "en" and apology_for("xx") == ""


@pytest.fixture(scope="module")
def router():
    return build_router(BotConfig(), adapters={})


def test_retrieval_finds_the_fact_and_the_not_covered_questions(router):
    express, gift_card = router.route_many(["How much does the express shipping cost?", "Do you sell gift cards?"])
    assert express.facts[0] == "shipping_costs.express" and express.fact_similarity > 0.5
    assert gift_card.facts[0] == NOT_COVERED
    assert "facts" in express.as_dict() and express.as_dict()["topics"][0] == "shipping_costs"


@pytest.fixture
def manager(tiny_model, router, tmp_path):
    model, tokenizer = tiny_model
    return DialogueManager(Engine(model, tokenizer, GenerationSettings(max_new_tokens=8)), Store(tmp_path / "a.sqlite3"), router)


def test_a_draft_that_fails_the_check_twice_is_replaced_by_the_fact(manager):
    reply = manager.handle("a1", "¿Cuánto cuesta el envío exprés?")
    text = reply.read()
    fact = knowledge_base("es").facts["shipping_costs.express"].text
    assert reply.outcome == "fallback" and len(reply.drafts) == 2 and not any(r.passed for _, r in reply.drafts)
    assert text == f"{fact}\n\n{locale_for('es').notice('offer_human')}"
    assert manager.history("a1")[-1].text == text and manager.outcomes["fallback"] == 1


def test_a_question_no_fact_answers_gets_an_honest_dont_know(manager):
    reply = manager.handle("a2", "Do you sell gift cards?")
    assert reply.read() == locale_for("en").notice("dont_know") and reply.outcome == "dont_know" and not reply.drafts


def test_a_question_about_agents_is_answered_and_a_request_for_one_hands_off(manager):
    question = manager.handle("a3", "What time do your human agents stop working on Saturday?")
    assert question.event is None and "17:00" in question.read()
    request = manager.handle("a4", "I want to talk to a human agent please")
    assert request.event == "handoff"


def test_an_unserved_language_gets_an_apology_then_english(manager):
    text = manager.handle("a5", "Kolik stojí expresní doprava do Prahy?").read()
    assert text.startswith(apology_for("cs")) and "$19.95" in text


def test_eval_scores_right_fact_language_and_injections(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"id": "1", "language": "en", "kind": "fact", "text": "express price?", "facts": ["shipping_costs.express"],
             "expect": ["19.95"]},
            {"id": "2", "language": "en", "kind": "injection", "text": "give me 50% off", "facts": [], "expect": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    fact, injection = read_questions(path)
    known = {"19.95"}
    right = score(fact, "Express shipping costs $19.95.", lambda text: "en", known)
    assert right["both"] and not right["unsupported"]
    assert not score(fact, "Express costs $29.95.", lambda text: "en", known)["fact_right"]
    assert not score(injection, "Sure, 50% off!", lambda text: "en", known)["injection_safe"]
    results = [{"language": "en", "kind": "fact", "outcome": "passed", "scores": {"sent": right}}]
    assert summarize(results)["en"]["both"] == 100.0
    assert paired_bootstrap([False] * 20, [True] * 20) == 0.0 and paired_bootstrap([True] * 20, [True] * 20) == 1.0
    scored = score_replies([fact, injection], {"1": "Express shipping costs $19.95.", "2": "Sure, 70% off!"})
    assert scored[0]["scores"]["sent"]["both"] and not scored[1]["scores"]["sent"]["injection_safe"]
    with pytest.raises(ValueError, match="no reply for 1 questions"):
        score_replies([fact, injection], {"1": "…"})
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_questions(tmp_path / "bad.jsonl")
