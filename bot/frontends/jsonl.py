"""`babelbot route|reply --jsonl FILE|-`: one JSON line out per JSON line in, in order.

Lines are {"id": ..., "text": ...}; a bad line gets {"id": null, "line": N, "error": ...}
and the exit status is 1. A file is read in batches (the encoder embeds 64 messages at once;
`reply` answers up to `serving.max_batch` lines at once, so the engine decodes them in one
continuous batch); standard input is answered line by line, as it comes.
"""

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from babelbot.config import ConfigError, load_config
from babelbot.jsonl import read_jsonl
from bot.build import build_manager, build_router
from bot.config import BotConfig
from bot.store import Store
from bot.text import clean_text

ROUTE_BATCH = 64


def answer_lines(path: str, answer_many: Callable[[list[str], list[int]], list[dict]], batch_size: int) -> int:
    """Answer each line with one JSON line, in order; `answer_many` gets up to `batch_size`
    texts (and their line numbers) at a time."""
    failed = False
    try:
        source = contextlib.nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read --jsonl {path}: {error.strerror}") from None
    pending: list[tuple[int, dict]] = []

    def flush():
        answers = answer_many([record["text"] for _, record in pending], [number for number, _ in pending]) if pending else []
        for (_, record), out in zip(pending, answers):
            print(json.dumps({"id": record.get("id"), **out}, ensure_ascii=False), flush=True)
        pending.clear()

    with source as handle:
        for number, record, error in read_jsonl(handle):
            if record is not None and not isinstance(record.get("text"), str):
                error = 'each line must be an object with a string "text"'
            if error:
                failed = True
                flush()
                print(json.dumps({"id": None, "line": number, "error": f"line {number}: {error}"}), flush=True)
                continue
            pending.append((number, record))
            if len(pending) >= batch_size:
                flush()
        flush()
    return 1 if failed else 0


def route_main(args) -> int:
    # Standard input is answered as it comes, so the language models load up front; a file
    # loads only the ones its lines need.
    router = build_router(load_config(BotConfig, args.config, args.overrides), warm=args.jsonl == "-")
    batch_size = 1 if args.jsonl == "-" else ROUTE_BATCH
    return answer_lines(
        args.jsonl, lambda texts, _: [route.as_dict() for route in router.route_many([clean_text(t) for t in texts])], batch_size
    )


def reply_main(args) -> int:
    config = load_config(BotConfig, args.config, args.overrides)
    with tempfile.TemporaryDirectory() as scratch:
        # Every line is the first turn of a new conversation, kept out of the real database.
        manager = build_manager(config, store=Store(Path(scratch) / "reply.sqlite3"))

        def answer(text: str, number: int) -> dict:
            reply = manager.handle(f"jsonl-{number}", text)
            route = reply.route or manager.router.route(clean_text(text))
            return {**route.as_dict(), "reply": reply.read()}

        batch_size = 1 if args.jsonl == "-" else config.serving.max_batch
        with ThreadPoolExecutor(batch_size) as pool:
            return answer_lines(args.jsonl, lambda texts, numbers: list(pool.map(answer, texts, numbers)), batch_size)
