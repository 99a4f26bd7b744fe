"""Prompt formats: tiny objects that turn a `Prompt` into model text.

A base model (like Gemma 3 270M) has no chat template, so `PlainFormat` writes a transcript
with role labels and stops generation at the next label. A model that ships a chat template
gets `ChatTemplateFormat`, which uses the model's own.
"""

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Turn:
    role: str  # "user" (customer, or the text to work on) or "assistant" (the bot)
    text: str

    def __post_init__(self):
        if self.role not in ("user", "assistant"):
            raise ValueError(f"turn role must be 'user' or 'assistant', got {self.role!r}")


@dataclass(frozen=True)
class Prompt:
    """What to ask the model: instructions, context, and the turns so far (last one the user's)."""

    system: str
    turns: tuple[Turn, ...]
    context: str = ""  # e.g. knowledge-base entries; goes after the instructions
    user_label: str = "Customer"
    assistant_label: str = "Agent"
    examples: tuple[Turn, ...] = field(default=())  # a worked exchange shown before the real one


class PromptFormat(Protocol):
    def apply(self, prompt: Prompt) -> str: ...

    def stop_strings(self, prompt: Prompt) -> tuple[str, ...]: ...


def one_line(text: str) -> str:
    """A turn's text on one line: a customer cannot start a line with "Agent:" and be read as
    the agent (the transcript formats give each turn one labelled line)."""
    return " ".join(text.split("\n")).strip()


def _labelled(turns: tuple[Turn, ...], prompt: Prompt) -> list[str]:
    labels = {"user": prompt.user_label, "assistant": prompt.assistant_label}
    return [f"{labels[turn.role]}: {turn.text}" for turn in turns]


class PlainFormat:
    """Transcript format for base models; the reply is whatever follows the last label."""

    def apply(self, prompt: Prompt) -> str:
        blocks = [prompt.system.strip()]
        if prompt.context:
            blocks.append(prompt.context.strip())
        if prompt.examples:
            blocks.append("\n".join(_labelled(prompt.examples, prompt)))
        blocks.append("\n".join([*_labelled(prompt.turns, prompt), f"{prompt.assistant_label}:"]))
        return "\n\n".join(blocks)

    def stop_strings(self, prompt: Prompt) -> tuple[str, ...]:
        # A base model keeps writing the transcript: the next label, or a blank line that
        # starts a new block, ends the reply.
        return (f"\n{prompt.user_label}:", f"\n{prompt.assistant_label}:", "\n\n")


class ChatTemplateFormat:
    """Uses the tokenizer's own chat template (instruct models)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def apply(self, prompt: Prompt) -> str:
        system = "\n\n".join(part.strip() for part in (prompt.system, prompt.context) if part)
        messages = [{"role": "system", "content": system}]
        messages += [{"role": turn.role, "content": turn.text} for turn in (*prompt.examples, *prompt.turns)]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def stop_strings(self, prompt: Prompt) -> tuple[str, ...]:
        return ()  # the template's end-of-turn token is the model's eos


def format_for(tokenizer) -> PromptFormat:
    """The model's own chat template when it has one, else the plain transcript format."""
    if getattr(tokenizer, "chat_template", None):
        return ChatTemplateFormat(tokenizer)
    return PlainFormat()
