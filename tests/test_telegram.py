"""The real `babelbot telegram` process against a local Bot API server, on a tiny model."""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from telegram import Bot

from babelbot.testing import BOT_USER, FakeBotApi, text_update
from bot.frontends.telegram import deliver, split_message
from bot.store import Store
from prompts.locales import locale_for

TOKEN = "123456:TEST-secret-token-never-logged"
AGENTS = -100


def notice(language: str, key: str, **values) -> str:
    return locale_for(language).notice(key, **values)


def start_bot(api, model_dir, home, flags=(), overrides=()):
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "BABELBOT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log = open(home / "bot.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "babelbot.cli", "telegram", "--base-url", api.base_url, *flags, f"model={model_dir}",
         "generation.max_new_tokens=12", f"telegram.agents_chat_id={AGENTS}", "telegram.edit_interval_s=0.2",
         "telegram.rate_limit_messages=6", "telegram.rate_limit_window_s=10", *overrides],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    return process, log


def stop_bot(process, log, home):
    process.terminate()
    process.wait(timeout=30)
    log.close()
    text = (home / "bot.log").read_text()
    assert TOKEN not in text and TOKEN.split(":")[1] not in text, "the bot token leaked into the log"
    return text


@pytest.fixture(scope="module")
def api():
    server = FakeBotApi(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bot(api, tiny_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("telegram-home")
    (home / "models").mkdir()
    process, log = start_bot(api, tiny_model_dir, home)
    api.wait_for(lambda: api.calls_of("getUpdates") or process.poll() is not None, timeout=180)
    assert process.poll() is None, (home / "bot.log").read_text()
    yield home
    stop_bot(process, log, home)


def store(home) -> Store:
    return Store(home / "conversations.sqlite3")


def send(api, chat_id, text, expect_messages, **kwargs):
    """Push a message and wait until the chat has `expect_messages` bot messages, settled."""
    api.push(text_update(chat_id, text, **kwargs))
    api.wait_for(lambda: len(api.texts(chat_id)) >= expect_messages, timeout=60, quiet=0.5)
    return api.texts(chat_id)


def user_turns(home, chat_id):
    s = store(home)
    return [(t.language, t.text) for t in s.turns(s.session(f"tg:{chat_id}")) if t.role == "user"]


def test_start_greets_in_telegrams_language_then_three_languages(api, bot):
    assert send(api, 1, "/start", 1, language_code="es")[0] == notice("es", "welcome")
    send(api, 1, "Hola, ¿dónde está mi pedido NW-12345?", 2, language_code="es")
    send(api, 1, "Bonjour, je voudrais retourner mes chaussures", 3, language_code="es")
    send(api, 1, "你好，我想取消我的订单", 4, language_code="es")
    assert [language for language, _ in user_turns(bot, 1)] == ["es", "fr", "zh"]
    assert all(text.strip() for text in api.texts(1))
    assert api.calls_of("sendChatAction"), "no typing indicator"
    assert all(call.get("link_preview_options") for call in api.calls_of("sendMessage"))


def test_lang_pins_and_auto_detects_again(api, bot):
    assert send(api, 2, "/lang de", 1, language_code="en")[-1] == notice("de", "lang_pinned", name="Deutsch")
    send(api, 2, "Hola, ¿cuánto cuesta el envío a México?", 2)
    assert send(api, 2, "/lang auto", 3)[-1] == notice("de", "lang_auto")
    send(api, 2, "Hola, ¿cuánto cuesta el envío a México?", 4)
    assert [language for language, _ in user_turns(bot, 2)] == ["de", "es"]
    assert send(api, 2, "/lang klingon", 5)[-1] == notice("es", "lang_unknown", code="klingon")


def test_reset_starts_over(api, bot):
    send(api, 3, "Hello, where is my order?", 1)
    assert send(api, 3, "/reset", 2)[-1] == notice("en", "reset")
    s = store(bot)
    assert s.session("tg:3").conversation == 2 and s.turns(s.session("tg:3")) == []


def test_human_handoff_summary_to_agents_and_translated_agent_reply(api, bot):
    send(api, 4, "Hola, mi cargador USB-C llegó roto, pedido NW-55821", 1, language_code="es")
    assert send(api, 4, "/human", 2)[-1] == notice("es", "handoff")
    api.wait_for(lambda: any("tg:4" in t for t in api.texts(AGENTS)), timeout=60)
    summary_id = max(i for i, m in api.messages.items() if m["chat_id"] == AGENTS and "tg:4" in m["text"])
    assert "Handoff" in api.messages[summary_id]["text"] and "(es)" in api.messages[summary_id]["text"]

    agent_message = {"message_id": summary_id, "date": 0, "chat": {"id": AGENTS, "type": "group"}, "from": BOT_USER,
                     "text": api.messages[summary_id]["text"]}
    api.push(text_update(AGENTS, "We are sending a new charger today.", user_id=900, chat_type="group",
                         reply_to=agent_message))
    api.wait_for(lambda: len(api.texts(4)) >= 3 and "✓ sent to tg:4" in api.texts(AGENTS), timeout=60)
    s = store(bot)
    agent_turns = [t for t in s.turns(s.session("tg:4")) if t.kind == "agent"]
    assert len(agent_turns) == 1 and agent_turns[0].language == "es" and api.texts(4)[2] == agent_turns[0].text

    # While a person handles the chat, the customer's messages go to the agents, in English.
    assert send(api, 4, "¿Cuándo llega?", 4)[-1] == notice("es", "waiting")
    api.wait_for(lambda: any(t.startswith("💬 tg:4 (es):") for t in api.texts(AGENTS)), timeout=60)


def test_a_sticker_gets_a_polite_answer_and_edits_get_none(api, bot):
    sticker = {"file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512,
               "is_animated": False, "is_video": False}
    update = text_update(5, "", language_code="fr")
    del update["message"]["text"]
    update["message"]["sticker"] = sticker
    api.push(update)
    api.wait_for(lambda: api.texts(5) == [notice("fr", "non_text")], timeout=30, quiet=0.5)
    edited = text_update(5, "edited text", language_code="fr")
    api.push({"edited_message": {**edited["message"], "edit_date": int(time.time())}})
    time.sleep(2)
    assert api.texts(5) == [notice("fr", "non_text")]


def test_group_messages_only_when_addressed(api, bot):
    group = -200
    api.push(text_update(group, "anyone know a good pizza place?", user_id=31, chat_type="group"))
    send(api, group, "@babelbot_test_bot where is my order NW-11111?", 1, user_id=31, chat_type="group")
    time.sleep(1)
    assert len(api.texts(group)) == 1
    s = store(bot)
    assert [t.text for t in s.turns(s.session(f"tg:{group}:31")) if t.role == "user"] == ["where is my order NW-11111?"]


def test_twenty_chats_at_once_nothing_lost_or_crossed(api, bot):
    languages = ["en", "es", "fr", "de", "pt"]
    texts = {
        "en": "Hello, where is my order NW-{n}?", "es": "Hola, ¿dónde está mi pedido NW-{n}?",
        "fr": "Bonjour, où est ma commande NW-{n} ?", "de": "Hallo, wo ist meine Bestellung NW-{n}?",
        "pt": "Olá, onde está o meu pedido NW-{n}?",
    }
    chats = {1000 + i: texts[languages[i % 5]].format(n=10000 + i) for i in range(20)}
    start = time.monotonic()
    for chat_id, text in chats.items():
        api.push(text_update(chat_id, text))
    api.wait_for(lambda: all(len(api.texts(c)) >= 1 for c in chats), timeout=120, quiet=1.0)
    elapsed = time.monotonic() - start
    for i, (chat_id, text) in enumerate(chats.items()):
        assert user_turns(bot, chat_id) == [(languages[i % 5], text)]
        assert len(api.texts(chat_id)) == 1
    print(f"20 chats answered in {elapsed:.1f}s ({20 / elapsed:.1f} messages/s)")


def test_a_429_is_retried_after_its_delay(api, bot):
    api.fail_next("sendMessage", count=1, code=429, retry_after=1)
    send(api, 6, "Hello, how much is express shipping?", 1)
    attempts = [t for t, method, params in api.calls if method == "sendMessage" and params.get("chat_id") == 6]
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.9  # refused once, retried after retry_after


def test_rate_limit_sends_one_polite_notice(api, bot):
    for i in range(9):
        api.push(text_update(7, f"hello {i}, where is my order?", message_id=100 + i))
    api.wait_for(lambda: notice("en", "rate_limited") in api.texts(7), timeout=60, quiet=1.5)
    assert api.texts(7).count(notice("en", "rate_limited")) == 1
    assert len(user_turns(bot, 7)) == 9  # the three over the limit are kept, not answered


def test_a_ten_thousand_character_reply_is_split_on_sentences(api):
    sentence = "Your refund of $19.95 for order NW-12345 is on its way to your card. "
    text = (sentence * 150)[:10_000]
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]  # streamed in small pieces

    async def run():
        async with Bot(TOKEN, base_url=api.base_url) as bot:
            return await deliver(bot, 8, pieces, edit_interval_s=0.05)

    message_ids = asyncio.run(run())
    shown = api.texts(8)
    assert len(message_ids) == len(shown) == 3
    assert all(len(part) <= 4096 for part in shown)
    assert all(part.endswith(".") for part in shown[:-1])  # cut at sentence ends
    assert " ".join(shown) == text.strip()


@pytest.mark.parametrize(
    ("limit", "text", "expected"),
    [
        (10, "short", ["short"]),
        (12, "line one\nline two", ["line one", "line two"]),
        (20, "First one. Second one. Third", ["First one.", "Second one. Third"]),
        (5, "abcdefghijkl", ["abcde", "fghij", "kl"]),
    ],
)
def test_split_message(limit, text, expected):
    assert split_message(text, limit) == expected


def test_webhook_refuses_a_wrong_secret_and_serves_only_allowed_users(api, tiny_model_dir, tmp_path):
    home = tmp_path / "webhook-home"
    home.mkdir()
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process, log = start_bot(
        api, tiny_model_dir, home,
        flags=["--webhook-url", "https://bot.example/telegram", "--port", str(port), "--secret", "right-secret"],
        overrides=["telegram.allowed_user_ids=9,10"],
    )
    try:
        api.wait_for(lambda: api.calls_of("setWebhook") or process.poll() is not None, timeout=180)
        assert api.calls_of("setWebhook")[-1]["secret_token"] == "right-secret"

        def post(secret, chat_id=9, update_id=99999):
            body = json.dumps({"update_id": update_id, **text_update(chat_id, "Hello, where is my order?")}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/telegram", data=body, method="POST",
                headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
            )
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as error:
                return error.code

        deadline = time.monotonic() + 30
        while True:  # the webhook server starts right after setWebhook
            try:
                status = post("wrong-secret")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert status == 403
        assert api.texts(9) == []
        assert post("right-secret", chat_id=11, update_id=99998) == 200  # not on the allowlist: ignored
        assert post("right-secret") == 200
        api.wait_for(lambda: len(api.texts(9)) >= 1, timeout=60)
        time.sleep(1)
        assert api.texts(11) == []
    finally:
        stop_bot(process, log, home)


def test_a_refused_token_is_a_clear_error_that_does_not_quote_it(api, tiny_model_dir, tmp_path):
    wrong = "123456:wrong-secret-token-for-this-test"
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": wrong, "BABELBOT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    (tmp_path / "models").mkdir()
    command = [sys.executable, "-m", "babelbot.cli", "telegram", "--base-url", api.base_url, f"model={tiny_model_dir}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "InvalidToken" in output and "TELEGRAM_BOT_TOKEN" in output
    assert "wrong-secret-token" not in output  # the library's own log of the refusal is redacted too
