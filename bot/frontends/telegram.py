"""Telegram front end: thin python-telegram-bot handlers over the dialogue manager.

    /start ──▶ welcome (Telegram's language_code as a hint until the first message)
    text ────▶ manager.handle ──▶ streamed reply (typing…, then one edit a second at most)
                     │ event "handoff" ──▶ English summary to the agents' chat
                     │ event "waiting" ──▶ the customer's message, in English, to the agents' chat
    agents' chat: a reply to one of those ──▶ translated into the customer's language ──▶ customer

Model text is sent as plain text (no parse mode), so it can never be read as Markdown or
HTML, and link previews are off. The token is never logged: a filter redacts it from every
log record, exceptions included.
"""

import asyncio
import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor

from telegram import BotCommand, LinkPreviewOptions, Update
from telegram.constants import ChatAction, ChatType, MessageLimit
from telegram.error import BadRequest, InvalidToken, NetworkError
from telegram.ext import AIORateLimiter, Application, CommandHandler, ContextTypes, MessageHandler, filters

from babelbot.config import ConfigError
from bot.config import TelegramConfig
from bot.dialogue import DialogueManager

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
MAX_TRACKED_USERS = 10_000  # per-user rate-limit state and per-chat locks beyond this are pruned when idle
COMMANDS = {
    "start": "Start a conversation",
    "help": "What I can do",
    "lang": "Choose my reply language: /lang es, or /lang auto",
    "reset": "Start over",
    "human": "Talk to a person",
}


