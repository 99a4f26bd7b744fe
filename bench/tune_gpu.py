"""`babelbot bench tune-gpu`: the GPU check for training. Trains a QLoRA (4-bit base) and a
bf16 LoRA `reply` adapter on the default model for the same number of steps and reports
tokens/s and peak GPU memory for each, side by side, as JSON and a table.

Run it on a machine with a CUDA GPU:  babelbot bench tune-gpu --steps 300
"""

import json
import tempfile
import time
from pathlib import Path

import torch

from babelbot.config import ConfigError, load_config
from tuning.train import TuneConfig, tune

VARIANTS = {"qlora-4bit": ["quantize=4bit", "gradient_checkpointing=true"], "lora-bf16": ["dtype=bfloat16"]}


def main(args) -> int:
    if not torch.cuda.is_available():
        raise ConfigError("babelbot bench tune-gpu needs a CUDA GPU; none is visible here (torch.cuda.is_available() is False)")
    rows, out = [], Path(args.out)
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in VARIANTS.items():
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            config = load_config(TuneConfig, None, [
                "task=reply", "languages=es,fr,de", f"max_steps={args.steps}", f"checkpoint_every={args.steps}",
                "batch_tokens=8192", f"name={name}", f"output_dir={Path(scratch) / name}",
                f"run_dir={Path(scratch) / 'runs' / name}", *overrides,
            ])
            metrics = tune(config).metrics
            rows.append({
                "variant": name, "steps": metrics["steps"], "tokens_per_s": metrics["tokens_per_s"],
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "final_loss": metrics["final_loss"],
                "dev_loss": metrics["dev_loss"], "wall_s": time.perf_counter() - started,
                "gpu": torch.cuda.get_device_name(),
            })
            table = write_results(rows, out)  # after each variant, so a run stopped early keeps the first
    print(table)
    return 0


def write_results(rows: list[dict], out: Path) -> str:
    table = "| variant | steps | tokens/s | peak memory (GiB) | final loss | dev loss |\n|---|---:|---:|---:|---:|---:|\n"
    table += "".join(f"| {r['variant']} | {r['steps']} | {r['tokens_per_s']:.0f} | {r['peak_memory_gib']:.2f} | "
                     f"{r['final_loss']:.3f} | {r['dev_loss']:.3f} |\n" for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "table.md").write_text(table)
    return table
