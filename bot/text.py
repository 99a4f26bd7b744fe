"""Customer text as the bot accepts it: one cleaning step every front end's text goes through
(web, Telegram, the terminal, JSONL, and text forwarded to agents)."""

import re
import unicodedata

# C0/C1 control characters other than tab and newline, and lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
# Characters that change how text looks without being seen: bidi embeddings, overrides and
# isolates (a reversed "refund" reads as something else to an agent), zero-width space, word
# joiner and BOM, and the invisible tag characters. ZWJ and ZWNJ stay: Hindi, Persian and
# emoji sequences need them.
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b\u2060\ufeff\U000e0000-\U000e007f]")
# A payment card number: 13–19 digits, optionally in groups split by spaces or dashes.
_CARD_NUMBER = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def mask_card_numbers(text: str) -> str:
    """"4111 1111 1111 1234" → "**** 1234": the store, the logs and the prompts never hold a card number."""
    return _CARD_NUMBER.sub(lambda match: "**** " + re.sub(r"\D", "", match.group())[-4:], text)


def clean_text(text: str) -> str:
    """NFC-normalised text without control, invisible or bidi-override characters and with
    card numbers masked, trimmed."""
    text = _INVISIBLE.sub("", _UNPRINTABLE.sub("", unicodedata.normalize("NFC", text)))
    return mask_card_numbers(text).strip()
