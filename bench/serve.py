"""`babelbot bench serve`: many sessions over many adapters, four ways, in one run.

    (a) batch engine, sessions spread over K adapters (LoRA and prompt tuning mixed)
    (b) batch engine, no adapters
    (c) serial: PEFT `set_adapter` + `generate`, one session after another
    (d) PEFT `generate` with `adapter_names=`, all sessions in one left-padded batch (LoRA only)

All sessions arrive at once with real reply prompts from the test split. Reported per
(precision, method, sessions, adapters): aggregate new tokens/s, time to first token p50/p95,
inter-token latency p50/p95, and peak resident memory during the run; plus the measured
peak GFLOP/s of a large matmul in that precision on the same cores, and the model FLOPs per
second against it twice: counting new tokens only, and counting the prompt tokens' prefill
too (the work actually done: with ~370-token prompts and 32 new tokens, most of it). The
adapters are random (speed does not depend on what they learned), saved in PEFT's format
in a temporary folder.
"""

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from babelbot.models import load_model
from bot.batch_engine import BatchEngine, Sampling

log = logging.getLogger(__name__)
# The baselines keep LoRA weights in the model's precision, as the engine does (PEFT's default
# upcasts them to fp32 over a bf16 model): like against like.
SAME_PRECISION = {"autocast_adapter_dtype": False}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else float("nan")


class PeakMemory:
    """Peak resident set size (MiB) of this process while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class TokenTimes:
    """A `generate` streamer that records when each row got each new token."""

    def __init__(self, rows: int):
        self.times: list[list[float]] = [[] for _ in range(rows)]
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        now = time.perf_counter()
        for row in self.times[: value.shape[0]] if value.dim() else self.times[:1]:
            row.append(now)

    def end(self):
        pass


def make_adapters(model, folder: Path, count: int) -> dict[str, str]:
    """`count` random adapters, alternating LoRA (r=8 on the attention projections) and
    prompt tuning (20 virtual tokens); name → method."""
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    adapters = {}
    for i in range(count):
        torch.manual_seed(i)
        if i % 2 == 0 or count == 1:
            config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, init_lora_weights=False,
                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
            name, method = f"lora-{i}", "lora"
        else:
            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
            name, method = f"prompt-{i}", "prompt_tuning"
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(folder / name)
        if method == "lora":  # LoRA layers were injected into `model` itself; take them out again
            peft_model.unload()
        adapters[name] = method
    return adapters


def session_prompts(tokenizer, count: int) -> list[list[int]]:
    """Real reply prompts (system, knowledge, conversation) from the test split, all languages."""
    from prompts.formats import format_for
    from tuning.data import reply_examples

    prompt_format = format_for(tokenizer)
    examples = [e for e in reply_examples() if e.split == "test"]
    step = max(1, len(examples) // count)
    return [tokenizer(prompt_format.apply(e.prompt))["input_ids"] for e in examples[::step][:count]]


def latencies(times: list[list[float]], submitted: list[float]) -> dict:
    """Time to first token (s) and inter-token latency (ms), p50 and p95, from each row's token times."""
    ttft = [t[0] - s for t, s in zip(times, submitted) if t]
    itl = [b - a for t in times for a, b in zip(t, t[1:])]
    return {"ttft_p50_s": percentile(ttft, 0.5), "ttft_p95_s": percentile(ttft, 0.95),
            "itl_p50_ms": 1000 * percentile(itl, 0.5), "itl_p95_ms": 1000 * percentile(itl, 0.95)}


def methods(model, folder: Path, adapters: dict[str, str], prompts, new_tokens: int, pad_id: int,
            serial_max_sessions: int) -> dict:
    """The four ways to serve `prompts`, by name, each a call returning (started, ended, token
    times, submitted); the serial baseline only up to `serial_max_sessions` (it grows linearly)."""
    runs = {
        "engine, mixed adapters": lambda: run_engine(model, folder, adapters, prompts, new_tokens, True),
        "engine, no adapters": lambda: run_engine(model, folder, adapters, prompts, new_tokens, False),
        "serial set_adapter + generate": lambda: run_serial(model, folder, adapters, prompts, new_tokens),
        "PEFT adapter_names (LoRA only)": lambda: run_adapter_names(model, folder, adapters, prompts, new_tokens, pad_id),
    }
    if len(prompts) > serial_max_sessions:
        del runs["serial set_adapter + generate"]
    return runs


