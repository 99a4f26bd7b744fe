"""Sessions and full transcripts in SQLite.

WAL mode and a commit per write: every turn is on disk before the reply streams, so a
killed process loses at most the reply it was writing, and a restart sees the rest.
"""

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    language TEXT,                      -- the conversation's language so far (ISO 639-1)
    state TEXT NOT NULL DEFAULT 'bot',  -- 'bot', or 'handoff' once a human agent takes over
    conversation INTEGER NOT NULL DEFAULT 1,  -- bumped by /reset; old turns are kept
    created REAL NOT NULL,
    updated REAL NOT NULL,
    pinned_language TEXT                -- set by the customer (/lang xx); wins over detection
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    conversation INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'notice', 'agent')),
    language TEXT,
    intent TEXT,
    adapter TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns (session_id, conversation, id);
-- Messages shown to human agents (e.g. a handoff summary in an agents' chat), so that an
-- agent's answer to one of them finds its way back to the customer's session.
CREATE TABLE IF NOT EXISTS agent_threads (
    message_ref TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    created REAL NOT NULL
);
"""
# Upgrades from an older version: SQL run before and after creating the current schema.
MIGRATIONS: dict[int, tuple[str, str]] = {
    1: (
        """ALTER TABLE sessions ADD COLUMN pinned_language TEXT;
        ALTER TABLE turns RENAME TO turns_v1;
        DROP INDEX turns_by_session;""",
        """INSERT INTO turns SELECT * FROM turns_v1;
        DROP TABLE turns_v1;""",
    ),
}
STATES = ("bot", "handoff")


class StoreError(RuntimeError):
    """A database file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Session:
    id: str
    language: str | None
    state: str
    conversation: int
    pinned_language: str | None = None


@dataclass(frozen=True)
class StoredTurn:
    role: str
    text: str
    kind: str
    language: str | None
    intent: str | None
    adapter: str | None


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the server's threads, serialised by a lock.
        self.lock = threading.Lock()
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer babelbot (schema {version} > {SCHEMA_VERSION}); upgrade babelbot."
                )
            self._migrate(version)
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"Cannot open the conversation database {self.path}: {error}. If the file is damaged, move it "
                f"aside (`mv {self.path} {self.path}.broken`) and start again; `sqlite3 {self.path}.broken .recover` "
                "may save its conversations."
            ) from None

    def _migrate(self, version: int) -> None:
        """Bring the file to SCHEMA_VERSION in one transaction; a new file gets the schema."""
        if version == SCHEMA_VERSION:
            return
        before, after = MIGRATIONS.get(version, ("", ""))
        try:
            self.db.executescript(
                f"BEGIN IMMEDIATE; {before} {SCHEMA} {after} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        except sqlite3.Error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def session(self, session_id: str) -> Session:
        """The session, created on first use."""
        now = time.time()
        with self.lock:
            self.db.execute(
                "INSERT OR IGNORE INTO sessions (id, created, updated) VALUES (?, ?, ?)", (session_id, now, now)
            )
            row = self.db.execute(
                "SELECT id, language, state, conversation, pinned_language FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return Session(*row)

    def update_session(self, session_id: str, *, language: str | None = None, state: str | None = None) -> None:
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        with self.lock:
            self.db.execute(
                "UPDATE sessions SET language = COALESCE(?, language), state = COALESCE(?, state), updated = ? "
                "WHERE id = ?",
                (language, state, time.time(), session_id),
            )

    def pin_language(self, session_id: str, language: str | None) -> None:
        """Answer in `language` whatever the messages look like; None detects again."""
        with self.lock:
            self.db.execute(
                "UPDATE sessions SET pinned_language = ?, updated = ? WHERE id = ?", (language, time.time(), session_id)
            )

    def add_agent_thread(self, message_ref: str, session_id: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO agent_threads (message_ref, session_id, created) VALUES (?, ?, ?)",
                (message_ref, session_id, time.time()),
            )

    def agent_thread(self, message_ref: str) -> str | None:
        """The session an agents' message belongs to, if it is one we showed them."""
        with self.lock:
            row = self.db.execute("SELECT session_id FROM agent_threads WHERE message_ref = ?", (message_ref,)).fetchone()
        return row[0] if row else None

    def reset(self, session_id: str) -> None:
        """Start a new conversation in the session; the old transcript stays in the database."""
        with self.lock:
            self.db.execute(
                "UPDATE sessions SET conversation = conversation + 1, state = 'bot', updated = ? WHERE id = ?",
                (time.time(), session_id),
            )

    def add_turn(
        self,
        session: Session,
        role: str,
        text: str,
        *,
        kind: str = "message",
        language: str | None = None,
        intent: str | None = None,
        adapter: str | None = None,
    ) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO turns (session_id, conversation, role, text, kind, language, intent, adapter, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.conversation, role, text, kind, language, intent, adapter, time.time()),
            )

    def turns(self, session: Session) -> list[StoredTurn]:
        """The turns of the session's current conversation, oldest first."""
        with self.lock:
            rows = self.db.execute(
                "SELECT role, text, kind, language, intent, adapter FROM turns "
                "WHERE session_id = ? AND conversation = ? ORDER BY id",
                (session.id, session.conversation),
            ).fetchall()
        return [StoredTurn(*row) for row in rows]
