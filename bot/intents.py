"""Intent detectors, behind one `IntentDetector` protocol.

`EncoderIntents` (the default) classifies the aligned sentence embedding of
`babelbot.encoders`, so an intent learned in the training languages is recognised in any
language the backbone knows, and the same embedding finds the knowledge-base topics the
message is about. Its first pass (`AlignedEncoder.read`) answers the messages USE v3's
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

from babelbot.encoders import AlignedEncoder, EncoderError, load_encoder, one_blas_thread
from babelbot.labels import INTENTS
from babelbot.naive_bayes import NaiveBayes
from babelbot.paths import DATA_DIR
from bot.config import DEFAULT_ENCODER
from prompts.knowledge import INTENT_TOPICS, TOPICS, knowledge_base

log = logging.getLogger(__name__)

SEED_FILE = DATA_DIR / "intents" / "seed.jsonl"
# Intents that need no policy: their knowledge-base topics come from INTENT_TOPICS, not retrieval.
NO_POLICY_INTENTS = ("greeting", "goodbye", "out_of_scope", "human_agent")


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    confidence: float  # posterior probability of `intent`, 0..1
    topics: tuple[str, ...] = ()  # knowledge-base topics the message is about, best first; () = by intent


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


# How much the intent classifier's view counts against the raw similarity of the entries;
# chosen on the dev conversations with the first encoder (identity weight 1): topic
# precision@1 59% on similarity alone, 77% with 0.5, no better above.
INTENT_PRIOR_WEIGHT = 0.5
# intent × topic: 1 where the intent's fixed topics include the topic.
INTENT_TOPIC_PRIOR = np.array([[float(topic in INTENT_TOPICS[intent]) for topic in TOPICS] for intent in INTENTS])


def topic_scores(similarities: np.ndarray, entry_topics: list[str], intent_probabilities: np.ndarray | None) -> np.ndarray:
    """(n, len(TOPICS)): each topic's best entry similarity, plus the probability mass of
    the intents that need the topic (weighted by INTENT_PRIOR_WEIGHT) when given."""
    scores = np.full((similarities.shape[0], len(TOPICS)), -np.inf, np.float32)
    for column, topic in enumerate(entry_topics):
        slot = TOPICS.index(topic)
        scores[:, slot] = np.maximum(scores[:, slot], similarities[:, column])
    if intent_probabilities is not None:
        scores = scores + INTENT_PRIOR_WEIGHT * (intent_probabilities @ INTENT_TOPIC_PRIOR)
    return scores


class KnowledgeIndex:
    """Every knowledge-base entry in `languages`, embedded once. A message finds the topics
    whose entries lie nearest in any of those languages, so a Turkish question finds the
    policy through the English entry; the intent classifier's probabilities break the ties
    that short messages leave."""

    def __init__(self, encoder: AlignedEncoder, languages: tuple[str, ...]):
        entries = [(topic, entry) for lang in languages for topic, entry in knowledge_base(lang).items()]
        self.topics = [topic for topic, _ in entries]
        texts = [f"{entry.title}: {entry.text}" for _, entry in entries]
        with one_blas_thread():
            raw = encoder.backbone.embed(texts)
        # The entries in each space a message's vector can come from (see AlignedEncoder.read).
        self.vectors = {"aligned": encoder.project(raw)}
        if encoder.first_pass is not None:
            self.vectors["use"] = encoder.backbone.use_part(raw)

    def nearest(self, vector: np.ndarray, intent_probabilities: np.ndarray | None = None, k: int = 2,
                space: str = "aligned") -> tuple[str, ...]:
        probabilities = None if intent_probabilities is None else intent_probabilities[None, :]
        scores = topic_scores((self.vectors[space] @ vector)[None, :], self.topics, probabilities)[0]
        return tuple(TOPICS[i] for i in np.argsort(-scores)[:k])


class EncoderIntents:
    """Intent and knowledge topics from one aligned embedding of the message."""

    def __init__(self, encoder: AlignedEncoder, knowledge: KnowledgeIndex | None = None):
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
        guesses = []
        for reading in self.encoder.read(texts):
            best = int(np.argmax(reading.probabilities))
            intent = INTENTS[best]
            topics = ()
            if self.knowledge is not None and intent not in NO_POLICY_INTENTS:
                topics = self.knowledge.nearest(reading.vector, reading.probabilities, space=reading.space)
            guesses.append(IntentGuess(intent, float(reading.probabilities[best]), topics))
        return guesses


def topics_for(guess_topics: tuple[str, ...], intent: str) -> tuple[str, ...]:
    """The retrieved topics when there are any, else the intent's fixed ones."""
    return guess_topics or INTENT_TOPICS[intent]


def default_intent_detector(encoder_dir: Path | None = DEFAULT_ENCODER) -> IntentDetector:
    """The aligned encoder from `encoder_dir`; naive Bayes when `encoder_dir` is None, and,
    with a warning, when it is missing or unusable, so a damaged encoder never stops the bot."""
    from babelbot.languages import TRAINING_LANGUAGES

    if encoder_dir is None:
        log.info("intents from naive Bayes (intent_encoder=none)")
    elif encoder_dir.exists():
        try:
            encoder = load_encoder(encoder_dir)
            return EncoderIntents(encoder, KnowledgeIndex(encoder, TRAINING_LANGUAGES))
        except (EncoderError, ImportError, OSError) as error:
            log.warning("intent encoder unusable, falling back to naive Bayes: %s", error)
    else:
        log.warning("no intent encoder at %s (build it with `babelbot encoder train`); using naive Bayes", encoder_dir)
    return NaiveBayesIntents.fit(read_examples())
