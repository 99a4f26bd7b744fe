import signal
import subprocess
import sys
import textwrap

import pytest

from bot.store import Store, StoreError

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from bot.store import Store
    store = Store(sys.argv[1])
    session = store.session("web-1")
    store.update_session("web-1", language="es")
    store.add_turn(session, "user", "¿Dónde está mi pedido NW-12345?", language="es", intent="order_status")
    store.add_turn(session, "assistant", "Su pedido está en camino.", language="es", intent="order_status")
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no cleanup: a crash
    """
)


def test_transcript_survives_a_kill_and_restart(tmp_path):
    db = tmp_path / "conversations.sqlite3"
    run = subprocess.run([sys.executable, "-c", WRITER, str(db)], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL and "written" in run.stdout
    store = Store(db)
    session = store.session("web-1")
    assert session.language == "es"
    assert [(t.role, t.text) for t in store.turns(session)] == [
        ("user", "¿Dónde está mi pedido NW-12345?"),
        ("assistant", "Su pedido está en camino."),
    ]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reset_starts_a_new_conversation_and_keeps_the_old_one(tmp_path):
    store = Store(tmp_path / "c.sqlite3")
    session = store.session("s")
    store.add_turn(session, "user", "hello")
    store.update_session("s", state="handoff")
    store.reset("s")
    after = store.session("s")
    assert after.conversation == 2 and after.state == "bot" and store.turns(after) == []
    assert store.turns(session)[0].text == "hello"
    with pytest.raises(ValueError, match="state"):
        store.update_session("s", state="sleeping")


def test_corrupt_database_names_the_file_and_the_fix(tmp_path):
    db = tmp_path / "broken.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as error:
        Store(db)
    assert str(db) in str(error.value) and "mv " in str(error.value)


V1_SCHEMA = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, language TEXT, state TEXT NOT NULL DEFAULT 'bot',
    conversation INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id),
    conversation INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user', 'assistant')), text TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'notice')), language TEXT, intent TEXT,
    adapter TEXT, created REAL NOT NULL);
CREATE INDEX turns_by_session ON turns (session_id, conversation, id);
INSERT INTO sessions VALUES ('old', 'fr', 'bot', 1, 0, 0);
INSERT INTO turns (session_id, conversation, role, text, created) VALUES ('old', 1, 'user', 'Bonjour', 0);
PRAGMA user_version=1;
"""


def test_a_version_1_database_is_upgraded_without_losing_turns(tmp_path):
    import sqlite3

    db = tmp_path / "v1.sqlite3"
    sqlite3.connect(db).executescript(V1_SCHEMA)
    store = Store(db)
    session = store.session("old")
    assert session.language == "fr" and session.pinned_language is None
    assert [t.text for t in store.turns(session)] == ["Bonjour"]
    store.add_turn(session, "assistant", "Merci de votre patience.", kind="agent")
    store.pin_language("old", "de")
    store.add_agent_thread("agents:42", "old")
    assert store.session("old").pinned_language == "de" and store.agent_thread("agents:42") == "old"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 2
