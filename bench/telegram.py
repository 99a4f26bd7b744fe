"""`babelbot bench telegram`: the real `babelbot telegram` process against the local Bot API
server, N chats writing at once; time to first visible text and messages/s, per model."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from babelbot.models import babelbot_home
from babelbot.testing import FakeBotApi, text_update

TOKEN = "123456:bench-token"
MESSAGES = [
    "Hello, where is my order NW-{n}?", "Hola, ¿dónde está mi pedido NW-{n}?", "Bonjour, où est ma commande NW-{n} ?",
    "Hallo, wo ist meine Bestellung NW-{n}?", "你好，我的订单NW-{n}到哪了？",
]


def bench_model(model: str, chats: int, max_new_tokens: int) -> dict:
    api = FakeBotApi(TOKEN).start()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "BABELBOT_HOME": str(babelbot_home())}
        log = open(Path(home) / "bot.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "babelbot.cli", "telegram", "--base-url", api.base_url, f"model={model}",
             f"generation.max_new_tokens={max_new_tokens}", "database=" + str(Path(home) / "bench.sqlite3"),
             f"telegram.rate_limit_messages={chats}"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            api.wait_for(lambda: api.calls_of("getUpdates") or process.poll() is not None, timeout=600)
            if process.poll() is not None:
                raise RuntimeError(f"the bot exited: {(Path(home) / 'bot.log').read_text()[-2000:]}")
            ids = [1000 + i for i in range(chats)]
            start = time.monotonic()
            for i, chat_id in enumerate(ids):
                api.push(text_update(chat_id, MESSAGES[i % len(MESSAGES)].format(n=20000 + i)))
            api.wait_for(lambda: all(api.texts(c) for c in ids), timeout=1800, quiet=3.0)
            first_seen = {}
            last_seen = {}
            for seen, method, params in api.calls:
                chat = int(params.get("chat_id", 0) or 0)
                if method in ("sendMessage", "editMessageText") and chat in ids:
                    first_seen.setdefault(chat, seen - start)
                    last_seen[chat] = seen - start
            total = max(last_seen.values())
            first = sorted(first_seen.values())
            return {
                "model": model, "chats": chats, "max_new_tokens": max_new_tokens,
                "first_text_s_median": statistics.median(first), "first_text_s_max": first[-1],
                "all_done_s": total, "messages_per_s": chats / total,
                "edits": len(api.calls_of("editMessageText")),
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
            api.stop()


def main(args) -> int:
    results = [bench_model(model, args.chats, args.max_new_tokens) for model in args.models]
    lines = ["| model | chats | first text p50 (s) | first text max (s) | all answered (s) | messages/s |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['chats']} | {r['first_text_s_median']:.2f} | {r['first_text_s_max']:.2f} | "
              f"{r['all_done_s']:.1f} | {r['messages_per_s']:.2f} |" for r in results]
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
