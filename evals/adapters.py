"""`babelbot eval adapters`: the base model (prompted) against every adapter, per language and
task, on the test split (the dev split when choosing recipes): loss and perplexity on the
reference replies, chrF of greedy replies against them, and the share of replies in the right
language. Writes metrics.json, a markdown table and a heatmap PNG.

Losses use plain PEFT (`PeftModel.from_pretrained`). Replies come from the bot's batch
engine, every (system, example) in one continuous batch, so the rows share every forward
pass instead of one `generate` at a time; the tokens are the same (the Spanish figures of
both ways are identical; tests/test_batch_engine.py checks it token by token). With
`engine=false` they come from plain PEFT `generate` one at a time (`greedy_reply`, for prompt
tuning the base model's `generate` on the soft prompt, see `babelbot.soft_prompts`): the
reference the engine is checked against.
"""

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapters.registry import CARD_FILE, AdapterCard, load_registry
from babelbot import soft_prompts
from babelbot.labels import TASKS
from babelbot.language_id import LanguageDetector
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.models import DEFAULT_MODEL, load_model
from babelbot.paths import ADAPTERS_DIR, DATA_DIR
from prompts.formats import Prompt, format_for
from tuning.data import TASK_EXAMPLES, Example
from tuning.train import mean_loss, tokenize

BASE_LABEL = "base"  # the base model's name in the results (PEFT's own is bot.batch_engine.BASE)


@dataclass
class EvalConfig:
    """What to evaluate."""

    model: str = DEFAULT_MODEL
    adapters_dir: str = str(ADAPTERS_DIR)
    data_dir: str = str(DATA_DIR)
    tasks: list[str] | None = None  # default: every task that has an adapter
    languages: list[str] | None = None  # default: all training languages
    split: str = "test"  # dev: for choosing recipes, so the test split stays unseen until the figures we report
    # Examples per (task, language), the first of the split; 0: the whole split. Generation
    # is the slow part on CPU; the figures we report use the whole split (see README).
    limit: int = 20
    max_new_tokens: int = 64
    max_length: int = 1024
    out: str = "results/eval"
    dtype: str = "auto"  # auto: fp32 on CPU; bfloat16 measures what serving in bf16 costs
    engine: bool = True  # replies through the batch engine (fast); false: plain PEFT generate, one at a time

    def __post_init__(self):
        self.languages = self.languages or list(TRAINING_LANGUAGES)
        unknown = [language for language in self.languages if language not in TRAINING_LANGUAGES]
        if unknown:
            raise ValueError(f"languages must be among {TRAINING_LANGUAGES} (written like languages=es,de), got {unknown}")
        if self.tasks and any(task not in TASKS for task in self.tasks):
            raise ValueError(f"tasks must be among {TASKS}, got {self.tasks}")
        if self.limit < 0:
            raise ValueError("limit must be >= 1, or 0 for the whole split")
        if self.split not in ("dev", "test"):
            raise ValueError(f"split must be dev or test, got {self.split!r}")


def systems_for(registry: dict[str, AdapterCard], task: str, language: str) -> list[str]:
    """The base model, then every adapter for this task that covers the language."""
    names = sorted(name for name, card in registry.items() if card.task == task and language in card.languages)
    return [BASE_LABEL, *names]


def reference_loss(model, tokenizer, prompt_format, examples: list[Example], max_length: int) -> float:
    """Mean cross-entropy per reference token (padding is masked out)."""
    items = [tokenize(example, tokenizer, prompt_format, max_length) for example in examples]
    return mean_loss(model, items, tokenizer.pad_token_id, batch_tokens=max_length, device=model.device)


@torch.no_grad()
def greedy_reply(model, tokenizer, prompt_format, prompt: Prompt, max_new_tokens: int) -> str:
    """Plain `generate`, cut at the format's first stop string: the reference the engine must match."""
    inputs = tokenizer(prompt_format.apply(prompt), return_tensors="pt").to(model.device)
    stops = list(prompt_format.stop_strings(prompt))
    new_tokens = soft_prompts.generate(
        model, **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        **({"stop_strings": stops, "tokenizer": tokenizer} if stops else {}),
    )
    return cut_at_stop(tokenizer.decode(new_tokens[0], skip_special_tokens=True), stops)


