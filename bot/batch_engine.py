"""Continuous batching over one base model with many adapters in the same batch.

    submit(input_ids, adapter, sampling) → Request (a stream of token ids)
    step(): admit the waiting requests · one prefill chunk for them · one decode step for all

Every row of a decode step may use a different adapter:
- LoRA: all LoRA adapters live in one PeftModel and PEFT applies each to its own rows
  (`adapter_names=`, one name per row; "__base__" for none).
- Prompt tuning: the soft prompt is a tensor of virtual-token embeddings placed in front of
  that request's prompt during its prefill; afterwards the row decodes like any other (its
  keys and values carry the prompt), with LoRA off for it.
- None: the base model ("__base__").

Requests that are waiting when a prefill starts are prefilled together, left-padded to one
length, in chunks of `prefill_chunk` positions, one chunk per step, so long prompts never
stall the rows that are decoding. When the prefill ends the group joins the batch: the
shorter of the two caches is left-padded and they are concatenated; padding stays masked
and each row keeps its own positions, so it decodes as if alone. Finished and cancelled rows
leave at the next step.

Why not transformers' built-in continuous batching: it packs requests into one ragged row,
where PEFT's per-row LoRA cannot apply, it takes token ids only (no soft prompts), and its
sampling settings (greedy or not, repetition penalty, stop strings) are global.
"""

import json
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from adapters.registry import AdapterError

log = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no LoRA on this row"


@dataclass
class Sampling:
    """Per-request decoding settings."""

    max_new_tokens: int = 96
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling settings: {self}")


class Request:
    """One generation. Iterate it for token ids as they come; `cancel()` ends it at the next step."""

    def __init__(self, request_id: int, input_ids: list[int], adapter: str | None, sampling: Sampling):
        self.id = request_id
        self.input_ids = list(input_ids)
        self.adapter = adapter
        self.sampling = sampling
        self.generated: list[int] = []
        self.finish_reason: str | None = None  # eos, length, cancelled, error
        self.submitted = time.perf_counter()
        self.token_times: list[float] = []
        self.started = time.monotonic()
        self.deadline: float | None = None  # time.monotonic() after which a reader stops waiting
        self._cancel = threading.Event()
        self._tokens: queue.Queue = queue.Queue()
        self._drained = False
        self._generator = torch.Generator().manual_seed(sampling.seed)
        # Scheduler state
        self.length = 0  # positions used: soft prompt + prompt + fed tokens
        self.pending: int | None = None  # the last token, to feed at the next decode step

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[int]:
        """The new token ids, as they come; a second pass yields nothing. Past the request's
        deadline it is cancelled and TimeoutError raised: a reader never waits forever."""
        while not self._drained:
            try:
                token = self._tokens.get(timeout=max(0.0, self.deadline - time.monotonic()) if self.deadline else None)
            except queue.Empty:
                self.cancel()
                raise TimeoutError(f"request {self.id} timed out after {self.deadline - self.started:.0f} s") from None
            if token is None:
                self._drained = True
                return
            yield token

    def result(self) -> list[int]:
        """Block until the request ends; its generated token ids."""
        for _ in self:
            pass
        return self.generated


class EngineBusy(RuntimeError):
    """The waiting queue is full: the caller should ask the customer to try again in a moment."""


