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
from babelbot.languages import TRAINING_LANGUAGES
from babelbot.paths import DATA_DIR
from bot.app import BotConfig, build_router

DEFAULT_DATA = DATA_DIR / "router_eval" / "messages.jsonl"


def evaluate(router, rows: list[dict]) -> dict:
    per_language = defaultdict(lambda: {"n": 0, "language_ok": 0, "intent_ok": 0})
    latencies_ms = []
    errors = []
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

    start = time.perf_counter()
    router.route_many([row["text"] for row in rows])
    batch_ms = (time.perf_counter() - start) * 1000 / max(len(rows), 1)
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
    }


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
