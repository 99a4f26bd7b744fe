"""`babelbot eval latency`: model load time, and time to first piece and to the full reply
for a few first messages in different languages, through the dialogue manager."""

import json
import statistics
import tempfile
import time
from pathlib import Path

from bot.build import build_manager
from bot.config import BotConfig
from bot.store import Store

MESSAGES = {
    "en": "Hi, how much does express shipping cost?",
    "es": "Hola, ¿cuánto tiempo tengo para devolver unas zapatillas?",
    "zh": "你好，我的付款被拒绝了，你们支持哪些付款方式？",
    "ar": "مرحبا، كم يستغرق الشحن إلى أوروبا؟",
    "hi": "नमस्ते, मैं अपना पासवर्ड भूल गया हूँ, क्या करूँ?",
}


def main(args) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        manager = build_manager(BotConfig(), store=Store(Path(scratch) / "latency.sqlite3"))
        load_s = time.perf_counter() - start
        rows = []
        for language, text in MESSAGES.items():
            start = time.perf_counter()
            reply = manager.handle(f"latency-{language}", text)
            first = None
            for _ in reply:
                first = first or time.perf_counter() - start
            total = time.perf_counter() - start
            tokens = manager.engine.count_tokens(reply.text)
            rows.append({"language": language, "detected": reply.route.language,
                         "reply_language": manager.router.languages.detect(reply.text), "first_piece_s": first,
                         "reply_s": total, "reply_tokens": tokens, "reply": reply.text})
    metrics = {
        "load_s": load_s,
        "first_piece_s_median": statistics.median(r["first_piece_s"] for r in rows),
        "reply_s_median": statistics.median(r["reply_s"] for r in rows),
        "tokens_per_s_median": statistics.median(r["reply_tokens"] / r["reply_s"] for r in rows),
        "rows": rows,
    }
    lines = ["| message | detected | reply in | first piece (s) | full reply (s) | tokens |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['language']} | {r['detected']} | {r['reply_language']} | {r['first_piece_s']:.2f} | "
              f"{r['reply_s']:.2f} | {r['reply_tokens']} |" for r in rows]
    lines.append(f"\nModel and router load: {load_s:.1f} s. Median first piece {metrics['first_piece_s_median']:.2f} s, "
                 f"full reply {metrics['reply_s_median']:.2f} s, {metrics['tokens_per_s_median']:.1f} tokens/s.")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