# Settings that change the figures: earlier results are reused only when these match.
RESULT_SETTINGS = ("model", "data_dir", "split", "limit", "max_new_tokens", "max_length", "dtype")


def weights_digests(registry: dict[str, AdapterCard], model: str) -> dict[str, str]:
    """Which weights a result measures, per system: the adapter file's SHA-256 (the base model: its spec)."""
    digests = {name: hashlib.sha256((card.path / "adapter_model.safetensors").read_bytes()).hexdigest()
               for name, card in registry.items()}
    return {BASE_LABEL: model, **digests}


def evaluate(config: EvalConfig, previous: list[dict] = ()) -> dict:
    """Every (task, language, system); a result in `previous` for the same weights is kept
    rather than measured again, so an evaluation can grow language by language as adapters
    are trained, or go on after an interruption."""
    from peft import PeftModel

    registry = load_registry(Path(config.adapters_dir), base_model=config.model)
    tasks = config.tasks or sorted({card.task for card in registry.values()} or {"reply"})
    detector = LanguageDetector()
    base, tokenizer = load_model(config.model, dtype=config.dtype)
    prompt_format = format_for(tokenizer)
    digests = weights_digests(registry, config.model)
    kept = {(r["task"], r["language"], r["system"]): r for r in previous
            if r["system"] == BASE_LABEL or (r["system"] in registry and r.get("weights") == digests[r["system"]])}
    results, jobs = [], []  # jobs: (result, examples) whose replies are still to generate
    for task, language in tqdm([(t, lang) for t in tasks for lang in config.languages], desc="losses", unit="language"):
        examples = [e for e in TASK_EXAMPLES[task](Path(config.data_dir), (language,)) if e.split == config.split]
        examples = examples[: config.limit or None]
        if not examples:
            continue
        for system in systems_for(registry, task, language):
            if (task, language, system) in kept:
                continue
            # A fresh wrapper per adapter: PEFT injects LoRA layers in place, so unload after.
            model = base if system == BASE_LABEL else PeftModel.from_pretrained(base, registry[system].path).eval()
            started = time.perf_counter()
            loss = reference_loss(model, tokenizer, prompt_format, examples, config.max_length)
            result = {"task": task, "language": language, "system": system,
                      "method": BASE_LABEL if system == BASE_LABEL else registry[system].method,
                      "weights": digests[system],
                      "examples": len(examples), "loss": loss, "perplexity": math.exp(loss),
                      "loss_seconds": time.perf_counter() - started}
            if not config.engine:
                result["replies"] = [greedy_reply(model, tokenizer, prompt_format, e.prompt, config.max_new_tokens)
                                     for e in examples]
            if system != BASE_LABEL:
                base = model.unload() if registry[system].method == "lora" else model.get_base_model()
            results.append(result)
            jobs.append((result, examples))
    if config.engine:
        requests = [(result["system"], e.prompt) for result, examples in jobs for e in examples]
        replies = iter(batched_greedy_replies(base, tokenizer, prompt_format, registry, requests, config.max_new_tokens))
        for result, examples in jobs:
            result["replies"] = [next(replies) for _ in examples]
    for result, examples in jobs:
        result.update(reply_scores(result.pop("replies"), examples, detector))
    merged = kept | {(r["task"], r["language"], r["system"]): r for r in results}
    order = sorted(merged, key=lambda key: (key[0], key[1], key[2] != BASE_LABEL, key[2]))
    return {"config": {k: v for k, v in vars(config).items()}, "results": [merged[key] for key in order]}