def summarise(name: str, sessions: int, adapters: int, started: float, ended: float, times: list[list[float]],
              submitted: list[float], peak_mib: float, flops: dict, peak_gflops: float, prompt_tokens: int) -> dict:
    tokens = sum(len(t) for t in times)
    seconds = ended - started
    rate = tokens / seconds
    # Prefill computes logits for the last prompt position only; each new token costs a full pass.
    work = (prompt_tokens * flops["prompt_token"] + tokens * flops["new_token"]) / seconds / 1e9
    return {
        "method": name, "sessions": sessions, "adapters": adapters, "new_tokens": tokens, "prompt_tokens": prompt_tokens,
        "seconds": seconds, "tokens_per_s": rate, **latencies(times, submitted), "peak_rss_mib": peak_mib,
        "gflops": rate * flops["new_token"] / 1e9, "roofline_share": rate * flops["new_token"] / 1e9 / peak_gflops,
        "work_gflops": work, "work_roofline_share": work / peak_gflops,
    }


def run_engine(model, folder, adapters: dict[str, str], prompts, new_tokens: int, use_adapters: bool):
    engine = BatchEngine(model, max_batch=len(prompts), max_resident=max(1, len(adapters)))
    for name, method in adapters.items():
        engine.register(name, method, folder / name)
    names = list(adapters) if use_adapters else [None]
    started = time.perf_counter()
    requests = [engine.submit(ids, names[i % len(names)], Sampling(max_new_tokens=new_tokens)) for i, ids in enumerate(prompts)]
    engine.start()
    for request in requests:
        request.result()
    ended = time.perf_counter()
    engine.stop()
    if engine.lora is not None:
        engine.lora.unload()
    return started, ended, [r.token_times for r in requests], [r.submitted for r in requests]


def run_serial(model, folder, adapters, prompts, new_tokens: int):
    from peft import PeftModel

    from babelbot import soft_prompts

    loras = [n for n, m in adapters.items() if m == "lora"]
    lora_model = None
    for name in loras:
        if lora_model is None:
            lora_model = PeftModel.from_pretrained(model, str(folder / name), adapter_name=name, **SAME_PRECISION).eval()
        else:
            lora_model.load_adapter(str(folder / name), adapter_name=name, **SAME_PRECISION)
    prompt_models = {n: PeftModel.from_pretrained(model, str(folder / n)).eval() for n, m in adapters.items() if m != "lora"}
    names = list(adapters)
    times, started = [], time.perf_counter()
    for i, ids in enumerate(prompts):
        name = names[i % len(names)]
        streamer = TokenTimes(1)
        with torch.inference_mode():
            if adapters[name] == "lora":
                lora_model.set_adapter(name)
                runner, context = lora_model, contextlib.nullcontext()
            else:
                runner = prompt_models[name]
                context = lora_model.disable_adapter() if lora_model else contextlib.nullcontext()
            with context:
                soft_prompts.generate(runner, torch.tensor([ids], device=model.device), max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, do_sample=False, streamer=streamer, pad_token_id=0)
        times.append(streamer.times[0])
    ended = time.perf_counter()
    if lora_model is not None:
        lora_model.unload()
    return started, ended, times, [started] * len(prompts)


def run_adapter_names(model, folder, adapters, prompts, new_tokens: int, pad_id: int):
    from peft import PeftModel

    loras = [n for n, m in adapters.items() if m == "lora"]
    lora_model = PeftModel.from_pretrained(model, str(folder / loras[0]), adapter_name=loras[0], **SAME_PRECISION).eval()
    for name in loras[1:]:
        lora_model.load_adapter(str(folder / name), adapter_name=name, **SAME_PRECISION)
    width = max(len(ids) for ids in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=model.device)
    streamer = TokenTimes(len(prompts))
    started = time.perf_counter()
    with torch.inference_mode():
        lora_model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            adapter_names=[loras[i % len(loras)] for i in range(len(prompts))], do_sample=False,
                            streamer=streamer, pad_token_id=pad_id)
    ended = time.perf_counter()
    lora_model.unload()
    return started, ended, streamer.times, [started] * len(prompts)


def peak_matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def model_flops_per_token(model) -> dict:
    """2 × the parameters a token multiplies through (the embedding lookup is free): for a new
    token including the output projection to the vocabulary, for a prompt token without it."""
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    body = total - embedding - (0 if tied else model.get_output_embeddings().weight.numel())
    return {"new_token": 2 * (body + model.get_output_embeddings().weight.numel()), "prompt_token": 2 * body}


def format_table(columns: list[tuple[str, str]], rows: list[dict]) -> list[str]:
    """Markdown table lines; each column is (header, format template over a row's keys). A
    template with a format spec (`{x:.1f}`) is a number and aligns right."""
    lines = ["| " + " | ".join(header for header, _ in columns) + " |",
             "|" + "|".join("---:" if ":" in template else "---" for _, template in columns) + "|"]
    lines += ["| " + " | ".join(template.format(**r) for _, template in columns) + " |" for r in rows]
    return lines


