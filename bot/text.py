"""Customer text as the bot accepts it: one cleaning step every front end's text goes through."""

import re
import unicodedata

# C0/C1 control characters other than tab and newline, and lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """NFC-normalised text without control characters or invalid surrogates, trimmed."""
    return _UNPRINTABLE.sub("", unicodedata.normalize("NFC", text)).strip()
