"""Gradio web chat: one streaming chat function over the dialogue manager.

Each browser keeps a session id in its localStorage (encrypted with a secret kept under
BABELBOT_HOME, so it survives a server restart); on page load the conversation is restored
from the store. The browser's own language (its Accept-Language header) is the hint for a
first message too short to tell, as Telegram's language_code is for the Telegram bot: "hola"
alone reads as Sesotho to lingua, but not from a Spanish browser.
"""

import logging
import re
import secrets
import uuid

import gradio as gr

from babelbot.models import babelbot_home
from bot.dialogue import DialogueManager
from bot.router import route_label

log = logging.getLogger(__name__)

TITLE = "Northwind Store support"
DESCRIPTION = (
    "Ask about orders, returns, shipping, payments or your account, in your own language "
    "(for example: *¿Dónde está mi pedido NW-48213?* or *我的付款被拒绝了怎么办？*). "
    "Each reply shows the detected language, the intent and the adapter that answered; "
    "type `/reset` to start over."
)


def _browser_secret() -> str:
    path = babelbot_home() / "web-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(16), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def browser_language(accept_language: str | None) -> str | None:
    """The browser's first language as an ISO 639-1 code ("es-ES,es;q=0.9,en;q=0.8" → "es");
    None when the header is missing or names no language ("*")."""
    first = (accept_language or "").split(",")[0].split(";")[0].strip()
    primary = first.split("-")[0].lower()
    return primary if re.fullmatch(r"[a-z]{2}", primary) else None


def build_demo(manager: DialogueManager) -> gr.Blocks:
    def respond(message: str, history: list, session_id: str | None, request: gr.Request):
        """Stream the bot's reply to `message` in this browser's session."""
        session_id = session_id or uuid.uuid4().hex
        hint = browser_language(request.headers.get("accept-language")) if request else None
        try:
            reply = manager.handle(session_id, message, language_hint=hint)
            header = []
            if reply.route:
                title = route_label(reply.route.language, reply.route.intent, reply.route.adapter)
                header = [gr.ChatMessage(content="", metadata={"title": title})]
            text = ""
            for piece in reply:
                text += piece
                yield [*header, gr.ChatMessage(content=text)]
        except Exception:
            log.exception("reply failed for session %s", session_id)
            yield manager.notice(session_id, "error", language_hint=hint)

    def restore(session_id: str | None):
        """Give a new browser a session id; show a returning one its conversation."""
        session_id = session_id or uuid.uuid4().hex
        history = []
        for turn in manager.store.turns(manager.store.session(session_id)):
            if turn.role == "assistant" and turn.kind == "message":
                title = route_label(turn.language, turn.intent, turn.adapter)
                history.append(gr.ChatMessage(content="", metadata={"title": title}))
            history.append(gr.ChatMessage(role=turn.role, content=turn.text))
        return session_id, history, history

    with gr.Blocks(title=TITLE) as demo:
        session = gr.BrowserState(None, storage_key="babelbot-session", secret=_browser_secret())
        chat = gr.ChatInterface(
            respond,
            title=TITLE,
            description=DESCRIPTION,
            additional_inputs=[session],
            concurrency_limit=4,
        )
        demo.load(restore, inputs=[session], outputs=[session, chat.chatbot, chat.chatbot_state])
    return demo
