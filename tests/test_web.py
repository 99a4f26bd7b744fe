"""The Gradio page in real headless Chromium, on the real default model."""

import shutil
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import uvicorn

from adapters.registry import choose_adapter, load_registry
from babelbot.language_id import LanguageDetector
from babelbot.models import DEFAULT_MODEL, load_model, model_fingerprint
from babelbot.paths import ADAPTERS_DIR
from bot.build import build_router
from bot.config import BotConfig
from bot.dialogue import DialogueManager
from bot.engine import Engine
from bot.frontends.web import build_app
from bot.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.real_model]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(real_model_home, tmp_path):
    """The page on the real model with the shipped adapters, and the adapter it should use for Spanish."""
    # Its own copy of the model: loading adapters changes a model in place.
    folder = str(real_model_home / "models" / DEFAULT_MODEL)
    engine = Engine(*load_model(folder, device="cpu"))
    engine.load_adapters(load_registry(ADAPTERS_DIR, base_model=DEFAULT_MODEL), model_fingerprint(folder))
    manager = DialogueManager(engine, Store(tmp_path / "web.sqlite3"), build_router(BotConfig(), engine.adapters))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(manager), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", spanish_adapter=choose_adapter(engine.adapters, "es", "reply"),
                          manager=manager)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make install-test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    return browser.new_page(locale="en-US")


def _bot_texts(page) -> list[str]:
    return page.locator('[data-testid="bot"]').all_inner_texts()


def _wait_for_reply(page, timeout_s: float = 120) -> list[list[str]]:
    """Snapshots of the bot messages, one each time they change, until the reply is done."""
    snapshots: list[list[str]] = []
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        texts = _bot_texts(page)
        if not snapshots or texts != snapshots[-1]:
            snapshots.append(texts)
        done = page.locator(".pending").count() == 0 and page.locator('[data-testid="stop-button"]').count() == 0
        if texts and done:
            return snapshots
        time.sleep(0.1)
    raise AssertionError(f"no finished reply after {timeout_s}s; saw {snapshots[-3:]}")


def test_spanish_message_gets_a_streamed_spanish_reply(web, page):
    web_url, adapter = web.url, web.spanish_adapter
    page.goto(web_url)
    page.wait_for_selector("textarea")
    page.fill("textarea", "Hola, ¿cuánto tiempo tengo para devolver unas zapatillas?")
    page.keyboard.press("Enter")
    snapshots = _wait_for_reply(page)

    header, reply = snapshots[-1][-2], snapshots[-1][-1]
    assert header.startswith("🌐 es ·") and header.endswith(f"· {adapter.name if adapter else 'base model'}")
    # Checked before it is sent: the return window's number, in Spanish.
    assert "30" in reply and LanguageDetector().detect(reply) == "es"

    page.reload()  # the same browser gets its conversation back from the store
    page.wait_for_selector('[data-testid="bot"]', timeout=30_000)
    assert _bot_texts(page)[-1] == reply
    assert "Hola, ¿cuánto tiempo" in page.locator('[data-testid="user"]').first.inner_text()


def test_empty_and_huge_messages_get_a_notice_in_the_page(web, page):
    page.goto(web.url)
    page.wait_for_selector("textarea")
    page.fill("textarea", "x" * 20_000)
    page.keyboard.press("Enter")
    assert "too long" in _wait_for_reply(page)[-1][-1]


def test_a_one_word_greeting_takes_the_browsers_language(web, browser):
    """"oi" alone is too short to tell (without a hint the default, English, answers); from a
    Brazilian browser it is Portuguese."""
    page = browser.new_page(locale="pt-BR")  # Accept-Language: pt-BR
    page.goto(web.url)
    page.wait_for_selector("textarea")
    page.fill("textarea", "oi")
    page.keyboard.press("Enter")
    header = _wait_for_reply(page)[-1][-2]
    assert header.startswith("🌐 pt ·"), header


def test_no_caller_can_read_or_write_another_customers_conversation(web):
    """The session comes from the server's signed HttpOnly cookie, never from the caller:
    a Telegram customer's turn cannot be read or written through the page's API."""
    import httpx
    from gradio_client import Client

    store = web.manager.store
    store.add_turn(store.session("tg:777"), "user", "My order NW-99999, card ending 4242", language="en")
    response = httpx.get(web.url)
    cookie = response.headers["set-cookie"]
    assert "babelbot_session=" in cookie and "HttpOnly" in cookie
    assert httpx.get(web.url + "healthz").json() == {"status": "ok"}
    assert httpx.get(web.url + "readyz").json()["ready"] is True

    client = Client(web.url, verbose=False)
    assert "4242" not in str(client.predict(api_name="/restore"))  # the endpoint takes no session id at all
    client.predict("tg:777 hello", api_name="/chat")
    assert [turn.text for turn in web.manager.history("tg:777")] == ["My order NW-99999, card ending 4242"]
