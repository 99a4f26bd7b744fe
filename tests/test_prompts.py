import re

import pytest
from transformers import PreTrainedTokenizerFast

from babelbot.labels import INTENTS
from babelbot.languages import TRAINING_LANGUAGES
from prompts.formats import ChatTemplateFormat, PlainFormat, Prompt, Turn, format_for
from prompts.knowledge import INTENT_TOPICS, TOPICS, facts_for_topics, knowledge_base, render_facts
from prompts.locales import NOTICE_KEYS, locale_for
from prompts.tasks import summarize_prompt, translate_prompt

PROMPT = Prompt(
    system="Be helpful.",
    context="- Returns: 30 days.",
    examples=(Turn("user", "Hi?"), Turn("assistant", "Hello!")),
    turns=(Turn("user", "Where is my order?"), Turn("assistant", "It shipped."), Turn("user", "Thanks")),
)


def test_plain_format_exact_string():
    assert PlainFormat().apply(PROMPT) == (
        "Be helpful.\n\n"
        "- Returns: 30 days.\n\n"
        "Customer: Hi?\nAgent: Hello!\n\n"
        "Customer: Where is my order?\nAgent: It shipped.\nCustomer: Thanks\nAgent:"
    )
    assert PlainFormat().stop_strings(PROMPT) == ("\nCustomer:", "\nAgent:", "\n\n")


def test_plain_format_without_context_or_examples():
    prompt = Prompt(system="S", turns=(Turn("user", "q"),))
    assert PlainFormat().apply(prompt) == "S\n\nCustomer: q\nAgent:"


def test_chat_template_format_uses_the_models_template(tiny_model):
    _, tokenizer = tiny_model
    assert isinstance(format_for(tokenizer), PlainFormat)  # no template: plain transcript
    templated = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<eos>")
    templated.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    chat_format = format_for(templated)
    assert isinstance(chat_format, ChatTemplateFormat)
    assert chat_format.apply(PROMPT) == (
        "<system>Be helpful.\n\n- Returns: 30 days.</system><user>Hi?</user><assistant>Hello!</assistant>"
        "<user>Where is my order?</user><assistant>It shipped.</assistant><user>Thanks</user><assistant>"
    )
    assert chat_format.stop_strings(PROMPT) == ()


def test_turn_rejects_unknown_role():
    with pytest.raises(ValueError, match="role"):
        Turn("system", "x")


def test_summarize_and_translate_prompts_exact():
    summary = summarize_prompt([Turn("user", "Mi pedido NW-12345 no llegó"), Turn("assistant", "Lo siento.")])
    assert PlainFormat().apply(summary).endswith(
        "Conversation: Customer: Mi pedido NW-12345 no llegó\nAgent: Lo siento.\nSummary:"
    )
    translation = translate_prompt("Your refund is on its way.", "en", "es")
    assert PlainFormat().apply(translation) == (
        "Translate the text from English to Spanish. Keep order numbers, names and amounts unchanged.\n\n"
        "English: Your refund is on its way.\nSpanish:"
    )


@pytest.mark.parametrize("language", TRAINING_LANGUAGES)
def test_every_language_has_the_same_policies(language):
    knowledge = knowledge_base(language)
    english = knowledge_base("en")
    assert tuple(knowledge.titles) == TOPICS and tuple(knowledge.facts) == tuple(english.facts)
    facts = re.compile(r"\$\d+(?:\.\d+)?|NW-\d+|support@northwind\.example|CET")
    for fact_id, fact in knowledge.facts.items():
        assert sorted(set(facts.findall(fact.text))) == sorted(set(facts.findall(english.facts[fact_id].text))), fact_id


@pytest.mark.parametrize("language", TRAINING_LANGUAGES)
def test_every_language_has_a_locale(language):
    locale = locale_for(language)
    assert locale.language == language and locale.system and locale.example_agent
    assert set(locale.notices) == set(NOTICE_KEYS)
    assert "1500" in locale.notice("too_long", limit=1500)


def test_language_without_locale_or_facts_gets_the_english_ones():
    assert locale_for("cs") == locale_for("en")
    assert knowledge_base("cs") == knowledge_base("en")
    assert "italiano" in locale_for("it").system and knowledge_base("it").language == "it"


def test_every_intent_is_grounded():
    assert set(INTENT_TOPICS) == set(INTENTS)
    for intent in INTENTS:
        rendered = render_facts(facts_for_topics(INTENT_TOPICS[intent], "es"), "es")
        assert rendered.startswith("- ") and len(rendered) > 40
