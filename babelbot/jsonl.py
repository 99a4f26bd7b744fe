"""Reading JSON Lines (one object per line, blank lines skipped, bad lines reported, not fatal)
and the stable train/dev/test split every data file shares."""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def read_jsonl(lines: TextIO) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record, problem) for each non-blank line; `record` is None when there is a problem."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            yield number, None, f"not JSON ({error})"
            continue
        if isinstance(record, dict):
            yield number, record, None
        else:
            yield number, None, "must be a JSON object"


def read_jsonl_file(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """`read_jsonl` over a file."""
    with path.open(encoding="utf-8") as lines:
        yield from read_jsonl(lines)


def split_of(key: str) -> str:
    """train (80%), dev (10%) or test (10%), from a stable hash of `key`."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"