class BatchEngine:
    def __init__(self, model, max_batch: int = 32, prefill_chunk: int = 256, max_resident: int = 8,
                 max_waiting: int = 256):
        self.base = model
        self.max_batch, self.prefill_chunk, self.max_resident = max_batch, prefill_chunk, max_resident
        self.max_waiting = max_waiting
        self.lora = None  # PeftModel holding every resident LoRA adapter
        self.soft_prompts: dict[str, torch.Tensor] = {}  # name → (virtual tokens, hidden)
        self.known: dict[str, tuple[str, Path]] = {}  # name → (method, folder): loadable on demand
        self.resident: OrderedDict[str, str] = OrderedDict()  # name → method, least recently used first
        self.pinned: set[str] = set()
        self.waiting: deque[Request] = deque()
        self.prefilling: list[Request] = []  # the group being prefilled together
        self._prefill: dict = {}  # its padded embeddings, mask, positions, cache and progress
        self.running: list[Request] = []
        self.cache: DynamicCache | None = None  # the batch's cache, rows as in self.running
        self.mask: torch.Tensor | None = None  # (rows, cached length): 0 marks left padding
        eos = getattr(model.generation_config, "eos_token_id", None)
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.lock = threading.RLock()
        self.work = threading.Condition(self.lock)
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._stop = False

    # -- adapters ------------------------------------------------------------------------------

    def register(self, name: str, method: str, folder: Path, load: bool = True, pinned: bool = False) -> None:
        """Make an adapter available by name (loaded now, or on first use when `load` is False)."""
        if method not in ("lora", "prompt_tuning"):
            raise AdapterError(f"adapter {name}: method must be lora or prompt_tuning, got {method!r}")
        with self.lock:
            self.known[name] = (method, Path(folder))
            if load:
                try:
                    self._ensure_resident(name)
                except Exception:  # an adapter that cannot load is not registered either
                    del self.known[name]
                    raise
            if pinned:
                self.pinned.add(name)

    def unload(self, name: str) -> None:
        """Free an adapter's memory; refused while a request uses it. It stays registered."""
        with self.lock:
            if name not in self.resident:
                return
            if any(r.adapter == name for r in self._active()):
                raise AdapterError(f"adapter {name} is in use by a running request; unload it when they finish")
            self._drop(name)

    def _active(self) -> list[Request]:
        return [*self.running, *self.prefilling, *self.waiting]

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def _drop(self, name: str) -> None:
        method = self.resident.pop(name)
        if method == "prompt_tuning":
            del self.soft_prompts[name]
        elif "lora" in self.resident.values():
            self.lora.delete_adapter(name)
        else:  # the last LoRA adapter: take the LoRA layers out of the base model altogether
            self.lora.unload()
            self.lora = None
        log.info("unloaded adapter %s", name)

    def _ensure_resident(self, name: str) -> None:
        if name in self.resident:
            self.resident.move_to_end(name)
            return
        if name not in self.known:
            raise AdapterError(f"unknown adapter {name!r}; registered: {sorted(self.known)}")
        in_use = {r.adapter for r in self._active()}
        while len(self.resident) >= self.max_resident:
            victim = next((n for n in self.resident if n not in self.pinned and n not in in_use), None)
            if victim is None:
                raise AdapterError(f"cannot load {name}: {self.max_resident} adapters resident, all pinned or in use")
            self._drop(victim)
        method, folder = self.known[name]
        # Loaded as ordinary tensors even when a step (inference mode) loads it on demand:
        # PEFT later flips requires_grad on adapter weights, which inference tensors refuse.
        with torch.inference_mode(False):
            self._load(name, method, folder)
        self.resident[name] = method
        log.info("loaded adapter %s (%s)", name, method)

    def _load(self, name: str, method: str, folder: Path) -> None:
        if method == "prompt_tuning":
            from safetensors.torch import load_file

            weights = load_file(str(folder / "adapter_model.safetensors"))
            config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            prompt = weights["prompt_embeddings"]
            if prompt.shape != (config["num_virtual_tokens"], self.base.get_input_embeddings().embedding_dim):
                raise AdapterError(f"{folder}: soft prompt of shape {tuple(prompt.shape)} does not fit this model")
            self.soft_prompts[name] = prompt.to(self.base.device, self.base.get_input_embeddings().weight.dtype)
        else:
            from peft import PeftModel

            # In the base model's precision: PEFT's default keeps LoRA weights in fp32 over a bf16
            # base and casts every row's activations up and back for them.
            if self.lora is None:
                self.lora = PeftModel.from_pretrained(self.base, str(folder), adapter_name=name,
                                                      autocast_adapter_dtype=False).eval()
            else:
                self.lora.load_adapter(str(folder), adapter_name=name, autocast_adapter_dtype=False)

    # -- requests ------------------------------------------------------------------------------

    def submit(self, input_ids: list[int], adapter: str | None = None, sampling: Sampling | None = None,
               timeout_s: float | None = None) -> Request:
        """Queue a generation; EngineBusy when `max_waiting` requests already wait. Its reader
        gives up `timeout_s` after submission."""
        if not input_ids:
            raise ValueError("a request needs at least one prompt token")
        with self.lock:
            if adapter is not None and adapter not in self.known:
                raise AdapterError(f"unknown adapter {adapter!r}; registered: {sorted(self.known)}")
            if len(self.waiting) >= self.max_waiting:
                raise EngineBusy(f"{len(self.waiting)} requests are waiting (serving.max_waiting)")
            request = Request(self._next_id, input_ids, adapter, sampling or Sampling())
            if timeout_s is not None:
                request.deadline = request.started + timeout_s
            self._next_id += 1
            self.waiting.append(request)
            self.work.notify()
        return request

    def start(self) -> None:
        """Run the scheduler in a background thread until `stop()`."""
        with self.lock:
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="batch-engine", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self._stop = True
            self.work.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self._stop and not self.busy:
                    self.work.wait()
                if self._stop:
                    return
            try:
                self.step()
            except Exception:  # a failed step ends the rows it ran, never the scheduler or the queue
                log.exception("batch step failed")
                with self.lock:
                    for request in [*self.running, *self.prefilling]:
                        self._finish(request, "error")
                    self.running, self.prefilling, self._prefill, self.cache, self.mask = [], [], {}, None, None

    # -- one scheduler step --------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> None:
        with self.lock:
            self._leave([r for r in self.running if r.cancelled])
            for request in [r for r in self.waiting if r.cancelled]:
                self.waiting.remove(request)
                self._finish(request, "cancelled")
            if not self.prefilling and self.waiting and len(self.running) < self.max_batch:
                self._start_prefill()
            if self.prefilling:
                self._prefill_chunk()
            if self.running:
                self._decode()

    def _runner(self):
        return self.lora if self.lora is not None else self.base

    def _adapter_kwargs(self, rows: list[Request]) -> dict:
        if self.lora is None:
            return {}
        return {"adapter_names": [r.adapter if self.resident.get(r.adapter) == "lora" else BASE for r in rows]}

    def _start_prefill(self) -> None:
        """Take waiting requests (as many as the batch has room for) into one prefill group:
        [soft prompt; prompt] embeddings per row, left-padded to one length."""
        embed = self.base.get_input_embeddings()
        group, rows = [], []
        while self.waiting and len(self.running) + len(group) < self.max_batch:
            request = self.waiting.popleft()
            try:
                if request.adapter is not None:
                    self._ensure_resident(request.adapter)
            except Exception:  # unknown, evicted-and-now-corrupt or unfitting adapter: this request only
                log.exception("request %d cannot start", request.id)
                self._finish(request, "error")
                continue
            row = embed(torch.tensor(request.input_ids, device=self.base.device))
            if request.adapter in self.soft_prompts:
                row = torch.cat([self.soft_prompts[request.adapter].to(row.dtype), row])
            group.append(request)
            rows.append(row)
        if not group:
            return
        width = max(len(row) for row in rows)
        self.prefilling = group
        self._prefill = {
            "embeds": torch.stack([F.pad(row, (0, 0, width - len(row), 0)) for row in rows]),
            "mask": torch.stack([F.pad(torch.ones(len(row), dtype=torch.long), (width - len(row), 0)) for row in rows]),
            "positions": torch.stack([F.pad(torch.arange(len(row)), (width - len(row), 0)) for row in rows]),
            "lengths": [len(row) for row in rows], "done": 0, "cache": DynamicCache(config=self.base.config),
        }

    def _prefill_chunk(self) -> None:
        state, group = self._prefill, self.prefilling
        start, end = state["done"], min(state["done"] + self.prefill_chunk, state["embeds"].shape[1])
        device = self.base.device
        # logits_to_keep=1: only the last position's logits (a 262k vocabulary makes the rest costly).
        out = self._runner()(
            inputs_embeds=state["embeds"][:, start:end], position_ids=state["positions"][:, start:end].to(device),
            attention_mask=state["mask"][:, :end].to(device), cache=state["cache"], use_cache=True, logits_to_keep=1,
            **self._adapter_kwargs(group),
        )
        state["done"] = end
        if end < state["embeds"].shape[1]:
            return
        joining = []
        for i, request in enumerate(group):
            request.length = state["lengths"][i]
            if not request.cancelled and self._next_token(request, out.logits[i, -1]):
                joining.append(i)
            elif request.finish_reason is None:
                self._finish(request, "cancelled")
        cache, mask = state["cache"], state["mask"].to(device)
        self.prefilling, self._prefill = [], {}
        if joining:
            index = torch.tensor(joining, device=device)
            if len(joining) < len(group):
                cache.batch_select_indices(index)
            self._join([group[i] for i in joining], cache, mask[index])

    def _join(self, requests: list[Request], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Add prefilled rows to the batch, left-padding the shorter cache to the other's length."""
        if not self.running:
            self.cache, self.mask, self.running = cache, mask, list(requests)
            return
        old, new = self.mask.shape[1], mask.shape[1]
        length = max(old, new)
        for batch_layer, row_layer in zip(self.cache.layers, cache.layers):
            window = getattr(batch_layer, "sliding_window", None)
            stored = min(length, window - 1) if window else length  # a sliding layer keeps its last window - 1

            def left_pad(t, size=stored):
                return F.pad(t, (0, 0, size - t.shape[-2], 0))

            batch_layer.keys = torch.cat([left_pad(batch_layer.keys), left_pad(row_layer.keys)])
            batch_layer.values = torch.cat([left_pad(batch_layer.values), left_pad(row_layer.values)])
            if window:
                batch_layer.cumulative_length = length
        self.mask = torch.cat([F.pad(self.mask, (length - old, 0)), F.pad(mask, (length - new, 0))])
        self.running.extend(requests)

    def _leave(self, rows: list[Request]) -> None:
        if not rows:
            return
        for request in rows:
            if request.finish_reason is None:
                self._finish(request, "cancelled")
        keep = [i for i, r in enumerate(self.running) if r not in rows]
        self.running = [self.running[i] for i in keep]
        if not self.running:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]

    def _decode(self) -> None:
        rows = self.running
        ids = torch.tensor([[r.pending] for r in rows], device=self.base.device)
        positions = torch.tensor([[r.length] for r in rows], device=self.base.device)
        self.mask = torch.cat([self.mask, torch.ones(len(rows), 1, dtype=self.mask.dtype, device=self.mask.device)], dim=1)
        out = self._runner()(input_ids=ids, position_ids=positions, attention_mask=self.mask, cache=self.cache,
                             use_cache=True, logits_to_keep=1, **self._adapter_kwargs(rows))
        finished = []
        for i, request in enumerate(rows):
            request.length += 1
            if not self._next_token(request, out.logits[i, -1]):
                finished.append(request)
        self._leave(finished)

    def _next_token(self, request: Request, logits: torch.Tensor) -> bool:
        """Sample and hand out one row's token; False when the request is finished. A row whose
        sampling fails (e.g. NaN logits) ends with "error" and the others go on."""
        try:
            token = self._sample(request, logits.float())
        except Exception:
            log.exception("request %d failed", request.id)
            self._finish(request, "error")
            return False
        return self._emit(request, token)

    def _sample(self, request: Request, logits: torch.Tensor) -> int:
        settings = request.sampling
        if settings.repetition_penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor
            seen = torch.tensor(sorted(set(request.input_ids + request.generated)), device=logits.device)
            scores = logits[seen]
            logits[seen] = torch.where(scores < 0, scores * settings.repetition_penalty, scores / settings.repetition_penalty)
        if settings.temperature == 0:
            return int(torch.argmax(logits))
        probabilities = torch.softmax(logits / settings.temperature, dim=-1)
        if settings.top_p < 1.0:
            ordered, order = torch.sort(probabilities, descending=True)
            outside = torch.cumsum(ordered, dim=-1) - ordered > settings.top_p  # keep the smallest set reaching top_p
            ordered[outside] = 0
            probabilities = torch.zeros_like(probabilities).scatter(0, order, ordered)
        return int(torch.multinomial(probabilities.cpu(), 1, generator=request._generator))

    def _emit(self, request: Request, token: int) -> bool:
        """Hand out a token; False when the request is finished."""
        request.generated.append(token)
        request.token_times.append(time.perf_counter())
        request.pending = token
        request._tokens.put(token)
        if token in self.eos:
            self._finish(request, "eos")
        elif len(request.generated) >= request.sampling.max_new_tokens:
            self._finish(request, "length")
        elif request.cancelled:
            self._finish(request, "cancelled")
        return request.finish_reason is None

    def _finish(self, request: Request, reason: str) -> None:
        if request.finish_reason is None:
            request.finish_reason = reason
            request._tokens.put(None)
