"""The panel's durable state: one SQLite database (WAL) with messages, reports, tallies, runs, sweeps and human
judging sets (whose stored answers triggers keep from ever changing or going).

Why SQLite (docs/design.md §5, "Durable results"): embedded, no server to run, durable across restarts, and the
process's memory is bounded by SQLite's page cache whatever the number of rows. The panel writes through ONE
connection, from its event loop only; an export opens its own read-only connection in a worker thread (WAL lets
readers run beside the writer). ``synchronous=NORMAL`` in WAL mode makes a commit an append to the log without an
fsync: a power cut may lose the last commits, a process crash loses none.

One panel per database: the file is locked (``<db>.lock``) so that a second panel on it fails at start-up with a
clear message instead of marking the first one's runs interrupted.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MEMORY = ":memory:"
PAGE_CACHE_KIB = 8 * 1024  # SQLite's page cache: the bound on the database's share of the panel's memory
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, label INTEGER, run_id TEXT, idx INTEGER,
    created REAL NOT NULL, expected TEXT);
CREATE INDEX IF NOT EXISTS messages_by_run ON messages(run_id, idx) WHERE run_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER NOT NULL, listener TEXT NOT NULL, role TEXT NOT NULL, method TEXT NOT NULL, label INTEGER,
    lost INTEGER NOT NULL, latency_ms REAL NOT NULL, abar_eff REAL NOT NULL, error TEXT NOT NULL,
    reconstruction INTEGER NOT NULL, judges TEXT, PRIMARY KEY (seq, listener)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tallies (
    scope TEXT NOT NULL, listener TEXT NOT NULL, role TEXT NOT NULL, method TEXT NOT NULL, reports INTEGER NOT NULL,
    labelled INTEGER NOT NULL, correct INTEGER NOT NULL, lost INTEGER NOT NULL, last_error TEXT, judges TEXT,
    PRIMARY KEY (scope, listener)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS judging_sets (
    id TEXT PRIMARY KEY, pool TEXT NOT NULL, created REAL NOT NULL, items INTEGER NOT NULL, exported REAL,
    card TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS judging_items (
    set_id TEXT NOT NULL, pos INTEGER NOT NULL, kind TEXT NOT NULL, pool_index INTEGER NOT NULL,
    truth INTEGER NOT NULL, judges TEXT NOT NULL, image BLOB NOT NULL, answer INTEGER, answered REAL, source TEXT,
    PRIMARY KEY (set_id, pos)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS judging_answers_are_final BEFORE UPDATE OF answer ON judging_items
    WHEN OLD.answer IS NOT NULL BEGIN SELECT RAISE(ABORT, 'a stored answer is final'); END;
CREATE TRIGGER IF NOT EXISTS judging_items_are_kept BEFORE DELETE ON judging_items
    WHEN OLD.answer IS NOT NULL BEGIN SELECT RAISE(ABORT, 'an answered item is kept'); END;
"""
# Columns added since the first schema: (table, column, type). A database written before them gains them at start-up.
ADDED_COLUMNS = (("outcomes", "judges", "TEXT"), ("tallies", "judges", "TEXT"), ("tallies", "threat_model", "TEXT"))


class StoreError(RuntimeError):
    """The database cannot be used (locked by another panel, not writable, not a database)."""


def default_db_path() -> Path:
    """``$XDG_STATE_HOME/diffsem/panel.db`` (``~/.local/state/diffsem/panel.db`` when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "diffsem" / "panel.db"


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the panel's pragmas; autocommit mode (transactions are explicit, see Store.transaction)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        # check_same_thread=False: the panel may open the database before its event loop's thread exists (a test
        # client runs the loop in another thread); from then on only that loop uses it.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    return conn


class Store:
    """The database file and its one writing connection. Use from the panel's event loop only."""

    def __init__(self, path: str | Path = MEMORY):
        self.path = str(path)
        self._lock_file = None
        if self.path != MEMORY:
            self._take_lock(Path(self.path))
        try:
            self.conn = connect(self.path)
            self.conn.executescript(SCHEMA)
            self._add_columns()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use {self.path} as the panel's database: {exc}") from None

    def _take_lock(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held while open
        except OSError as exc:
            raise StoreError(f"cannot create the panel's database {path}: {exc}; give a writable --db or "
                             "$DIFFSEM_DB") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"the database {path} is in use by another control panel; give each panel its own "
                             "--db (or $DIFFSEM_DB)") from None

    def _add_columns(self) -> None:
        """Bring a database from an older panel up to :data:`SCHEMA` (new columns are nullable)."""
        for table, column, kind in ADDED_COLUMNS:
            have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self.conn.close()
        if self._lock_file is not None:
            self._lock_file.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN ... COMMIT (ROLLBACK on an exception): one WAL append per call."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- counters ------------------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters").fetchall())

    def save_counters(self, values: dict[str, int]) -> None:
        """Inside a transaction: upsert each counter."""
        self.conn.executemany("INSERT INTO counters(name, value) VALUES (?, ?) "
                              "ON CONFLICT(name) DO UPDATE SET value=excluded.value", list(values.items()))

    # ---- documents (runs, sweeps): small JSON records by kind and id --------------------------------------
    def save_doc(self, kind: str, doc_id: str, body: dict[str, Any], created: float) -> None:
        self.conn.execute("INSERT INTO docs(kind, id, created, body) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT(kind, id) DO UPDATE SET body=excluded.body", (kind, doc_id, created,
                                                                                     json.dumps(body)))

    def load_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT body FROM docs WHERE kind=? AND id=?", (kind, doc_id)).fetchone()
        return json.loads(row[0]) if row else None

    def list_docs(self, kind: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT body FROM docs WHERE kind=? ORDER BY created DESC, id LIMIT ? OFFSET ?",
                                 (kind, limit, offset)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def delete_doc(self, kind: str, doc_id: str) -> bool:
        return self.conn.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, doc_id)).rowcount > 0

    def interrupt(self, kind: str, reason: str) -> int:
        """Mark the documents of ``kind`` left queued or running by a previous panel as ``interrupted``."""
        with self.transaction() as c:
            return c.execute("UPDATE docs SET body=json_set(body, '$.status', 'interrupted', '$.error', ?) "
                             "WHERE kind=? AND json_extract(body, '$.status') IN ('queued', 'running')",
                             (reason, kind)).rowcount

    # ---- retention -----------------------------------------------------------------------------------------
    def prune_messages(self, keep: int) -> int:
        """Delete all but the newest ``keep`` messages and their reports (tallies keep their counts)."""
        newest = self.conn.execute("SELECT MAX(seq) FROM messages").fetchone()[0]
        if newest is None or newest <= keep:
            return 0
        cutoff = newest - keep
        with self.transaction() as c:
            c.execute("DELETE FROM outcomes WHERE seq <= ?", (cutoff,))
            return c.execute("DELETE FROM messages WHERE seq <= ?", (cutoff,)).rowcount