class RedactToken(logging.Filter):
    """Replaces the bot token in log records, including exception text, with <token>."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = message.replace(self.token, "<token>"), ()
        if record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "<token>")
        record.exc_info = None if record.exc_text else record.exc_info
        return True


def split_message(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Pieces of at most `limit` characters, cut at a line end, else a sentence end, else a
    space, and only mid-word when a single word is longer than `limit`."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n"), max((m.end() for m in re.finditer(r"[.!?。！？]\s", window)), default=-1) - 1)
        if cut <= limit // 4:
            cut = window.rfind(" ")
        if cut <= limit // 4:
            cut = limit - 1
        pieces.append(text[: cut + 1].rstrip())
        text = text[cut + 1 :].lstrip()
    if text or not pieces:
        pieces.append(text)
    return pieces


async def with_retries(call, *args, retries: int, **kwargs):
    """Await `call`, retrying network errors with exponential backoff.

    429s never get here: the rate limiter waits Telegram's retry_after and retries them.
    A BadRequest (also a NetworkError in python-telegram-bot) is our fault: no retry."""
    for attempt in range(retries + 1):
        try:
            return await call(*args, **kwargs)
        except BadRequest:
            raise
        except NetworkError:
            if attempt == retries:
                raise
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0))


async def pieces_from_thread(pieces: Iterable[str]) -> AsyncIterator[str]:
    """Iterate a blocking iterator (model generation) in a worker thread, yielding as it goes."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    def produce():
        try:
            for piece in pieces:
                loop.call_soon_threadsafe(queue.put_nowait, piece)
        except BaseException as error:  # re-raised in the event loop below
            loop.call_soon_threadsafe(queue.put_nowait, error)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    worker = loop.run_in_executor(None, produce)
    while (item := await queue.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    await worker


async def deliver(bot, chat_id: int, pieces: Iterable[str], edit_interval_s: float = 1.0, retries: int = 4) -> list[int]:
    """Send a streamed reply: typing while nothing is shown, then the text so far, edited at
    most once per `edit_interval_s`; past 4,096 characters it continues in a new message.
    Returns the ids of the messages sent."""
    sent: list[tuple[int, str]] = []  # (message_id, text shown)

    async def show(text: str) -> None:
        for index, chunk in enumerate(split_message(text)):
            if not chunk:
                continue
            if index < len(sent):
                if sent[index][1] != chunk:
                    await with_retries(
                        bot.edit_message_text, chunk, chat_id=chat_id, message_id=sent[index][0],
                        link_preview_options=NO_PREVIEW, retries=retries,
                    )
                    sent[index] = (sent[index][0], chunk)
            else:
                message = await with_retries(
                    bot.send_message, chat_id, chunk, link_preview_options=NO_PREVIEW, retries=retries
                )
                sent.append((message.message_id, chunk))

    await with_retries(bot.send_chat_action, chat_id, ChatAction.TYPING, retries=retries)
    text, shown_at, typing_at = "", 0.0, time.monotonic()
    async for piece in pieces_from_thread(pieces):
        text += piece
        now = time.monotonic()
        if text.strip() and now - shown_at >= edit_interval_s:
            await show(text.strip())
            shown_at = now
        elif not text.strip() and now - typing_at > 4:  # the typing indicator lasts ~5 s
            await with_retries(bot.send_chat_action, chat_id, ChatAction.TYPING, retries=retries)
            typing_at = now
    if text.strip():
        await show(text.strip())
    return [message_id for message_id, _ in sent]


def session_id_for(update: Update) -> str:
    """One conversation per private chat; in groups, one per member."""
    chat, user = update.effective_chat, update.effective_user
    if chat.type == ChatType.PRIVATE or user is None:
        return f"tg:{chat.id}"
    return f"tg:{chat.id}:{user.id}"


def chat_id_of(session_id: str) -> int:
    return int(session_id.split(":")[1])


class TelegramFrontEnd:
    """Handlers and the per-user state they share (rate limits, per-session ordering)."""

    def __init__(self, manager: DialogueManager, config: TelegramConfig):
        self.manager = manager
        self.config = config
        self.recent: dict[int, deque] = defaultdict(deque)  # user id → message times
        self.warned: dict[int, float] = {}
        self.session_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- helpers ---------------------------------------------------------------------------

    def _allowed(self, update: Update) -> bool:
        user = update.effective_user
        if self.config.allowed_user_ids and (user is None or user.id not in self.config.allowed_user_ids):
            log.info("ignoring user %s: not on the allowlist", user.id if user else None)
            return False
        return True

    def _over_rate_limit(self, user_id: int) -> bool:
        now, window = time.monotonic(), self.config.rate_limit_window_s
        if len(self.recent) > MAX_TRACKED_USERS:  # forget users quiet for a whole window: memory stays bounded
            for quiet in [u for u, times in self.recent.items() if not times or now - times[-1] > window]:
                self.recent.pop(quiet, None)
                self.warned.pop(quiet, None)
        times = self.recent[user_id]
        while times and now - times[0] > window:
            times.popleft()
        times.append(now)
        return len(times) > self.config.rate_limit_messages

    async def _throttled(self, update: Update, context: ContextTypes.DEFAULT_TYPE, text: str | None = None) -> bool:
        """True when this user is over the rate limit (messages and commands alike): their text
        is kept in the conversation, and they get the notice once a window."""
        user_id, session_id = update.effective_user.id, session_id_for(update)
        if not self._over_rate_limit(user_id):
            return False
        if text:
            await asyncio.to_thread(self.manager.keep_unanswered, session_id, text)
        if time.monotonic() - self.warned.get(user_id, -1e9) > self.config.rate_limit_window_s:
            self.warned[user_id] = time.monotonic()
            notice = self.manager.notice(session_id, "rate_limited", self._hint(update))
            await self._send(context, update.effective_chat.id, notice)
        return True

    def _session_lock(self, session_id: str) -> asyncio.Lock:
        if len(self.session_locks) > MAX_TRACKED_USERS:
            for idle in [s for s, lock in self.session_locks.items() if not lock.locked()]:
                del self.session_locks[idle]
        return self.session_locks[session_id]

    def _hint(self, update: Update) -> str | None:
        code = update.effective_user.language_code if update.effective_user else None
        return code.split("-")[0].lower() if code else None

    def _addressed_text(self, update: Update, bot_username: str) -> str | None:
        """The text meant for us: everything in a private chat; in groups only a message that
        mentions the bot or replies to it (etiquette: stay silent otherwise)."""
        message = update.effective_message
        text = message.text or ""
        if update.effective_chat.type == ChatType.PRIVATE:
            return text
        mention = f"@{bot_username}"
        replied = message.reply_to_message
        replied_to_us = replied is not None and replied.from_user is not None and replied.from_user.username == bot_username
        if mention.lower() in text.lower():
            return re.sub(re.escape(mention), "", text, flags=re.IGNORECASE).strip()
        return text if replied_to_us else None

    async def _send(self, context, chat_id: int, text: str) -> None:
        for chunk in split_message(text):
            await with_retries(
                context.bot.send_message, chat_id, chunk, link_preview_options=NO_PREVIEW, retries=self.config.max_retries
            )

    async def _to_agents(self, context, session_id: str, text: str) -> None:
        """Post to the agents' chat; a reply to any of these messages reaches the customer."""
        for chunk in split_message(text):
            message = await with_retries(
                context.bot.send_message, self.config.agents_chat_id, chunk, link_preview_options=NO_PREVIEW,
                retries=self.config.max_retries,
            )
            self.manager.link_agent_thread(f"{self.config.agents_chat_id}:{message.message_id}", session_id)

    async def _handoff_to_agents(self, context, session_id: str) -> None:
        if self.config.agents_chat_id is None:
            log.warning("handoff in %s but no telegram.agents_chat_id is configured; nobody is told", session_id)
            return
        summary = await asyncio.to_thread(self.manager.summarize, session_id)
        language = self.manager.session_language(session_id)
        await self._to_agents(
            context, session_id,
            f"🙋 Handoff: customer {session_id} ({language}).\nSummary: {summary}\n\n"
            "Reply to this message to answer; your reply is translated into the customer's language.",
        )

    # -- handlers --------------------------------------------------------------------------

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Greet the customer in their language (Telegram's language_code until they write)."""
        if self._allowed(update):
            await self._send(context, update.effective_chat.id,
                             self.manager.notice(session_id_for(update), "welcome", self._hint(update)))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """List the commands, in the customer's language."""
        if self._allowed(update):
            await self._send(context, update.effective_chat.id,
                             self.manager.notice(session_id_for(update), "help", self._hint(update)))

    async def lang(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Pin the reply language (/lang es) or detect it again (/lang auto)."""
        if not self._allowed(update) or await self._throttled(update, context):
            return
        session_id = session_id_for(update)
        answer = self.manager.pin_language(session_id, context.args[0]) if context.args else \
            self.manager.notice(session_id, "help", self._hint(update))
        await self._send(context, update.effective_chat.id, answer)

    async def reset(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Start a new conversation."""
        if self._allowed(update) and not await self._throttled(update, context):
            reply = self.manager.handle(session_id_for(update), "/reset", self._hint(update))
            await self._send(context, update.effective_chat.id, reply.read())

    async def human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Hand the conversation to a person and brief the agents."""
        if not self._allowed(update) or await self._throttled(update, context):  # a summary costs a generation
            return
        session_id = session_id_for(update)
        async with self._session_lock(session_id):
            await self._send(context, update.effective_chat.id, self.manager.start_handoff(session_id).read())
            await self._handoff_to_agents(context, session_id)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answer a customer's text message, streamed."""
        if not self._allowed(update):
            return
        text = self._addressed_text(update, context.bot.username)
        if text is None:
            return
        session_id, chat_id = session_id_for(update), update.effective_chat.id
        if await self._throttled(update, context, text):
            return
        async with self._session_lock(session_id):  # one chat's messages are answered in order
            reply = await asyncio.to_thread(self.manager.handle, session_id, text, self._hint(update))
            await deliver(context.bot, chat_id, reply, self.config.edit_interval_s, self.config.max_retries)
            if reply.event == "handoff":
                await self._handoff_to_agents(context, session_id)
            elif reply.event == "waiting" and self.config.agents_chat_id is not None:
                language = reply.route.language
                english = await asyncio.to_thread(self.manager.translate, text, language, "en")
                await self._to_agents(context, session_id, f"💬 {session_id} ({language}): {english}")

    async def other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Photos, stickers, voice, documents: ask for words (in private chats only)."""
        if self._allowed(update) and update.effective_chat.type == ChatType.PRIVATE:
            await self._send(context, update.effective_chat.id,
                             self.manager.notice(session_id_for(update), "non_text", self._hint(update)))

    async def agents(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An agent's reply to a handoff message: translate it and send it to the customer."""
        message = update.effective_message
        if not message.reply_to_message or not message.text:
            return
        session_id = self.manager.session_of_agent_thread(f"{message.chat_id}:{message.reply_to_message.message_id}")
        if session_id is None:
            return
        translated = await asyncio.to_thread(self.manager.agent_reply, session_id, message.text)
        await self._send(context, chat_id_of(session_id), translated)
        await self._send(context, message.chat_id, f"✓ sent to {session_id}")

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the problem (the token is redacted) and tell the customer once."""
        log.error("update failed: %r", context.error, exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat:
            try:
                text = self.manager.notice(session_id_for(update), "error")
                await context.bot.send_message(update.effective_chat.id, text)
            except Exception:  # the error may be that Telegram is unreachable
                log.exception("could not tell chat %s about the error", update.effective_chat.id)


def build_application(manager: DialogueManager, config: TelegramConfig) -> Application:
    token = config.resolved_token()
    manager.agents_reachable = config.agents_chat_id is not None
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactToken(token))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request URL, token included

    async def on_start(application: Application) -> None:
        # Replies are produced in worker threads; enough of them for every row of the engine's
        # batch, so concurrent chats are generated together (the default pool has cores + 4).
        workers = manager.max_concurrent + 4
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="reply"))
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS.items()])

    application = (
        Application.builder()
        .token(token)
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .rate_limiter(AIORateLimiter(max_retries=config.max_retries))
        .concurrent_updates(True)  # a slow reply in one chat does not hold up the others
        .post_init(on_start)
        .build()
    )
    front = TelegramFrontEnd(manager, config)
    new_messages = filters.UpdateType.MESSAGE  # edits of old messages get no second answer
    if config.agents_chat_id is not None:
        agents_chat = filters.Chat(config.agents_chat_id)
        application.add_handler(MessageHandler(agents_chat & new_messages & filters.TEXT, front.agents))
        new_messages = new_messages & ~agents_chat
    for name in COMMANDS:
        application.add_handler(CommandHandler(name, getattr(front, name), filters=new_messages))
    application.add_handler(MessageHandler(new_messages & filters.TEXT & ~filters.COMMAND, front.text))
    application.add_handler(MessageHandler(new_messages & ~filters.TEXT & ~filters.StatusUpdate.ALL, front.other))
    application.add_error_handler(front.error)
    return application


def run(manager: DialogueManager, config: TelegramConfig) -> None:
    try:
        _run(manager, config)
    except InvalidToken:
        # python-telegram-bot's message quotes the token: say what is wrong without it.
        raise ConfigError("Telegram refused the bot token (InvalidToken); check TELEGRAM_BOT_TOKEN with @BotFather") from None


def _run(manager: DialogueManager, config: TelegramConfig) -> None:
    application = build_application(manager, config)
    if config.webhook_url:
        log.info("webhook mode: listening on %s:%s", config.webhook_listen, config.webhook_port)
        application.run_webhook(
            listen=config.webhook_listen, port=config.webhook_port, url_path="telegram",
            webhook_url=config.webhook_url, secret_token=config.webhook_secret, allowed_updates=Update.ALL_TYPES,
        )
    else:
        log.info("long polling %s", config.base_url.replace(config.resolved_token(), "<token>"))
        application.run_polling(allowed_updates=Update.ALL_TYPES)