def batched_greedy_replies(base, tokenizer, prompt_format, registry: dict[str, AdapterCard],
                           requests: list[tuple[str, Prompt]], max_new_tokens: int) -> list[str]:
    """Greedy replies for (system, prompt) pairs, all in one continuous batch of the engine;
    a row leaves as soon as its text reaches a stop string, as `generate(stop_strings=)` does."""
    from bot.batch_engine import BatchEngine, Sampling

    systems = sorted({system for system, _ in requests} - {BASE_LABEL})
    engine = BatchEngine(base, max_batch=32, max_resident=max(1, len(systems)))
    for system in systems:
        engine.register(system, registry[system].method, registry[system].path)
    inputs = [tokenizer(prompt_format.apply(prompt))["input_ids"] for _, prompt in requests]
    # Submitted shortest first, so the rows prefilled together have similar lengths (little padding).
    order = sorted(range(len(requests)), key=lambda i: len(inputs[i]))
    submitted = {}
    for i in order:
        system, prompt = requests[i]
        request = engine.submit(inputs[i], None if system == BASE_LABEL else system, Sampling(max_new_tokens=max_new_tokens))
        submitted[i] = (request, prompt_format.stop_strings(prompt))
    running = [submitted[i] for i in range(len(requests))]
    with tqdm(total=len(running), desc="replies", unit="reply") as bar:
        while engine.busy:
            engine.step()
            for request, stops in running:
                if request.finish_reason is None and not request.cancelled and stops:
                    text = tokenizer.decode(request.generated, skip_special_tokens=True)
                    if any(stop in text for stop in stops):
                        request.cancel()
            bar.update(sum(r.finish_reason is not None for r, _ in running) - bar.n)
    for system in systems:
        engine.unload(system)  # the LoRA layers leave the base model
    return [cut_at_stop(tokenizer.decode(r.generated, skip_special_tokens=True), stops) for r, stops in running]


def cut_at_stop(text: str, stops) -> str:
    cut = min((i for stop in stops if (i := text.find(stop)) >= 0), default=len(text))
    return text[:cut].strip()


def reply_scores(replies: list[str], examples: list[Example], detector: LanguageDetector) -> dict:
    """chrF against the references and the right-language share; every (reference, reply)
    pair is kept, for the significance test of `chrf_p_value`."""
    import sacrebleu

    targets = [e.target for e in examples]
    right = [detector.detect(r) == e.target_language for r, e in zip(replies, examples)]
    return {
        "chrf": sacrebleu.corpus_chrf(replies, [targets]).score,
        "right_language": sum(right) / len(right),
        "samples": [{"reference": t, "reply": r} for t, r in zip(targets, replies)],
    }


def score(model, tokenizer, prompt_format, examples: list[Example], detector: LanguageDetector,
          max_new_tokens: int, max_length: int) -> dict:
    """Loss on the references, then chrF and the right-language share of greedy replies, one
    `generate` at a time (the few-shot study scores one small model after another)."""
    started = time.perf_counter()
    loss = reference_loss(model, tokenizer, prompt_format, examples, max_length)
    replies = [greedy_reply(model, tokenizer, prompt_format, e.prompt, max_new_tokens) for e in examples]
    return {"examples": len(examples), "loss": loss, "perplexity": math.exp(loss),
            **reply_scores(replies, examples, detector), "seconds": time.perf_counter() - started}


def markdown_table(report: dict) -> str:
    lines = ["| task | language | system | method | examples | loss | ppl | chrF | right language |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['task']} | {r['language']} | {r['system']} | {r['method']} | {r['examples']} | "
                     f"{r['loss']:.3f} | {r['perplexity']:.1f} | {r['chrf']:.1f} | {r['right_language']:.0%} |")
    return "\n".join(lines) + "\n"


def chrf_p_value(result: dict, base: dict) -> float | None:
    """Two-sided p-value of the chrF difference between `result` and `base` on the same
    examples (sacrebleu's paired bootstrap, 1000 resamples, fixed seed); None when either
    kept only a few of its replies (results from before every reply was saved)."""
    from sacrebleu.metrics import CHRF
    from sacrebleu.significance import PairedTest

    references = [s["reference"] for s in base["samples"]]
    if len(references) != base["examples"] or [s["reference"] for s in result["samples"]] != references:
        return None
    systems = [(name, [s["reply"] for s in r["samples"]]) for name, r in ((BASE_LABEL, base), ("adapter", result))]
    _, scores = PairedTest(systems, {"chrF": CHRF()}, [references], test_type="bs", n_samples=1000)()
    (metric,) = (column for column in scores if column != "System")  # named by sacrebleu: "chrF2"
    return scores[metric][1].p_value


