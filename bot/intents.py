"""First intent detector: multinomial naive Bayes over character n-grams.

Character n-grams work across scripts without a tokenizer per language, and naive Bayes
trains in milliseconds from `data/intents/seed.jsonl` at start-up, so there is no artifact
to keep in sync. The cross-lingual encoder will replace it behind the same `IntentDetector`
protocol.
"""

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from babelbot.labels import INTENTS
from babelbot.paths import DATA_DIR

SEED_FILE = DATA_DIR / "intents" / "seed.jsonl"


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    confidence: float  # posterior probability of `intent`, 0..1


class IntentDetector(Protocol):
    def predict(self, text: str) -> IntentGuess: ...


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\d+", "0", text)  # order numbers and amounts: shape, not value
    return " ".join(re.findall(r"\w+", text))


def char_ngrams(text: str, sizes: tuple[int, ...] = (1, 2, 3, 4)) -> Counter:
    padded = f" {normalize(text)} "
    return Counter(padded[i : i + n] for n in sizes for i in range(len(padded) - n + 1))


def read_examples(path: Path = SEED_FILE) -> list[tuple[str, str]]:
    """(text, intent) pairs from a JSONL file of {"language", "intent", "text"} records."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            record = json.loads(line)
            if record["intent"] not in INTENTS:
                raise ValueError(f"{path}:{number}: unknown intent {record['intent']!r}")
            examples.append((record["text"], record["intent"]))
    return examples


class NaiveBayesIntents:
    """`NaiveBayesIntents.fit(examples).predict(text)`; smoothing `alpha` per n-gram."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.log_prior: dict[str, float] = {}
        self.counts: dict[str, Counter] = {}
        self.totals: dict[str, int] = {}
        self.vocabulary: set[str] = set()

    @classmethod
    def fit(cls, examples: list[tuple[str, str]], alpha: float = 0.1) -> "NaiveBayesIntents":
        model = cls(alpha)
        per_intent = Counter(intent for _, intent in examples)
        model.counts = {intent: Counter() for intent in per_intent}
        for text, intent in examples:
            model.counts[intent].update(char_ngrams(text))
        model.totals = {intent: sum(counts.values()) for intent, counts in model.counts.items()}
        model.vocabulary = set().union(*model.counts.values())
        model.log_prior = {intent: math.log(n / len(examples)) for intent, n in per_intent.items()}
        return model

    def predict(self, text: str) -> IntentGuess:
        grams = {g: n for g, n in char_ngrams(text).items() if g in self.vocabulary}
        size = len(self.vocabulary)
        scores = {}
        for intent, counts in self.counts.items():
            denominator = math.log(self.totals[intent] + self.alpha * size)
            scores[intent] = self.log_prior[intent] + sum(
                n * (math.log(counts.get(g, 0) + self.alpha) - denominator) for g, n in grams.items()
            )
        best = max(scores, key=scores.get)
        normaliser = sum(math.exp(score - scores[best]) for score in scores.values())
        return IntentGuess(best, 1.0 / normaliser)


def default_intent_detector() -> IntentDetector:
    return NaiveBayesIntents.fit(read_examples())
