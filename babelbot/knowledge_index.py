"""Fact retrieval: the aligned encoder's nearest facts to a message, in any language.

Each fact is found through several keys (its text in every language, plus English questions
it answers); a fact scores its best key's cosine similarity, plus the probability mass of the
intents that need it (`prior`), which breaks the ties short messages leave. The key vectors
are computed once per set of texts and cached on disk, so a restart does not re-embed them.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np

from babelbot.encoders import AlignedEncoder, one_blas_thread

log = logging.getLogger(__name__)

# How much the intent classifier's view counts against the similarity, chosen on
# data/answers_eval/dev.jsonl: precision@1 110/120 at 0 and 112 at 0.2, but the not-covered
# class wins 28/40 unanswerable questions at 0, 25 at 0.1 and 16 at 0.5.
FACT_PRIOR_WEIGHT = 0.1


class FactIndex:
    """`rank(vector, probabilities)` → [(fact id, score, similarity)], best first."""

    def __init__(self, encoder: AlignedEncoder, fact_ids: list[str], keys: list[tuple[str, str]],
                 prior: np.ndarray | None = None, cache_dir: Path | None = None):
        """`keys`: (fact id, text) pairs; `prior`: (intents, facts), 1 where an intent needs the fact."""
        self.fact_ids = list(fact_ids)
        self.prior = prior
        self.key_facts = np.array([self.fact_ids.index(fact_id) for fact_id, _ in keys])
        # Aligned vectors only: the first pass's USE space ranks facts worse (precision@1 on the
        # dev questions: 72/120 against 111/120), so a message's aligned vector is always made.
        self.vectors = encoder.project(self._embed(encoder, [text for _, text in keys], cache_dir))

    @staticmethod
    def _embed(encoder: AlignedEncoder, texts: list[str], cache_dir: Path | None) -> np.ndarray:
        digest = hashlib.sha256("\n".join([encoder.name, encoder.backbone.name, *texts]).encode("utf-8")).hexdigest()[:16]
        path = cache_dir / f"fact-index-{digest}.npy" if cache_dir else None
        if path is not None and path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError) as error:  # a damaged cache is rebuilt, never fatal
                log.warning("rebuilding the fact index cache %s: %s", path, error)
        with one_blas_thread():
            raw = encoder.backbone.embed(texts)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path.with_suffix(".tmp.npy"), raw)
                path.with_suffix(".tmp.npy").replace(path)
            except OSError as error:
                log.warning("cannot cache the fact index in %s: %s", cache_dir, error)
        return raw

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """(facts,): each fact's best key similarity to the aligned `vector`."""
        best = np.full(len(self.fact_ids), -np.inf, np.float32)
        np.maximum.at(best, self.key_facts, (self.vectors @ vector).astype(np.float32))
        return best

    def rank(self, vector: np.ndarray, intent_probabilities: np.ndarray | None = None,
             k: int = 3) -> list[tuple[str, float, float]]:
        """The `k` best facts as (id, score, similarity): the score adds the intent prior."""
        similarities = self.similarities(vector)
        scores = similarities
        if intent_probabilities is not None and self.prior is not None:
            scores = similarities + FACT_PRIOR_WEIGHT * (intent_probabilities @ self.prior)
        return [(self.fact_ids[i], float(scores[i]), float(similarities[i])) for i in np.argsort(-scores)[:k]]
