"""The dialogue manager and engine on a tiny random model: real generation, real SQLite."""

import time

import pytest

from bot.build import build_router
from bot.config import BotConfig, DialogueSettings, GenerationSettings
from bot.dialogue import DialogueManager
from bot.engine import Engine, StopFilter
from bot.store import Store
from bot.text import clean_text
from prompts.formats import Prompt, Turn
from prompts.knowledge import INTENT_TOPICS, knowledge_base
from prompts.locales import locale_for


@pytest.fixture(scope="module")
def router():
    return build_router(BotConfig(), adapters={})  # the tiny model has no adapters


@pytest.fixture
def manager(tiny_model, router, tmp_path):
    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=12))
    return DialogueManager(engine, Store(tmp_path / "c.sqlite3"), router)


def stored(manager, session_id):
    return [(t.role, t.kind, t.text) for t in manager.store.turns(manager.store.session(session_id))]


def test_stop_filter_cuts_at_a_stop_string_split_across_pieces():
    stop = StopFilter(("\nCustomer:",))
    shown = [stop.push(p) for p in ["Your order ", "shipped.\nCus", "tomer: more"]]
    assert shown == ["Your order ", "shipped.", ""] and stop.stopped
    held = StopFilter(("\nCustomer:",))
    assert held.push("Done.\nCu") == "Done." and held.flush() == "\nCu"


def test_engine_streams_in_pieces_and_drops_an_abandoned_request(tiny_model):
    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=20))
    prompt = Prompt(system="S", turns=(Turn("user", "hello"),))
    pieces = list(engine.stream(prompt))
    assert len(pieces) > 1 and "".join(pieces).strip()
    stream = engine.stream(prompt)
    next(stream)
    stream.close()  # the reader went away mid-reply: its request leaves the batch
    deadline = time.monotonic() + 10
    while engine.batch.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.batch.busy
    assert "".join(engine.stream(prompt)) == "".join(pieces)  # and the next reply is the same as the first


def test_a_turn_is_routed_generated_and_stored(manager):
    reply = manager.handle("s1", "Hola, ¿dónde está mi pedido NW-12345?")
    assert reply.route.language == "es" and reply.route.intent == "order_status" and reply.route.adapter is None
    text = reply.read()
    assert text
    assert stored(manager, "s1") == [
        ("user", "message", "Hola, ¿dónde está mi pedido NW-12345?"),
        ("assistant", "message", text.strip()),
    ]


def test_a_short_follow_up_keeps_the_conversation_language(manager):
    manager.handle("s1", "Guten Tag, wo ist meine Bestellung?").read()
    assert manager.handle("s1", "ok").route.language == "de"


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x01\x07\x1b", "\ud800"])
def test_empty_or_unprintable_input_gets_a_notice_and_stores_nothing(manager, text):
    reply = manager.handle("s2", text)
    assert reply.route is None and reply.read() == locale_for("en").notice("empty")
    assert stored(manager, "s2") == []


def test_a_huge_message_gets_a_notice_in_its_language_and_loses_nothing(manager):
    manager.handle("s3", "Bonjour, où est ma commande ?").read()
    before = stored(manager, "s3")
    reply = manager.handle("s3", "Je voudrais savoir où est ma commande. " * 600)
    assert reply.read() == locale_for("fr").notice("too_long", limit=1500)
    assert stored(manager, "s3") == before


@pytest.mark.parametrize("text", ["مرحبا، أين طلبي؟", "👍🙂🎉", "¿Dónde\u200f está mi pedido?"])
def test_right_to_left_emoji_and_odd_text_get_an_answer(manager, text):
    reply = manager.handle("s4", text)
    assert reply.read()


def test_a_language_without_adapter_or_locale_is_answered(manager):
    reply = manager.handle("s5", "Buongiorno, dove si trova il mio ordine?")
    assert reply.route.language == "it" and reply.route.adapter is None
    assert reply.read()


def test_handoff_then_waiting_then_reset(manager):
    reply = manager.handle("s6", "Quiero hablar con una persona real, por favor")
    assert reply.route.intent == "human_agent"
    assert reply.read() == locale_for("es").notice("handoff")
    assert manager.store.session("s6").state == "handoff"
    assert manager.handle("s6", "¿Hola? Sigo esperando").read() == locale_for("es").notice("waiting")
    assert [kind for _, kind, _ in stored(manager, "s6")] == ["message", "notice", "message", "notice"]
    assert manager.handle("s6", "/reset").read() == locale_for("es").notice("reset")
    assert manager.store.session("s6").state == "bot" and stored(manager, "s6") == []


def test_old_turns_are_dropped_to_fit_the_context(tiny_model, router, tmp_path):
    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, GenerationSettings(max_new_tokens=8))
    manager = DialogueManager(engine, Store(tmp_path / "c.sqlite3"), router, DialogueSettings(context_tokens=1000))
    for i in range(12):
        manager.handle("long", f"Question number {i}: how long does standard shipping to Europe take?").read()
    session = manager.store.session("long")
    manager.store.add_turn(session, "user", "and to Japan?")
    prompt = manager._prompt(session, "en", ["shipping_times.standard"], "shipping_info")
    assert engine.prompt_tokens(prompt) <= 1000 - 8
    assert prompt.turns[0].role == "user" and prompt.turns[-1].text == "and to Japan?"
    assert "Question number 11" in prompt.turns[-3].text
    assert len(prompt.turns) < len(manager.store.turns(session))


def test_the_prompt_carries_the_retrieved_facts_in_the_reply_language(manager):
    manager.handle("kb", "Hola, mi cargador dejó de funcionar").read()
    session = manager.store.session("kb")
    retrieved = manager._prompt(session, "es", ["warranty.electronics", "warranty.claim"], "complaint")
    by_intent = manager._prompt(session, "es", [], "goodbye")  # no facts: the intent's topics
    spanish = knowledge_base("es")
    entries = [line for line in retrieved.context.splitlines() if line.startswith("- ")]
    facts = f"{spanish.facts['warranty.electronics'].text} {spanish.facts['warranty.claim'].text}"
    assert entries == [f"- {spanish.titles['warranty']}: {facts}"]
    fixed = [line for line in by_intent.context.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in fixed] == [f"- {spanish.titles[t]}" for t in INTENT_TOPICS["goodbye"]]


def test_conversation_survives_a_new_manager_on_the_same_database(manager, tiny_model, router):
    manager.handle("s7", "Hello, where is my order?").read()
    model, tokenizer = tiny_model
    again = DialogueManager(Engine(model, tokenizer), Store(manager.store.path), router)
    assert [role for role, _, _ in stored(again, "s7")] == ["user", "assistant"]
    assert again.store.session("s7").language == "en"


def test_clean_text():
    assert clean_text("  a\x00b\u0007c\n ") == "abc"
    assert clean_text("e\u0301") == "é"  # NFC


@pytest.mark.parametrize("header, language", [
    ("es-ES,es;q=0.9,en;q=0.8", "es"), ("zh-CN", "zh"), ("DE", "de"), ("*", None), ("", None), (None, None),
    ("x-klingon", None),
])
def test_the_web_page_hints_the_browsers_first_language(header, language):
    from bot.frontends.web import browser_language

    assert browser_language(header) == language


def test_asking_for_a_person_where_no_agent_can_be_reached_is_told_the_truth(manager):
    manager.agents_reachable = False
    reply = manager.handle("h1", "I want to talk to a human agent please")
    assert reply.read() == locale_for("en").notice("no_agents") and reply.event is None
    assert manager.store.session("h1").state != "handoff"
    assert manager.start_handoff("h1").read() == locale_for("en").notice("no_agents")
