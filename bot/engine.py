"""Generation: one base model in memory with its adapters, replies streamed as text pieces.

`Engine` turns prompts into text: it formats the prompt, checks it fits the window, and
streams the reply up to the format's stop strings. The tokens come from `BatchEngine`
(bot/batch_engine.py), which runs every conversation's request in one continuous batch,
each row with its own adapter (LoRA, prompt tuning or none), so customers do not wait for
one another.
"""

import logging
from collections.abc import Iterator

from adapters.registry import AdapterCard, AdapterError
from bot.batch_engine import BatchEngine, Sampling
from bot.config import GenerationSettings, ServingSettings
from prompts.formats import Prompt, PromptFormat, format_for

log = logging.getLogger(__name__)


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
    """`stream(prompt, adapter)` yields reply text as it is generated."""

    def __init__(self, model, tokenizer, settings: GenerationSettings | None = None, prompt_format: PromptFormat | None = None,
                 serving: ServingSettings | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()
        self.format = prompt_format or format_for(tokenizer)
        self.window = getattr(model.config, "max_position_embeddings", None) or 2048
        serving = serving or ServingSettings()
        self.serving = serving
        self.batch = BatchEngine(model, serving.max_batch, serving.prefill_chunk, serving.max_resident_adapters,
                                 serving.max_waiting)
        self.adapters: dict[str, AdapterCard] = {}

    def load_adapters(self, cards: dict[str, AdapterCard], base_fingerprint: str | None = None) -> dict[str, AdapterCard]:
        """Load every adapter that fits this base model; refuse the others with a logged reason
        and keep serving. Returns the loaded ones."""
        for name, card in cards.items():
            if base_fingerprint and card.base_fingerprint and card.base_fingerprint != base_fingerprint:
                log.warning("refusing adapter %s: trained on other base weights (fingerprint %s…, serving %s…); "
                            "retrain it with `babelbot tune` on this model", name, card.base_fingerprint[:12],
                            base_fingerprint[:12])
                continue
            try:
                self.batch.register(name, card.method, card.path)
            except Exception as error:  # a corrupt or mismatched file must not stop the bot
                log.warning("refusing adapter %s from %s: %s", name, card.path, error)
                continue
            self.adapters[name] = card
        log.info("adapters loaded: %s", sorted(self.adapters) or "none")
        return dict(self.adapters)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, prompt: Prompt) -> int:
        return self.count_tokens(self.format.apply(prompt))

    def complete(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int | None = None) -> str:
        """The whole reply at once (summaries, translations)."""
        return "".join(self.stream(prompt, adapter, max_new_tokens))

    def stream(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int | None = None) -> Iterator[str]:
        max_new_tokens = max_new_tokens or self.settings.max_new_tokens
        input_ids = self.tokenizer(self.format.apply(prompt))["input_ids"]
        if len(input_ids) + max_new_tokens > self.window:
            raise ValueError(
                f"prompt of {len(input_ids)} tokens plus {max_new_tokens} new tokens exceeds the model's window of {self.window}"
            )
        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {sorted(self.adapters)}")
        settings = self.settings
        try:
            request = self.batch.submit(input_ids, adapter, Sampling(
                max_new_tokens=max_new_tokens, temperature=settings.temperature,
                top_p=settings.top_p if settings.temperature > 0 else 1.0, repetition_penalty=settings.repetition_penalty,
            ), timeout_s=self.serving.request_timeout_s)
        except AdapterError as error:
            raise ValueError(str(error)) from None
        self.batch.start()
        stop_filter = StopFilter(self.format.stop_strings(prompt))
        shown = ""
        try:
            for _ in request:
                text = self.tokenizer.decode(request.generated, skip_special_tokens=True).lstrip()
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    continue
                if out := stop_filter.push(text[len(shown):]):
                    yield out
                shown = text
                if stop_filter.stopped:
                    break
            if request.finish_reason == "error":
                raise RuntimeError(f"generation failed for request {request.id} (see the log)")
            if out := stop_filter.flush().rstrip():
                yield out
        finally:
            request.cancel()  # also when the consumer stops early (a closed browser tab)
