"""The check every draft reply passes before it is sent.

A reply may state only numbers that the retrieved facts state: every number, amount,
duration, time and percentage in the draft must appear in the facts, or be an identifier the
customer typed (an order number). It must also carry the numbers of the fact that answers the
question, and be written in the customer's language. Numbers are compared as values, whatever
the script: "19,95", "19.95", "١٩٫٩٥" and "１９.９５" are one number; "十二天" is 12.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

# Decimal digits of the scripts our customers write in, mapped to ASCII.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９٫", "0123456789" * 4 + ".")
# 19.95 / 19,95 (a decimal comma has exactly two digits after it) / 1,000 (thousands).
_NUMBER = re.compile(r"\d+(?:[.,]\d{3}(?!\d))*(?:[.,]\d{1,2}(?!\d))?")
# Chinese and Japanese numerals count only before a unit, so words like 一下 or 统一 are not numbers.
_CJK_UNIT = r"(?:天|日|个月|か月|ヶ月|小时|時間|分钟|分|周|週|年|次|美元|ドル|元|%|％)"
_CJK_NUMBER = re.compile(rf"([零一二两三四五六七八九十百千]+)(?=\s*{_CJK_UNIT})")
_CJK_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CJK_UNITS = {"十": 10, "百": 100, "千": 1000}
# A customer's own number is repeated freely only when it identifies something (an order
# number, a year): amounts and percentages a customer names ("a 50% refund") are not facts.
IDENTIFIER_DIGITS = 4


def _cjk_value(numeral: str) -> int:
    total, digit = 0, 0
    for char in numeral:
        if char in _CJK_DIGITS:
            digit = _CJK_DIGITS[char]
        else:
            total += (digit or 1) * _CJK_UNITS[char]
            digit = 0
    return total + digit


def _canonical(token: str) -> str:
    """'19,95' → '19.95', '1,000' → '1000', '08' → '8', '5.50' → '5.5'."""
    if re.search(r"[.,]\d{1,2}$", token):
        whole, fraction = re.split(r"[.,](?=\d{1,2}$)", token)
        whole = re.sub(r"[.,]", "", whole)
        value = f"{int(whole)}.{fraction}".rstrip("0").rstrip(".")
        return value
    return str(int(re.sub(r"[.,]", "", token)))


def numbers_in(text: str) -> list[str]:
    """Every number in `text` as a canonical string, in order."""
    ascii_text = text.translate(_DIGITS)
    found = [_canonical(token) for token in _NUMBER.findall(ascii_text)]
    return found + [str(_cjk_value(numeral)) for numeral in _CJK_NUMBER.findall(text)]


def customer_identifiers(text: str) -> set[str]:
    return {n for n in numbers_in(text) if len(n.replace(".", "")) >= IDENTIFIER_DIGITS}


@dataclass(frozen=True)
class CheckResult:
    unsupported: tuple[str, ...] = ()  # numbers in the draft that no fact states
    missing: tuple[str, ...] = ()  # numbers of the answering fact the draft leaves out
    language: str | None = None  # the draft's language when it is not the customer's

    @property
    def passed(self) -> bool:
        return not (self.unsupported or self.missing or self.language)

    def reason(self) -> str:
        parts = []
        if self.unsupported:
            parts.append(f"numbers not in the facts: {', '.join(self.unsupported)}")
        if self.missing:
            parts.append(f"the answer's numbers left out: {', '.join(self.missing)}")
        if self.language:
            parts.append(f"written in {self.language}")
        return "; ".join(parts) or "passed"


def check_reply(
    draft: str,
    facts: list[str],
    customer_text: str,
    required: list[str],
    language: str,
    detect: Callable[[str], str | None] | None = None,
) -> CheckResult:
    """Check `draft` against the retrieved `facts` (their texts, in any language).

    `required`: the texts of the fact(s) that answer the question; the draft must state every
    number they state (a reply that gives half of "Monday to Friday 8:00–20:00" is not the
    fact). `detect(text)` names the draft's language
    (None when it cannot tell); a draft in another language than `language` fails."""
    # An answering fact that states no number ("shoes must be unworn") leaves no room for the
    # other facts' numbers: a number then answers something else than the question.
    sources = facts if not required or any(numbers_in(fact) for fact in required) else required
    allowed = {n for fact in sources for n in numbers_in(fact)} | customer_identifiers(customer_text)
    stated = numbers_in(draft)
    unsupported = tuple(dict.fromkeys(n for n in stated if n not in allowed))
    missing: list[str] = []
    for fact in required:
        missing += [n for n in numbers_in(fact) if n not in stated]
    detected = detect(draft) if detect else None
    wrong_language = detected if detected and detected != language else None
    return CheckResult(unsupported, tuple(dict.fromkeys(missing)), wrong_language)
