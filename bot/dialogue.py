"""Dialogue manager: the one entry point every front end calls.

    reply = manager.handle(session_id, text)   # routes and stores the customer's turn
    reply.route                                 # language, intent, adapter (None for notices)
    for piece in reply: ...                     # streams; the bot's turn is stored at the end

Notices (empty or too long messages, /reset, handoff) are fixed texts in the customer's
language and never reach the model.
"""

import logging
from collections.abc import Iterator

from adapters.registry import choose_adapter
from babelbot.languages import language_name
from bot.config import DialogueSettings
from bot.engine import Engine
from bot.router import Route, Router
from bot.store import Session, Store
from bot.text import clean_text
from prompts.formats import Turn
from prompts.knowledge import INTENT_TOPICS, entries_for_topics
from prompts.locales import locale_for
from prompts.tasks import reply_prompt, summarize_prompt, transcript_text, translate_prompt

log = logging.getLogger(__name__)

RESET_COMMAND = "/reset"


class Reply:
    """A reply being produced: its route, then its text in pieces; `text` holds what was sent.

    `event` tells front ends what else to do: "handoff" (a human agent was just asked for:
    tell the agents) or "waiting" (the customer wrote during a handoff: pass it on)."""

    def __init__(self, route: Route | None, pieces: Iterator[str], event: str | None = None):
        self.route = route
        self._pieces = pieces
        self.event = event
        self.text = ""

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

    def _notice(
        self, session: Session, language: str, key: str, route: Route | None = None, event: str | None = None, **values
    ) -> Reply:
        text = locale_for(language).notice(key, **values)
        if route is not None:  # answers to a stored customer turn are stored too
            self.store.add_turn(session, "assistant", text, kind="notice", language=language, intent=route.intent)
        return Reply(route, iter([text]), event)

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
        if route.intent == "human_agent":
            self.store.update_session(session_id, state="handoff")
            return self._notice(session, route.language, "handoff", route, event="handoff")
        return Reply(route, self._generate(session, route))

    def _prompt(self, session: Session, route: Route):
        """The reply prompt with as much of the conversation as fits the token budget."""
        history = [Turn(t.role, t.text) for t in self.store.turns(session) if t.kind == "message"]
        budget = min(self.settings.context_tokens, self.engine.window) - self.engine.settings.max_new_tokens
        entries = entries_for_topics(route.topics or INTENT_TOPICS[route.intent], route.language)
        while True:
            prompt = reply_prompt(route.language, history, entries)
            if self.engine.prompt_tokens(prompt) <= budget:
                return prompt
            history = history[1:]
            while history and history[0].role != "user":  # a prompt starts with the customer
                history = history[1:]
            if not history:
                return None

    def _generate(self, session: Session, route: Route) -> Iterator[str]:
        prompt = self._prompt(session, route)
        if prompt is None:
            yield self._notice(session, route.language, "too_long", route, limit=self.settings.max_message_chars // 2).read()
            return
        sent = ""
        try:
            for piece in self.engine.stream(prompt, route.adapter):
                sent += piece
                yield piece
        except Exception:
            log.exception("generation failed for session %s", session.id)
            notice = locale_for(route.language).notice("error")
            yield ("\n\n" if sent else "") + notice
            return
        finally:
            # Stored even when the reader stops early (a closed tab): what was shown is history.
            if sent.strip():
                self.store.add_turn(
                    session, "assistant", sent.strip(), language=route.language, intent=route.intent, adapter=route.adapter
                )
        if not sent.strip():
            yield self._notice(session, route.language, "error", route).read()
