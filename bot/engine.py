"""Generation: one base model in memory with its adapters, replies streamed as text pieces.

The engine owns the model and the adapters, so it owns the rule that one generation runs at
a time: PEFT has one active adapter per model, and two requests switching it at once would
get each other's adapter (on a 2-core CPU they would only slow each other down anyway).

LoRA adapters live in one PeftModel and are switched with `set_adapter`; each prompt-tuning
adapter is its own thin PeftModel over the same base (it only prepends virtual tokens), run
with the LoRA layers disabled and generated through `babelbot.soft_prompts` (PEFT's own
`generate` mishandles soft prompts with transformers 5).
"""

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from adapters.registry import AdapterCard
from babelbot import soft_prompts
from prompts.formats import Prompt, PromptFormat, format_for

log = logging.getLogger(__name__)


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
        self.lora = None  # PeftModel holding every LoRA adapter, once one is loaded
        self.prompt_tuned: dict[str, object] = {}  # name → PeftModel (prompt tuning)
        self.adapters: dict[str, AdapterCard] = {}

    def load_adapters(self, cards: dict[str, AdapterCard], base_fingerprint: str | None = None) -> dict[str, AdapterCard]:
        """Load every adapter that fits this base model; refuse the others with a logged reason
        and keep serving. Returns the loaded ones."""
        from peft import PeftModel

        for name, card in cards.items():
            if base_fingerprint and card.base_fingerprint and card.base_fingerprint != base_fingerprint:
                log.warning("refusing adapter %s: trained on other base weights (fingerprint %s…, serving %s…); "
                            "retrain it with `babelbot tune` on this model", name, card.base_fingerprint[:12],
                            base_fingerprint[:12])
                continue
            try:
                with self.lock:
                    if card.method == "lora":
                        if self.lora is None:
                            self.lora = PeftModel.from_pretrained(self.model, card.path, adapter_name=name).eval()
                        else:
                            self.lora.load_adapter(card.path, adapter_name=name)
                    else:
                        self.prompt_tuned[name] = PeftModel.from_pretrained(self.model, card.path).eval()
            except Exception as error:  # a corrupt or mismatched file must not stop the bot
                log.warning("refusing adapter %s from %s: %s", name, card.path, error)
                continue
            self.adapters[name] = card
        log.info("adapters loaded: %s", sorted(self.adapters) or "none")
        return dict(self.adapters)

    @contextlib.contextmanager
    def _model_for(self, adapter: str | None):
        """The model to generate with for `adapter` (None: the base model). Hold self.lock."""
        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {sorted(self.adapters)}")
        if adapter is not None and self.adapters[adapter].method == "lora":
            self.lora.set_adapter(adapter)
            yield self.lora
            return
        without_lora = self.lora.disable_adapter() if self.lora is not None else contextlib.nullcontext()
        with without_lora:
            yield self.prompt_tuned[adapter] if adapter is not None else self.model

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(self, prompt: Prompt) -> int:
        return self.count_tokens(self.format.apply(prompt))

    def complete(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int | None = None) -> str:
        """The whole reply at once (summaries, translations)."""
        return "".join(self.stream(prompt, adapter, max_new_tokens))

    def stream(self, prompt: Prompt, adapter: str | None = None, max_new_tokens: int | None = None) -> Iterator[str]:
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
                with self.lock, torch.inference_mode(), self._model_for(adapter) as model:
                    soft_prompts.generate(model, **kwargs)
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