BENCH_COLUMNS = [
    ("precision", "{dtype}"), ("method", "{method}"), ("sessions", "{sessions:d}"), ("adapters", "{adapters:d}"),
    ("tokens/s", "{tokens_per_s:.1f}"), ("TTFT p50 s", "{ttft_p50_s:.2f}"), ("TTFT p95 s", "{ttft_p95_s:.2f}"),
    ("ITL p50 ms", "{itl_p50_ms:.0f}"), ("ITL p95 ms", "{itl_p95_ms:.0f}"), ("peak RSS MiB", "{peak_rss_mib:.0f}"),
    ("GFLOP/s (new tokens)", "{gflops:.1f}"), ("of peak", "{roofline_share:.0%}"),
    ("GFLOP/s (with prefill)", "{work_gflops:.1f}"), ("of peak", "{work_roofline_share:.0%}"),
]


def markdown_table(rows: list[dict], peaks: dict[str, float]) -> str:
    lines = [f"Peak {dtype} matmul on this machine: {peak:.1f} GFLOP/s." for dtype, peak in peaks.items()]
    return "\n".join(lines + [""] + format_table(BENCH_COLUMNS, rows)) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for (dtype, method, adapters) in sorted({(r["dtype"], r["method"], r["adapters"]) for r in rows}):
        key = (dtype, method, adapters)
        points = sorted((r["sessions"], r["tokens_per_s"]) for r in rows if (r["dtype"], r["method"], r["adapters"]) == key)
        axis.plot(*zip(*points), marker="o", label=f"{dtype} {method}, {adapters} adapters")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent sessions")
    axis.set_ylabel("new tokens/s (all sessions)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args) -> int:
    models = {}
    for dtype in args.dtypes:
        models[dtype], tokenizer = load_model(args.model, device="cpu", dtype=dtype)
        models[dtype].eval()
    peaks = {dtype: peak_matmul_gflops(getattr(torch, dtype)) for dtype in args.dtypes}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for adapter_count in args.adapters:
            adapters = make_adapters(models[args.dtypes[0]], folder / f"k{adapter_count}", adapter_count)
            for dtype, model in models.items():
                flops = model_flops_per_token(model)
                rows += bench_one_precision(model, dtype, folder / f"k{adapter_count}", adapters, tokenizer, args, flops,
                                            peaks[dtype])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": args.model, "new_tokens": args.new_tokens, "peak_matmul_gflops": peaks,
               "model_flops_per_token": model_flops_per_token(next(iter(models.values()))),
               "torch_threads": torch.get_num_threads(), "rows": rows}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(rows, peaks)
    (out / "table.md").write_text(table, encoding="utf-8")
    plot(rows, out / "throughput.png")
    print(table)
    for line in ratios(rows, args.sessions, args.adapters, args.dtypes):
        print(line)
    print(f"wrote {out / 'metrics.json'}, {out / 'table.md'} and {out / 'throughput.png'}")
    return 0


def bench_one_precision(model, dtype: str, folder: Path, adapters: dict[str, str], tokenizer, args, flops: dict,
                        peak: float) -> list[dict]:
    rows = []
    run_engine(model, folder, adapters, session_prompts(tokenizer, 2), 2, True)  # warm-up
    for sessions in args.sessions:
        prompts = session_prompts(tokenizer, sessions)
        prompt_tokens = sum(len(ids) for ids in prompts)
        runs = methods(model, folder, adapters, prompts, args.new_tokens, tokenizer.pad_token_id, args.serial_max_sessions)
        for name, run in runs.items():
            log.info("bench serve: %s, %s, %d sessions, %d adapters", name, dtype, sessions, len(adapters))
            with PeakMemory() as memory:
                started, ended, times, submitted = run()
            row = summarise(name, sessions, len(adapters), started, ended, times, submitted, memory.peak, flops, peak,
                            prompt_tokens)
            rows.append({"dtype": dtype, **row})
            print(markdown_table(rows[-1:], {}).splitlines()[-1], flush=True)
    return rows


def ratios(rows: list[dict], sessions_list, adapter_counts, dtypes) -> list[str]:
    """The targets' ratios: (a)/(d) and (a)/(b) per precision, and the fastest (a) against fp32 (d)."""
    rate = {(r["dtype"], r["method"], r["sessions"], r["adapters"]): r["tokens_per_s"] for r in rows}
    lines = []
    for sessions in sessions_list:
        for count in adapter_counts:
            for dtype in dtypes:
                ours = rate.get((dtype, "engine, mixed adapters", sessions, count))
                base = rate.get((dtype, "engine, no adapters", sessions, count))
                peft = rate.get((dtype, "PEFT adapter_names (LoRA only)", sessions, count))
                peft32 = rate.get(("float32", "PEFT adapter_names (LoRA only)", sessions, count))
                if ours and base and peft:
                    line = (f"{sessions} sessions, {count} adapters, {dtype}: (a)/(d) = {ours / peft:.2f}, "
                            f"(a)/(b) = {ours / base:.2f}")
                    if peft32 and dtype != "float32":
                        line += f", (a)/(d in float32) = {ours / peft32:.2f}"
                    lines.append(line)
    return lines
