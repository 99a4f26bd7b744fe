"""Reading JSON Lines: one object per line, blank lines skipped, bad lines reported, not fatal."""

import json
from collections.abc import Iterator
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
