"""Per-task prompts: `reply` (answer the customer), `summarize` (English handoff summary for
a human agent), `translate` (agent text ⇄ customer language)."""

from babelbot.languages import language_name
from prompts.formats import Prompt, Turn, one_line
from prompts.knowledge import Fact, render_facts
from prompts.locales import locale_for

SUMMARIZE_INSTRUCTIONS = (
    "Summarize this customer-support conversation in English for the human agent taking over: "
    "the customer's problem, any order numbers, what the bot already answered, and what the "
    "customer wants next. At most three sentences."
)


def reply_prompt(language: str, turns: list[Turn], facts: list[Fact]) -> Prompt:
    """Answer the last customer turn in `language`, grounded in the knowledge-base `facts`
    (in that language). The one reply prompt: training and serving both build it here."""
    locale = locale_for(language)
    return Prompt(
        system=locale.system,
        context=render_facts(facts, locale.language),
        examples=(Turn("user", locale.example_customer), Turn("assistant", locale.example_agent)),
        turns=tuple(turns),
    )


def transcript_text(turns: list[Turn]) -> str:
    labels = {"user": "Customer", "assistant": "Agent"}
    return "\n".join(f"{labels[turn.role]}: {one_line(turn.text)}" for turn in turns)


def summarize_prompt(turns: list[Turn]) -> Prompt:
    return Prompt(
        system=SUMMARIZE_INSTRUCTIONS,
        turns=(Turn("user", transcript_text(turns)),),
        user_label="Conversation",
        assistant_label="Summary",
    )


def translate_prompt(text: str, source: str, target: str) -> Prompt:
    return Prompt(
        system=f"Translate the text from {language_name(source)} to {language_name(target)}. "
        "Keep order numbers, names and amounts unchanged.",
        turns=(Turn("user", text),),
        user_label=language_name(source),
        assistant_label=language_name(target),
    )
