"""Router: a message's language, intent and the adapter that should answer it."""

from dataclasses import dataclass

from adapters.registry import AdapterCard, choose_adapter
from babelbot.language_id import LanguageDetector
from bot.intents import IntentDetector, IntentGuess
from prompts.knowledge import INTENT_TOPICS


@dataclass(frozen=True)
class Route:
    language: str  # ISO 639-1
    intent: str  # one of bot.intents.INTENTS
    intent_confidence: float
    adapter: str | None  # adapter name, None for the base model
    facts: tuple[str, ...] = ()  # ids of the facts the message asks about, best first
    fact_similarity: float | None = None  # the best fact's cosine similarity to the message (None: nothing retrieved)
    fact_scores: tuple[float, ...] = ()  # each retrieved fact's score (similarity plus the intent prior)

    @property
    def topics(self) -> tuple[str, ...]:
        """The knowledge-base topics of the retrieved facts, else the intent's fixed ones."""
        return tuple(dict.fromkeys(fact.split(".")[0] for fact in self.facts)) or INTENT_TOPICS[self.intent]

    def as_dict(self) -> dict:
        return {"language": self.language, "intent": self.intent, "adapter": self.adapter, "topics": list(self.topics),
                "facts": list(self.facts)}


def route_label(language: str, intent: str, adapter: str | None) -> str:
    """How a reply was routed, as the front ends show it: "🌐 es · order_status · base model"."""
    return f"🌐 {language} · {intent} · {adapter or 'base model'}"


class Router:
    def __init__(
        self,
        languages: LanguageDetector,
        intents: IntentDetector,
        adapters: dict[str, AdapterCard],
        default_language: str = "en",
    ):
        self.languages = languages
        self.intents = intents
        self.adapters = adapters
        self.default_language = default_language

    def route(
        self, text: str, conversation_language: str | None = None, task: str = "reply", language: str | None = None
    ) -> Route:
        """Route one message; a message too short to tell keeps `conversation_language`.
        A `language` given (pinned by the customer) is used as it is."""
        return self.route_many([text], conversation_language, task, language)[0]

    def route_many(
        self, texts: list[str], conversation_language: str | None = None, task: str = "reply", language: str | None = None
    ) -> list[Route]:
        """`route` for many first messages at once: the intent encoder runs one batch."""
        wordy = [i for i, text in enumerate(texts) if any(c.isalnum() for c in text)]
        guesses = dict(zip(wordy, self.intents.predict_many([texts[i] for i in wordy]) if wordy else []))
        routes = []
        for i, text in enumerate(texts):
            detected = language or self.languages.detect(text, fallback=conversation_language) or self.default_language
            guess = guesses.get(i, IntentGuess("out_of_scope", 1.0))
            adapter = choose_adapter(self.adapters, detected, task)
            facts = tuple(fact for fact, _, _ in guess.facts)
            score = guess.facts[0][2] if guess.facts else None
            scores = tuple(fact_score for _, fact_score, _ in guess.facts)
            routes.append(
                Route(detected, guess.intent, guess.confidence, adapter.name if adapter else None, facts, score, scores)
            )
        return routes
