"""Intent detectors, behind one `IntentDetector` protocol.

`EncoderIntents` (the default) classifies the aligned sentence embedding of
`babelbot.encoders`, so an intent learned in the training languages is recognised in any
language the backbone knows, and the same embedding finds the knowledge-base facts the
message asks about. Its first pass (`AlignedEncoder.read`) answers the messages USE v3's
vectors alone classify with confidence, so e5 runs only for the rest. `NaiveBayesIntents`
(character n-grams, trained in milliseconds from `data/intents/seed.jsonl`) is the fallback
when no encoder is installed, and a baseline.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from adapters.registry import open_encoder
from babelbot.encoders import AlignedEncoder, EncoderError, one_blas_thread
from babelbot.knowledge_index import FactIndex
from babelbot.labels import INTENTS
from babelbot.models import babelbot_home
from babelbot.naive_bayes import NaiveBayes
from babelbot.paths import DATA_DIR
from bot.config import DEFAULT_ENCODER
from prompts.knowledge import INTENT_TOPICS, NOT_COVERED, REQUEST_HUMAN, fact_questions, knowledge_base, knowledge_languages

log = logging.getLogger(__name__)

SEED_FILE = DATA_DIR / "intents" / "seed.jsonl"


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    confidence: float  # posterior probability of `intent`, 0..1
    facts: tuple[tuple[str, float, float], ...] = ()  # (fact id, score, similarity), best first; () = none retrieved


class IntentDetector(Protocol):
    def predict(self, text: str) -> IntentGuess: ...

    def predict_many(self, texts: list[str]) -> list[IntentGuess]: ...


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
    """`NaiveBayesIntents.fit(examples).predict(text)`: character n-gram naive Bayes over the intents."""

    def __init__(self, model: NaiveBayes):
        self.model = model

    @classmethod
    def fit(cls, examples: list[tuple[str, str]], alpha: float = 0.1) -> "NaiveBayesIntents":
        return cls(NaiveBayes.fit(examples, alpha))

    def predict(self, text: str) -> IntentGuess:
        posterior = self.model.posterior(text)
        best = max(posterior, key=posterior.get)
        return IntentGuess(best, posterior[best])

    def predict_many(self, texts: list[str]) -> list[IntentGuess]:
        return [self.predict(text) for text in texts]


def fact_index(encoder: AlignedEncoder) -> FactIndex:
    """Every fact, keyed by its text in every knowledge language and by its English questions;
    an intent's prior covers the facts of its topics (INTENT_TOPICS)."""
    fact_ids = [*knowledge_base("en").facts, NOT_COVERED, REQUEST_HUMAN]
    keys = [(fact.id, fact.text) for language in knowledge_languages() for fact in knowledge_base(language).facts.values()]
    keys += [(fact_id, question) for fact_id, questions in fact_questions().items() for question in questions]
    # An out-of-scope message needs NOT_COVERED, a human_agent one REQUEST_HUMAN or the contact hours.
    pseudo = {(NOT_COVERED, "out_of_scope"), (REQUEST_HUMAN, "human_agent")}
    prior = np.array([[float(fact_id.split(".")[0] in INTENT_TOPICS[intent] or (fact_id, intent) in pseudo)
                       for fact_id in fact_ids] for intent in INTENTS])
    return FactIndex(encoder, fact_ids, keys, prior, cache_dir=babelbot_home() / "cache")


class EncoderIntents:
    """Intent and knowledge topics from one aligned embedding of the message."""

    def __init__(self, encoder: AlignedEncoder, knowledge: FactIndex | None = None):
        self.encoder = encoder
        self.knowledge = knowledge

    def predict(self, text: str) -> IntentGuess:
        return self.predict_many([text])[0]

    def predict_many(self, texts: list[str]) -> list[IntentGuess]:
        # One BLAS thread around the classifier and the topic search too (the encoder's own
        # limit covers the embedding): a batch of 450 router_eval messages ~1 ms a message faster.
        with one_blas_thread():
            return self._predict_many(texts)

    def _predict_many(self, texts: list[str]) -> list[IntentGuess]:
        readings = self.encoder.read(texts)
        aligned: dict[int, np.ndarray] = {i: r.vector for i, r in enumerate(readings) if r.space == "aligned"}
        if self.knowledge is not None:  # facts are found in the aligned space, also for first-pass messages
            rest = [i for i in range(len(texts)) if i not in aligned]
            if rest:
                aligned.update(zip(rest, self.encoder.embed([texts[i] for i in rest])))
        guesses = []
        for i, reading in enumerate(readings):
            best = int(np.argmax(reading.probabilities))
            facts = ()
            if self.knowledge is not None:  # for every intent: "when do your agents work?" reads as human_agent
                facts = tuple(self.knowledge.rank(aligned[i], reading.probabilities))
            guesses.append(IntentGuess(INTENTS[best], float(reading.probabilities[best]), facts))
        return guesses


def default_intent_detector(encoder_dir: Path | None = DEFAULT_ENCODER) -> IntentDetector:
    """The aligned encoder from `encoder_dir`; naive Bayes when `encoder_dir` is None, and,
    with a warning, when it is missing or unusable, so a damaged encoder never stops the bot."""
    if encoder_dir is None:
        log.info("intents from naive Bayes (intent_encoder=none)")
    elif encoder_dir.exists():
        try:
            encoder = open_encoder(encoder_dir)
            return EncoderIntents(encoder, fact_index(encoder))
        except (EncoderError, ImportError, OSError) as error:
            log.warning("intent encoder unusable, falling back to naive Bayes: %s", error)
    else:
        log.warning("no intent encoder at %s (build it with `babelbot encoder train`); using naive Bayes", encoder_dir)
    return NaiveBayesIntents.fit(read_examples())
