"""Gradio web chat: one chat function over the dialogue manager, on a FastAPI app that owns
the sessions.

A browser's session is created and checked by the server: a random id in an HttpOnly cookie
signed with a secret kept under BABELBOT_HOME (so it survives a restart). No endpoint takes a
session id from the caller, so nobody can read or write another customer's conversation
(web sessions live under "web:", apart from Telegram's "tg:" ones). On page load the
conversation is restored from the store. The browser's own language (its Accept-Language
header) is the hint for a first message too short to tell, as Telegram's language_code is for
the Telegram bot: "hola" alone reads as Sesotho to lingua, but not from a Spanish browser.

    GET /healthz   the process is up          GET /readyz   the model and adapters are loaded
"""

import hashlib
import hmac
import logging
import re
import secrets

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
SESSION_COOKIE = "babelbot_session"
SESSION_MAX_AGE_S = 90 * 24 * 3600


def _server_secret() -> bytes:
    path = babelbot_home() / "web-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip().encode("ascii")


def sign_session(token: str, secret: bytes) -> str:
    return f"{token}.{hmac.new(secret, token.encode('ascii'), hashlib.sha256).hexdigest()}"


def verified_session(cookie: str | None, secret: bytes) -> str | None:
    """The session token inside a cookie value we signed; None for anything else."""
    token, _, _ = (cookie or "").partition(".")
    if not re.fullmatch(r"[0-9a-f]{32}", token):
        return None
    return token if hmac.compare_digest(sign_session(token, secret), cookie or "") else None


def browser_language(accept_language: str | None) -> str | None:
    """The browser's first language as an ISO 639-1 code ("es-ES,es;q=0.9,en;q=0.8" → "es");
    None when the header is missing or names no language ("*")."""
    first = (accept_language or "").split(",")[0].split(";")[0].strip()
    primary = first.split("-")[0].lower()
    return primary if re.fullmatch(r"[a-z]{2}", primary) else None


def build_demo(manager: DialogueManager, secret: bytes | None = None) -> gr.Blocks:
    secret = secret or _server_secret()

    def session_of(request: gr.Request | None) -> str:
        """This browser's session, from the signed cookie; a caller without one gets a new,
        empty session of its own."""
        cookies = dict(getattr(request, "cookies", {}) or {}) if request else {}
        token = verified_session(cookies.get(SESSION_COOKIE), secret) or secrets.token_hex(16)
        return f"web:{token}"

    def respond(message: str, history: list, request: gr.Request):
        """Stream the bot's reply to `message` in this browser's session."""
        session_id = session_of(request)
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

    def restore(request: gr.Request):
        """Show a returning browser its conversation."""
        history = []
        for turn in manager.history(session_of(request)):
            if turn.role == "assistant" and turn.kind == "message":
                title = route_label(turn.language, turn.intent, turn.adapter)
                history.append(gr.ChatMessage(content="", metadata={"title": title}))
            history.append(gr.ChatMessage(role=turn.role, content=turn.text))
        return history, history

    with gr.Blocks(title=TITLE) as demo:
        chat = gr.ChatInterface(respond, title=TITLE, description=DESCRIPTION, api_name="chat")
        demo.load(restore, outputs=[chat.chatbot, chat.chatbot_state])
    return demo


def build_app(manager: DialogueManager, max_queue: int = 256) -> FastAPI:
    """The web chat on its own FastAPI app: session cookies, health checks, then Gradio at /."""
    secret = _server_secret()
    manager.agents_reachable = False  # no agents' view on the web yet: a customer asking for a person is told so
    app = FastAPI()

    @app.middleware("http")
    async def session_cookie(request: Request, call_next):
        # A browser without a valid cookie gets one now; the request itself carries it too, so
        # the page's first call already sees the session it will keep.
        if verified_session(request.cookies.get(SESSION_COOKIE), secret):
            return await call_next(request)
        value = sign_session(secrets.token_hex(16), secret)
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"cookie"]
        request.scope["headers"] = [*headers, (b"cookie", f"{SESSION_COOKIE}={value}".encode("ascii"))]
        response = await call_next(Request(request.scope, request.receive))
        response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        return response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        ready = manager.ready()
        return JSONResponse(ready, status_code=200 if ready["ready"] else 503)

    demo = build_demo(manager, secret)
    # As many chats at once as the engine batches; a bounded number more wait in the queue.
    demo.queue(default_concurrency_limit=manager.max_concurrent, max_size=max_queue)
    return gr.mount_gradio_app(app, demo, path="/")