def methods_table(report: dict, adapters_dir: Path, task: str = "reply") -> str:
    """Per language: the base model, the LoRA and the prompt-tuning adapter side by side, with
    each adapter's trainable parameters and training speed from its card. An adapter's chrF
    carries the p-value of its difference to the base model's: on 20–50 replies a few
    points of chrF can be chance."""
    rows = {}
    for r in report["results"]:
        if r["task"] == task:
            rows.setdefault(r["language"], {})[r["method"]] = r
    if not rows:
        return ""
    lines = [f"| {task} | base loss | base chrF | LoRA loss | LoRA chrF (p) | LoRA params | LoRA train tok/s "
             "| PT loss | PT chrF (p) | PT params | PT train tok/s |", "|---|" + "---:|" * 10]

    def cells(result: dict | None, with_card: bool, base: dict | None = None) -> list[str]:
        if result is None:
            return ["–"] * (4 if with_card else 2)
        figures = [f"{result['loss']:.3f}", f"{result['chrf']:.1f}"]
        if base is not None and (p := chrf_p_value(result, base)) is not None:
            figures[1] += f" ({p:.2f})"
        if with_card:
            training = json.loads((adapters_dir / result["system"] / CARD_FILE).read_text(encoding="utf-8"))["training"]
            # Where it trained: a GPU's figure and a CPU's differ by ~30×.
            figures += [f"{training['trainable_parameters']:,}", f"{training['tokens_per_s']:.0f} ({training['device']})"]
        return figures

    for language in sorted(rows):
        by_method = rows[language]
        base = by_method.get(BASE_LABEL)
        row = [*cells(base, False), *cells(by_method.get("lora"), True, base),
               *cells(by_method.get("prompt_tuning"), True, base)]
        lines.append(f"| {language} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict, path: Path, metric: str = "chrf") -> None:
    """Languages × methods (base, LoRA, prompt tuning), one panel per task; the best adapter
    of a method per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in report["results"]})
    methods = [BASE_LABEL, "lora", "prompt_tuning"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(4 + 2.5 * len(tasks), 5), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        languages = sorted({r["language"] for r in report["results"] if r["task"] == task})
        grid = [[float("nan")] * len(methods) for _ in languages]
        for r in report["results"]:
            if r["task"] == task:
                row, col = languages.index(r["language"]), methods.index(r["method"])
                grid[row][col] = r[metric] if math.isnan(grid[row][col]) else max(grid[row][col], r[metric])
        image = axis.imshow(grid, cmap="viridis", aspect="auto")
        axis.set_xticks(range(len(methods)), methods)
        axis.set_yticks(range(len(languages)), languages)
        for row in range(len(languages)):
            for col in range(len(methods)):
                if not math.isnan(grid[row][col]):
                    axis.text(col, row, f"{grid[row][col]:.1f}", ha="center", va="center", color="white")
        axis.set_title(f"{task}: {metric}")
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(args) -> int:
    from babelbot.config import ConfigError, load_config

    config = load_config(EvalConfig, args.config, args.overrides)
    out = Path(config.out)
    previous = []
    if (out / "metrics.json").exists():
        earlier = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        if all(earlier["config"].get(key) == getattr(config, key) for key in RESULT_SETTINGS):
            previous = earlier["results"]
        else:
            print(f"{out / 'metrics.json'} was measured with other settings ({', '.join(RESULT_SETTINGS)}); measuring afresh")
    report = evaluate(config, previous)
    if not report["results"]:
        raise ConfigError(f"nothing to evaluate: no {config.split} examples for tasks {config.tasks or 'with an adapter'} "
                          f"in languages {config.languages} under {config.data_dir}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = markdown_table(report) + "\n" + methods_table(report, Path(config.adapters_dir))
    (out / "table.md").write_text(table, encoding="utf-8")
    plot_heatmap(report, out / "heatmap.png")
    print(table)
    print(f"wrote {out / 'metrics.json'}, {out / 'table.md'} and {out / 'heatmap.png'}")
    return 0
