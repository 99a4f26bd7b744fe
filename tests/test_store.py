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
