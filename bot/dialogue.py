"""Dialogue manager: the one entry point every front end calls.

    reply = manager.handle(session_id, text)   # routes and stores the customer's turn
    reply.route                                 # language, intent, adapter (None for notices)
    for piece in reply: ...                     # the bot's turn is stored at the end
    reply.outcome                               # how the answer was made (see below)

Notices (empty or too long messages, /reset, handoff) are fixed texts in the customer's
language and never reach the model.

A question is answered from the facts the router retrieved:
- nearest to no fact (or to the questions the knowledge base does not cover): "I don't
  know, a human can help" (outcome "dont_know");
- else the model drafts a reply grounded in the facts, and the answer check
  (bot/answer_check.py) reads it before it is sent: "passed"; a draft that fails is
  drafted again with only the answering fact(s) in the prompt: "regenerated"; if that fails
  too, the facts themselves are sent in the customer's language with the offer of a human:
  "fallback". The reply is sent after the check (streaming a draft that may be withdrawn
  would show customers wrong numbers).
"""

import logging
from collections import Counter
from collections.abc import Iterator

from adapters.registry import choose_adapter
from babelbot.languages import language_name
from bot.answer_check import CheckResult, check_reply
from bot.batch_engine import EngineBusy
from bot.config import DialogueSettings
from bot.engine import Engine
from bot.router import Route, Router
from bot.store import Session, Store
from bot.text import clean_text
from prompts.formats import Turn, one_line
from prompts.knowledge import INTENT_TOPICS, NOT_COVERED, REQUEST_HUMAN, facts_by_id, facts_for_topics
from prompts.locales import apology_for, locale_for, reply_language
from prompts.tasks import reply_prompt, summarize_prompt, transcript_text, translate_prompt

log = logging.getLogger(__name__)

RESET_COMMAND = "/reset"
# Messages answered by the model without a fact when no fact matches: small talk.
CHAT_INTENTS = ("greeting", "goodbye")


class Reply:
    """A reply being produced: its route, then its text in pieces; `text` holds what was sent.

    `event` tells front ends what else to do: "handoff" (a human agent was just asked for:
    tell the agents) or "waiting" (the customer wrote during a handoff: pass it on)."""

    def __init__(self, route: Route | None, pieces: Iterator[str], event: str | None = None):
        self.route = route
        self._pieces = pieces
        self.event = event
        self.text = ""
        self.outcome = "notice"  # notice, dont_know, passed, regenerated, fallback, chat, busy, error
        self.drafts: list[tuple[str, CheckResult]] = []  # each draft and its check, for evaluation

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece

    def read(self) -> str:
        for _ in self:
            pass
        return self.text


