"""Generation: one model in memory, replies streamed as text pieces.

The engine owns the model, so it owns the rule that one generation runs at a time: on a
2-core CPU two interleaved generations only slow each other down, and (once adapters are
switched per request) they would otherwise see each other's adapter.
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from prompts.formats import Prompt, PromptFormat, format_for


@dataclass
class GenerationSettings:
    """How replies are generated."""

    max_new_tokens: int = 96  # reply length cap; ~10 s at 9 tokens/s on 2 CPU cores
    temperature: float = 0.0  # 0 is greedy: the same question gets the same answer
    top_p: float = 0.9  # nucleus sampling, used only when temperature > 0
    repetition_penalty: float = 1.0  # >1 also penalises copying the knowledge base from the prompt

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class StopFilter:
    """Streams text up to the first stop string, holding back only what could start one."""

    def __init__(self, stop_strings: tuple[str, ...]):
        self.stop_strings = stop_strings
        self.text = ""
        self.sent = 0
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add generated text; return the part that is now safe to show."""
        if self.stopped:
            return ""
        self.text += piece
        cut = min((i for s in self.stop_strings if (i := self.text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._release(cut)
        held = max(
            (k for s in self.stop_strings for k in range(1, len(s)) if self.text.endswith(s[:k])),
            default=0,
        )
        return self._release(len(self.text) - held)

    def flush(self) -> str:
        return "" if self.stopped else self._release(len(self.text))

    def _release(self, end: int) -> str:
        out = self.text[self.sent : end]
        self.sent = max(self.sent, end)
        return out


class Engine:
    """`stream(prompt)` yields reply text as it is generated."""

    def __init__(self, model, tokenizer, settings: GenerationSettings | None = None, prompt_format: PromptFormat | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()
        self.format = prompt_format or format_for(tokenizer)
        self.lock = threading.Lock()
        self.window = getattr(model.config, "max_position_embeddings", None) or 2048

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, prompt: Prompt) -> int:
        return self.count_tokens(self.format.apply(prompt))

    def complete(self, prompt: Prompt, max_new_tokens: int | None = None) -> str:
        """The whole reply at once (summaries, translations)."""
        return "".join(self.stream(prompt, max_new_tokens))

    def stream(self, prompt: Prompt, max_new_tokens: int | None = None) -> Iterator[str]:
        max_new_tokens = max_new_tokens or self.settings.max_new_tokens
        text = self.format.apply(prompt)
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        if inputs["input_ids"].shape[1] + max_new_tokens > self.window:
            raise ValueError(
                f"prompt of {inputs['input_ids'].shape[1]} tokens plus {max_new_tokens} new tokens "
                f"exceeds the model's window of {self.window}"
            )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        cancel = threading.Event()
        sampling = self.settings.temperature > 0
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            temperature=self.settings.temperature if sampling else None,
            top_p=self.settings.top_p if sampling else None,
            top_k=None,
            repetition_penalty=self.settings.repetition_penalty,
            stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        stops = self.format.stop_strings(prompt)
        if stops:
            kwargs.update(stop_strings=list(stops), tokenizer=self.tokenizer)
        errors: list[BaseException] = []

        def run():
            try:
                with self.lock, torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as error:  # surfaced in the consumer's thread below
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=run, name="generate", daemon=True)
        worker.start()
        stop_filter = StopFilter(stops)
        started = False
        try:
            for piece in streamer:
                if not started:  # the transcript format leaves a space after "Agent:"
                    piece = piece.lstrip()
                    started = bool(piece)
                if out := stop_filter.push(piece):
                    yield out
                if stop_filter.stopped:
                    break
            if out := stop_filter.flush().rstrip():
                yield out
        finally:
            cancel.set()  # also when the consumer stops early (a closed browser tab)
        worker.join()
        if errors:
            raise errors[0]
