"""`babelbot eval router`: language and intent accuracy per language, and routing latency.

Each message is routed as the first message of a conversation (no earlier language to fall
back on), which is the hardest case for short messages.
"""

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from babelbot.config import load_config
from babelbot.language_id import clear_caches
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR
from bot.build import build_router
from bot.config import BotConfig

DEFAULT_DATA = DATA_DIR / "router_eval" / "messages.jsonl"


def evaluate(router, rows: list[dict], rounds: int = 3) -> dict:
    """Accuracy per language from routing each row once; latency from that, and with and
    without the encoder's first pass over `rounds` alternating rounds."""
    per_language = defaultdict(lambda: {"n": 0, "language_ok": 0, "intent_ok": 0})
    latencies_ms = []
    errors = []
    clear_caches()
    for row in rows:
        start = time.perf_counter()
        route = router.route(row["text"])
        latencies_ms.append((time.perf_counter() - start) * 1000)
        stats = per_language[row["language"]]
        stats["n"] += 1
        stats["language_ok"] += route.language == row["language"]
        stats["intent_ok"] += route.intent == row["intent"]
        if route.language != row["language"] or route.intent != row["intent"]:
            errors.append({**row, "got_language": route.language, "got_intent": route.intent})

    def pooled(languages):
        rows_ = [per_language[lang] for lang in languages if lang in per_language]
        n = sum(r["n"] for r in rows_)
        return {
            "n": n,
            "language_accuracy": sum(r["language_ok"] for r in rows_) / n if n else None,
            "intent_accuracy": sum(r["intent_ok"] for r in rows_) / n if n else None,
        }

    batch_ms = batch_latency(router, [row["text"] for row in rows])
    others = sorted(set(per_language) - set(TRAINING_LANGUAGES))
    latencies_ms.sort()
    return {
        "per_language": {
            lang: {"n": s["n"], "language_accuracy": s["language_ok"] / s["n"], "intent_accuracy": s["intent_ok"] / s["n"]}
            for lang, s in per_language.items()
        },
        "training_languages": pooled(TRAINING_LANGUAGES),
        "other_languages": pooled(others),
        "latency_ms": {
            "median": statistics.median(latencies_ms),
            "p95": latencies_ms[int(0.95 * (len(latencies_ms) - 1))],
            "messages": len(latencies_ms),
            "batch_per_message": batch_ms,
        },
        "errors": errors,
        "first_pass": first_pass_comparison(router, [row["text"] for row in rows], rounds),
    }


def batch_latency(router, texts: list[str]) -> float:
    """ms a message, routing `texts` in one batch, none seen before."""
    clear_caches()
    start = time.perf_counter()
    router.route_many(texts)
    return (time.perf_counter() - start) * 1000 / max(len(texts), 1)


def single_latencies(router, texts: list[str]) -> list[float]:
    clear_caches()
    latencies = []
    for text in texts:
        start = time.perf_counter()
        router.route(text)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def first_pass_comparison(router, texts: list[str], rounds: int = 3) -> dict | None:
    """Route latency with the encoder's first pass and without it, side by side in alternating
    rounds (this machine's speed drifts); the median of the rounds. None without a first pass."""
    encoder = getattr(router.intents, "encoder", None)
    if encoder is None or encoder.first_pass is None:
        return None
    first_pass, runs = encoder.first_pass, defaultdict(list)
    try:
        for _ in range(rounds):
            for name, setting in (("with first pass", first_pass), ("without", None)):
                encoder.first_pass = setting
                runs[name].append({"median": statistics.median(single_latencies(router, texts)),
                                   "batch_per_message": batch_latency(router, texts)})
    finally:
        encoder.first_pass = first_pass
    return {"rounds": rounds} | {
        name: {key: statistics.median(run[key] for run in by_round) for key in ("median", "batch_per_message")}
        for name, by_round in runs.items()}


def markdown_table(metrics: dict) -> str:
    lines = ["| language | messages | language acc. | intent acc. |", "|---|---:|---:|---:|"]
    for lang, s in metrics["per_language"].items():
        lines.append(f"| {lang} | {s['n']} | {s['language_accuracy']:.1%} | {s['intent_accuracy']:.1%} |")
    for name in ("training_languages", "other_languages"):
        s = metrics[name]
        if s["n"]:
            label = name.replace("_", " ")
            lines.append(f"| **{label}** | {s['n']} | {s['language_accuracy']:.1%} | {s['intent_accuracy']:.1%} |")
    latency = metrics["latency_ms"]
    lines.append(f"\nRoute latency per message: median {latency['median']:.2f} ms, p95 {latency['p95']:.2f} ms "
                 f"({latency['messages']} messages one at a time); {latency['batch_per_message']:.2f} ms a message in one batch.")
    if comparison := metrics.get("first_pass"):
        with_, without = comparison["with first pass"], comparison["without"]
        lines.append(f"\nSide by side, median of {comparison['rounds']} alternating rounds: "
                     f"{with_['median']:.2f} ms with the encoder's first pass against {without['median']:.2f} ms without "
                     f"({without['median'] / with_['median']:.1f}× faster); "
                     f"in one batch {with_['batch_per_message']:.2f} against {without['batch_per_message']:.2f} ms a message.")
    return "\n".join(lines) + "\n"


def main(args) -> int:
    path = Path(args.data) if args.data else DEFAULT_DATA
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    metrics = evaluate(build_router(load_config(BotConfig, None, args.overrides)), rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = markdown_table(metrics)
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {out / 'metrics.json'} and {out / 'table.md'}")
    return 0
