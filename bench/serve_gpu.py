"""`babelbot bench serve-gpu`: the serving benchmark on a CUDA GPU, in the real shapes of two
larger models (`bench/gpu_models/*.json`: Gemma 3 1B, Qwen2.5 1.5B) with random bf16 weights,
against the memory-bandwidth roofline.

The same four methods as `babelbot bench serve` ((a) engine, mixed adapters; (b) engine, no
adapters; (c) serial PEFT; (d) PEFT `adapter_names=`), with random prompts of realistic
length. A decode step must read every weight once and every row's cached keys and values, so

    roofline tokens/s = sessions × bandwidth ÷ (weight bytes + KV bytes per step)

and each method's decode rate (new tokens after each row's first, over the time after the
first token) is reported as a share of it. Run it on a machine with a CUDA GPU:

    babelbot bench serve-gpu                     # H200: 4.8 TB/s; --bandwidth-tbs for others
"""

import json
import random
import tempfile
import time
from pathlib import Path

import torch

from babelbot.config import ConfigError
from bench.serve import PeakMemory, format_table, latencies, make_adapters, methods, run_engine

GPU_MODELS = Path(__file__).parent / "gpu_models"
PROMPT_TOKENS = (300, 440)  # the default model's real reply prompts are ~370 tokens


def build_model(config_file: Path, device: str, dtype: torch.dtype = torch.bfloat16):
    """A randomly initialised model in the shapes of `config_file`: speed does not depend on the weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**json.loads(config_file.read_text(encoding="utf-8")))
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()


def random_prompts(vocab_size: int, count: int, lengths: tuple[int, int] = PROMPT_TOKENS, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab_size) for _ in range(rng.randint(*lengths))] for _ in range(count)]


def bytes_per_decode_step(model, sessions: int, context: int) -> dict:
    """Bytes one decode step reads: each weight once, plus every row's keys and values (a
    sliding-window layer keeps at most its window)."""
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    element = next(model.parameters()).element_size()
    positions = sum(min(context, config.sliding_window) if kind == "sliding_attention" else context for kind in layer_types)
    kv = sessions * positions * 2 * config.num_key_value_heads * head_dim * element
    return {"weights": weights, "kv": kv, "total": weights + kv}


def decode_rate(times: list[list[float]]) -> float:
    """New tokens after each row's first, per second from the first first token to the last token."""
    rows = [t for t in times if len(t) > 1]
    if not rows:
        return float("nan")
    start, end = min(t[0] for t in rows), max(t[-1] for t in rows)
    return sum(len(t) - 1 for t in rows) / (end - start) if end > start else float("nan")


def bench_model(config_file: Path, device: str, sessions_list, adapter_counts, new_tokens: int, bandwidth: float,
                serial_max_sessions: int = 16, lengths: tuple[int, int] = PROMPT_TOKENS, on_row=None) -> list[dict]:
    """Every (adapters, sessions, method) row; `on_row` sees each as soon as it is measured."""
    model = build_model(config_file, device)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in adapter_counts:
            folder = Path(scratch) / f"k{count}"
            adapters = make_adapters(model, folder, count)
            run_engine(model, folder, adapters, random_prompts(model.config.vocab_size, 2, lengths), 2, True)  # warm-up
            for sessions in sessions_list:
                prompts = random_prompts(model.config.vocab_size, sessions, lengths)
                context = sum(map(len, prompts)) // sessions + new_tokens // 2
                step_bytes = bytes_per_decode_step(model, sessions, context)
                roofline = sessions * bandwidth / step_bytes["total"]
                for method, run in methods(model, folder, adapters, prompts, new_tokens, 0, serial_max_sessions).items():
                    if device == "cuda":
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    with PeakMemory() as host:
                        started, ended, times, submitted = run()
                    decode = decode_rate(times)
                    rows.append({
                        "model": config_file.stem, "method": method, "sessions": sessions, "adapters": count,
                        "tokens_per_s": sum(map(len, times)) / (ended - started), "decode_tokens_per_s": decode,
                        "roofline_tokens_per_s": roofline, "roofline_share": decode / roofline,
                        **latencies(times, submitted),
                        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else host.peak / 1024,
                        "weight_bytes": step_bytes["weights"], "kv_bytes_per_step": step_bytes["kv"],
                    })
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    if on_row is not None:
                        on_row(rows[-1])
    return rows


GPU_COLUMNS = [
    ("model", "{model}"), ("method", "{method}"), ("sessions", "{sessions:d}"), ("adapters", "{adapters:d}"),
    ("tokens/s", "{tokens_per_s:.1f}"), ("decode tokens/s", "{decode_tokens_per_s:.1f}"),
    ("roofline tokens/s", "{roofline_tokens_per_s:.0f}"), ("of roofline", "{roofline_share:.0%}"),
    ("TTFT p50 s", "{ttft_p50_s:.3f}"), ("TTFT p95 s", "{ttft_p95_s:.3f}"), ("ITL p50 ms", "{itl_p50_ms:.1f}"),
    ("ITL p95 ms", "{itl_p95_ms:.1f}"), ("peak GiB", "{peak_memory_gib:.1f}"),
]


def table(rows: list[dict]) -> str:
    return "\n".join(format_table(GPU_COLUMNS, rows)) + "\n"


def main(args) -> int:
    if not torch.cuda.is_available():
        raise ConfigError("babelbot bench serve-gpu needs a CUDA GPU; none is visible here (torch.cuda.is_available() is "
                          "False). On CPU, `babelbot bench serve` measures the same methods on the default model.")
    config_files = [GPU_MODELS / f"{name}.json" for name in args.models]
    for config_file in config_files:
        if not config_file.exists():
            raise ConfigError(f"no model shapes {config_file}; choose from {sorted(p.stem for p in GPU_MODELS.glob('*.json'))}")
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []

    def save(complete: bool) -> None:  # after every row too, so a run stopped early keeps what it measured
        payload = {"gpu": torch.cuda.get_device_name(), "bandwidth_tbs": args.bandwidth_tbs, "new_tokens": args.new_tokens,
                   "wall_s": time.perf_counter() - started, "complete": complete, "rows": rows}
        (out / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        note = "" if complete else " Partial: the run stopped before the whole grid."
        (out / "table.md").write_text(f"GPU: {payload['gpu']}, bandwidth {args.bandwidth_tbs} TB/s, bf16, random weights."
                                      f"{note}\n\n" + table(rows), encoding="utf-8")

    def add(row: dict) -> None:
        rows.append(row)
        save(complete=False)

    for config_file in config_files:
        bench_model(config_file, "cuda", args.sessions, args.adapters, args.new_tokens, args.bandwidth_tbs * 1e12, on_row=add)
        torch.cuda.empty_cache()
    save(complete=True)
    print(table(rows))
    print(f"wrote {out / 'metrics.json'} and {out / 'table.md'}")
    return 0
