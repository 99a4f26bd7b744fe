"""Character n-gram naive Bayes: a text classifier that trains in milliseconds.

Two uses: the first intent detector (`bot.intents.NaiveBayesIntents`, labels = intents) and
the support-domain language model that `babelbot.detect` weighs lingua's verdict with
(labels = the languages we serve).
"""

import math
import re
import unicodedata
from collections import Counter


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\d+", "0", text)  # order numbers and amounts: shape, not value
    return " ".join(re.findall(r"\w+", text))


def char_ngrams(text: str, sizes: tuple[int, ...] = (1, 2, 3, 4)) -> Counter:
    padded = f" {normalize(text)} "
    return Counter(padded[i : i + n] for n in sizes for i in range(len(padded) - n + 1))


class NaiveBayes:
    """`NaiveBayes.fit(examples).posterior(text)`; smoothing `alpha` per n-gram."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.log_prior: dict[str, float] = {}
        self.counts: dict[str, Counter] = {}
        self.totals: dict[str, int] = {}
        self.vocabulary: set[str] = set()

    @classmethod
    def fit(cls, examples: list[tuple[str, str]], alpha: float = 0.1) -> "NaiveBayes":
        """`examples`: (text, label) pairs."""
        model = cls(alpha)
        per_label = Counter(label for _, label in examples)
        model.counts = {label: Counter() for label in per_label}
        for text, label in examples:
            model.counts[label].update(char_ngrams(text))
        model.totals = {label: sum(counts.values()) for label, counts in model.counts.items()}
        model.vocabulary = set().union(*model.counts.values())
        model.log_prior = {label: math.log(n / len(examples)) for label, n in per_label.items()}
        return model

    def posterior(self, text: str) -> dict[str, float]:
        """label → probability, summing to 1 (the prior alone when no n-gram is known)."""
        grams = {g: n for g, n in char_ngrams(text).items() if g in self.vocabulary}
        size = len(self.vocabulary)
        scores = {}
        for label, counts in self.counts.items():
            denominator = math.log(self.totals[label] + self.alpha * size)
            scores[label] = self.log_prior[label] + sum(
                n * (math.log(counts.get(g, 0) + self.alpha) - denominator) for g, n in grams.items()
            )
        best = max(scores.values())
        weights = {label: math.exp(score - best) for label, score in scores.items()}
        total = sum(weights.values())
        return {label: weight / total for label, weight in weights.items()}