class DialogueManager:
    def __init__(self, engine: Engine, store: Store, router: Router, settings: DialogueSettings | None = None):
        self.engine = engine
        self.store = store
        self.router = router
        self.settings = settings or DialogueSettings()
        self.outcomes: Counter[str] = Counter()  # answers by outcome since start, for the metrics
        # Whether a person can take over here (the front end knows: Telegram with an agents'
        # chat can, the web page and the terminal cannot); if not, the customer is told so.
        self.agents_reachable = True

    def _notice(
        self, session: Session, language: str, key: str, route: Route | None = None, event: str | None = None, **values
    ) -> Reply:
        text = locale_for(language).notice(key, **values)
        if route is not None:  # answers to a stored customer turn are stored too
            self.store.add_turn(session, "assistant", text, kind="notice", language=language, intent=route.intent)
        return Reply(route, iter([text]), event)

    def history(self, session_id: str) -> list:
        """The stored turns of a session, oldest first (front ends show them on return)."""
        return self.store.turns(self.store.session(session_id))

    def keep_unanswered(self, session_id: str, text: str) -> None:
        """Store a customer's message that is not answered (sent over the rate limit): nothing
        a customer wrote is lost."""
        text = clean_text(text)
        if text:
            self.store.add_turn(self.store.session(session_id), "user", text[: self.settings.max_message_chars])

    def session_language(self, session_id: str) -> str:
        return self.language_of(self.store.session(session_id))

    def link_agent_thread(self, thread: str, session_id: str) -> None:
        """Remember that an agents' message `thread` is about `session_id` (agents answer by replying to it)."""
        self.store.add_agent_thread(thread, session_id)

    def session_of_agent_thread(self, thread: str) -> str | None:
        return self.store.agent_thread(thread)

    def ready(self) -> dict:
        """Whether the bot can answer: the model is loaded, with the adapters it serves."""
        return {"ready": self.engine.model is not None, "adapters": sorted(self.engine.adapters),
                "answers": dict(self.outcomes)}

    @property
    def max_concurrent(self) -> int:
        """How many replies the engine generates at once."""
        return self.engine.batch.max_batch

    def language_of(self, session: Session, hint: str | None = None) -> str:
        """The language to talk to this session in: pinned, detected so far, the front end's
        hint (e.g. Telegram's language_code), or the default."""
        return session.pinned_language or session.language or hint or self.settings.default_language

    def notice(self, session_id: str, key: str, language_hint: str | None = None, **values) -> str:
        """A fixed message (welcome, help, ...) in the session's language."""
        return locale_for(self.language_of(self.store.session(session_id), language_hint)).notice(key, **values)

    def pin_language(self, session_id: str, code: str) -> str:
        """`/lang xx` pins the reply language, `/lang auto` detects again; returns the answer."""
        code = code.strip().lower()
        self.store.session(session_id)  # created on first use, before it is updated
        if code == "auto":
            self.store.pin_language(session_id, None)
            return self.notice(session_id, "lang_auto")
        if language_name(code) == code:  # not an ISO 639-1 code lingua knows
            return self.notice(session_id, "lang_unknown", code=code[:10])
        self.store.pin_language(session_id, code)
        self.store.update_session(session_id, language=code)
        return self.notice(session_id, "lang_pinned", name=locale_for(code).name)

    def start_handoff(self, session_id: str) -> Reply:
        """Put the session in the hands of a human agent (the /human command)."""
        session = self.store.session(session_id)
        if not self.agents_reachable:
            return self._notice(session, self.language_of(session), "no_agents")
        self.store.update_session(session_id, state="handoff")
        return self._notice(session, self.language_of(session), "handoff", event="handoff")

    def summarize(self, session_id: str) -> str:
        """An English summary of the current conversation for the agent taking over."""
        session = self.store.session(session_id)
        # The latest turns say what the customer wants now; older ones would only slow this down.
        turns = [Turn(t.role, t.text) for t in self.store.turns(session) if t.kind != "notice"][-12:]
        if not turns:
            return "(no messages yet)"
        adapter = choose_adapter(self.router.adapters, "en", "summarize")
        summary = self.engine.complete(summarize_prompt(turns), adapter.name if adapter else None)
        return summary.strip() or transcript_text(turns)[-500:]

    def translate(self, text: str, source: str, target: str) -> str:
        """`text` from `source` into `target`, cleaned first: customer text forwarded to agents
        goes through the same cleaning as everything else."""
        text = clean_text(text)
        if source == target:
            return text
        adapter = choose_adapter(self.router.adapters, target if source == "en" else source, "translate")
        return self.engine.complete(translate_prompt(text, source, target), adapter.name if adapter else None).strip() or text

    def agent_reply(self, session_id: str, text: str, agent_language: str = "en") -> str:
        """An agent's answer, translated into the customer's language and stored; returns it."""
        session = self.store.session(session_id)
        language = self.language_of(session)
        translated = self.translate(clean_text(text), agent_language, language)
        self.store.add_turn(session, "assistant", translated, kind="agent", language=language)
        return translated

    def handle(self, session_id: str, text: str, language_hint: str | None = None) -> Reply:
        session = self.store.session(session_id)
        language = self.language_of(session, language_hint)
        text = clean_text(text)
        if not text:
            return self._notice(session, language, "empty")
        if text.lower() == RESET_COMMAND:
            self.store.reset(session_id)
            return self._notice(session, language, "reset")
        if len(text) > self.settings.max_message_chars:
            language = self.router.languages.detect(text[:500], fallback=language) or language
            return self._notice(session, language, "too_long", limit=self.settings.max_message_chars)

        route = self.router.route(
            text, conversation_language=session.language or language_hint, language=session.pinned_language
        )
        self.store.update_session(session_id, language=route.language)
        self.store.add_turn(session, "user", text, language=route.language, intent=route.intent, adapter=route.adapter)
        if session.state == "handoff":
            return self._notice(session, route.language, "waiting", route, event="waiting")
        if route.intent == "human_agent" and not self._asks_about_agents(route):
            if not self.agents_reachable:
                return self._notice(session, route.language, "no_agents", route)
            self.store.update_session(session_id, state="handoff")
            return self._notice(session, route.language, "handoff", route, event="handoff")
        reply = Reply(route, iter(()))
        reply._pieces = self._answer(session, route, text, reply)  # the answer records its outcome on the reply
        return reply

    def _asks_about_agents(self, route: Route) -> bool:
        """"When do your agents work?" is a question about the contact hours (nearest to their
        facts), "let me talk to a person" a request for one (nearest to REQUEST_HUMAN)."""
        return bool(route.facts) and route.facts[0].startswith("contact_hours.") and \
            (route.fact_similarity or 0) >= self.settings.fact_similarity

    def _answering_facts(self, route: Route) -> list[str]:
        """The facts the message asks about: the best one, and its runner-up of the same topic
        when the two score within `sibling_gap` (express or standard delivery? both are stated,
        rather than guess). [] for chat (greetings) and for questions no fact answers."""
        facts, scores = route.facts, route.fact_scores
        if not facts or facts[0] in (NOT_COVERED, REQUEST_HUMAN) or (route.fact_similarity or 0) < self.settings.fact_similarity:
            return []
        same_topic = len(facts) > 1 and facts[1].split(".")[0] == facts[0].split(".")[0]
        close = len(scores) > 1 and scores[0] - scores[1] < self.settings.sibling_gap
        return [facts[0], facts[1]] if same_topic and close else [facts[0]]

    def _prompt(self, session: Session, language: str, fact_ids: list[str], intent: str):
        """The reply prompt with as much of the conversation as fits the token budget; the
        intent's topics stand in for facts when none were retrieved (greetings)."""
        history = [Turn(t.role, one_line(t.text)) for t in self.store.turns(session) if t.kind == "message"]
        budget = min(self.settings.context_tokens, self.engine.window) - self.engine.settings.max_new_tokens
        facts = facts_by_id(fact_ids, language) if fact_ids else facts_for_topics(INTENT_TOPICS[intent], language)
        while True:
            prompt = reply_prompt(language, history, facts)
            if self.engine.prompt_tokens(prompt) <= budget:
                return prompt
            history = history[1:]
            while history and history[0].role != "user":  # a prompt starts with the customer
                history = history[1:]
            if not history:
                return None

    def _draft(self, session: Session, route: Route, language: str, fact_ids: list[str]) -> str:
        prompt = self._prompt(session, language, fact_ids, route.intent)
        if prompt is None:
            return ""
        return self.engine.complete(prompt, route.adapter).strip()

    def _check(self, draft: str, route: Route, language: str, fact_ids: list[str], answer: list[str],
               customer_text: str) -> CheckResult:
        # Numbers are allowed from the facts in the reply language and in English (a draft may
        # quote either); the answering fact's numbers must be there.
        facts = [f.text for f in facts_by_id(fact_ids, language)] + [f.text for f in facts_by_id(fact_ids, "en")]
        if not fact_ids:
            facts += [f.text for f in facts_for_topics(INTENT_TOPICS[route.intent], language)]
        required = [fact.text for fact in facts_by_id(answer, language)]
        return check_reply(draft, facts, customer_text, required, language, self._draft_language)

    def _draft_language(self, text: str) -> str | None:
        # Too little text to tell (a short greeting) passes; the detector is the router's.
        if sum(c.isalpha() for c in text) < self.settings.language_check_min_letters:
            return None
        return self.router.languages.detect(text)

    def _answer(self, session: Session, route: Route, customer_text: str, reply: Reply) -> Iterator[str]:
        language = reply_language(route.language)
        apology = apology_for(route.language)
        answer = self._answering_facts(route)
        # Without retrieval (intent_encoder=none) the intent's topics ground the reply, as chat.
        chat = (route.intent in CHAT_INTENTS or not route.facts) and not answer
        if not answer and not chat:
            reply.outcome = "dont_know"
            text = locale_for(language).notice("dont_know")
        else:
            in_prompt = max(self.settings.facts_in_prompt, len(answer))
            fact_ids = [f for f in route.facts if f not in (NOT_COVERED, REQUEST_HUMAN)][:in_prompt] if answer else []
            text, reply.outcome = self._checked_reply(session, route, language, fact_ids, answer, customer_text, reply)
        if apology:
            text = f"{apology}\n\n{text}"
        self.outcomes[reply.outcome] += 1
        if reply.outcome not in ("error", "busy"):
            self.store.add_turn(session, "assistant", text, language=route.language, intent=route.intent, adapter=route.adapter)
        yield text

    def _checked_reply(self, session: Session, route: Route, language: str, fact_ids: list[str], answer: list[str],
                       customer_text: str, reply: Reply) -> tuple[str, str]:
        """(text, outcome): a draft that passes the check, a second draft with only the answering
        facts, or the facts themselves with the offer of a human."""
        attempts = [fact_ids, answer] if answer and self.settings.regenerate and answer != fact_ids else [fact_ids]
        try:
            for attempt, ids in enumerate(attempts):
                draft = self._draft(session, route, language, ids)
                result = self._check(draft, route, language, ids, answer, customer_text)
                reply.drafts.append((draft, result))
                if draft and (result.passed or not self.settings.check_answers):
                    return draft, ("passed" if attempt == 0 else "regenerated") if answer else "chat"
                log.info("draft for session %s failed the check: %s", session.id, result.reason())
        except EngineBusy:
            log.warning("engine busy: session %s told to try again", session.id)
            return locale_for(language).notice("busy"), "busy"
        except Exception:  # a failed or timed-out generation: the facts still answer, or a notice
            log.exception("generation failed for session %s", session.id)
            if not answer:
                return locale_for(language).notice("error"), "error"
        if not answer:  # chat with nothing to fall back on
            return locale_for(language).notice("dont_know"), "dont_know"
        facts = " ".join(fact.text for fact in facts_by_id(answer, language))
        return f"{facts}\n\n{locale_for(language).notice('offer_human')}", "fallback"
