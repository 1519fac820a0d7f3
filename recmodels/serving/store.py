"""The per-user state store: one SQLite file in WAL mode, one row per user with binary (BLOB) columns.

Why SQLite WAL (measured in ``benchmarks/serving.py``): readers never block and never see a half-written row
(they read the last committed snapshot), a writer's ``BEGIN IMMEDIATE`` transaction makes each batch's
read-modify-write of a user atomic across threads and processes, a killed process leaves every row as it
was before or after its last commit, and a point read of a 20 KB BLOB row costs microseconds. DuckDB is
columnar: point reads and single-row updates of wide rows are an order of magnitude slower, and only one
process may open a file for writing.

Rows: ``state`` (the engine's flat row), ``hidden`` (float32, the last hidden vector), ``seen`` (sorted
distinct int32 item ids, for ``exclude_seen``), ``last_ts`` and ``last_items`` (the items at ``last_ts``:
with timestamp order, these are all an O(1) duplicate check needs), ``events`` (events applied). Every
applied event is also appended to ``journal``, the order in which the store applied them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user TEXT PRIMARY KEY, state BLOB NOT NULL, hidden BLOB NOT NULL, seen BLOB NOT NULL,
    last_ts INTEGER NOT NULL, last_items BLOB NOT NULL, events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, user TEXT NOT NULL, item INTEGER NOT NULL,
    ts INTEGER NOT NULL);
"""
SELECT_USER = "SELECT user, state, hidden, seen, last_ts, last_items, events FROM users WHERE user = ?"
UPSERT_USER = "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?)"
APPEND_JOURNAL = "INSERT INTO journal (user, item, ts) VALUES (?, ?, ?)"
BUSY_TIMEOUT_MS = 60_000  # a writer waits this long for another writer's transaction before failing
RETIRED_KEY = "retired_at"  # meta key set when a rebuilt store replaces this one


class StoreRetired(RuntimeError):
    """This store was replaced by a rebuilt one: nothing more may be written to it (write to the new one)."""


@dataclass
class UserRow:
    """One user's stored summary (numpy arrays decoded from the BLOBs)."""

    user: str
    state: np.ndarray
    hidden: np.ndarray  # (D,) float32
    seen: np.ndarray  # sorted distinct item ids, int32
    last_ts: int
    last_items: np.ndarray  # int32 items applied at last_ts
    events: int


class StateStore:
    """A store file opened by one process; every thread gets its own connection (SQLite's rule)."""

    def __init__(self, path: Path, state_dtype: np.dtype) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"state store {path} does not exist: materialize the user_states asset first")
        self.path = Path(path)
        self.state_dtype = np.dtype(state_dtype)
        self._local = threading.local()

    @classmethod
    def create(cls, path: Path, state_dtype: np.dtype, meta: dict[str, str]) -> StateStore:
        """A new, empty store at ``path`` (which must not exist) stamped with ``meta``."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists: a new store is always built in a fresh file")
        with contextlib.closing(sqlite3.connect(path)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            con.commit()
        return cls(path, state_dtype)

    @property
    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "connection", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit is atomic and durable against a killed process; only a power cut
            # may lose the last commits (never corrupt the file).
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "connection", None)
        if con is not None:
            con.close()
            self._local.connection = None

    def meta(self) -> dict[str, str]:
        return dict(self.connection.execute("SELECT key, value FROM meta").fetchall())

    def num_users(self) -> int:
        return int(self.connection.execute("SELECT count(*) FROM users").fetchone()[0])

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction; ``BEGIN IMMEDIATE`` takes the write lock before reading, so a
        read-modify-write of a user can never interleave with another writer's. Raises ``StoreRetired``
        once a rebuilt store has replaced this one."""
        con = self.connection
        con.execute("BEGIN IMMEDIATE")
        if con.execute("SELECT 1 FROM meta WHERE key = ?", (RETIRED_KEY,)).fetchone() is not None:
            con.execute("ROLLBACK")
            raise StoreRetired(f"{self.path} was replaced by a rebuilt store")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def retire(self, when: str) -> None:
        """Refuse every later ``write()`` (call inside ``write()``, once the rebuilt store has what this one
        applied): a writer that finds its store retired writes to the new one instead."""
        self.connection.execute("INSERT INTO meta VALUES (?, ?)", (RETIRED_KEY, when))

    def get(self, user: str) -> UserRow | None:
        row = self.connection.execute(SELECT_USER, (user,)).fetchone()
        return None if row is None else self._decode(row)

    def get_many(self, users: Iterable[str]) -> dict[str, UserRow]:
        con = self.connection
        found = {}
        for user in users:
            row = con.execute(SELECT_USER, (user,)).fetchone()
            if row is not None:
                found[user] = self._decode(row)
        return found

    def put_many(self, rows: Iterable[UserRow]) -> None:
        """Write rows (call inside ``write()``)."""
        self.connection.executemany(UPSERT_USER, (self._encode(row) for row in rows))

    def append_journal(self, events: Iterable[tuple[str, int, int]]) -> None:
        """Record applied (user, item, ts) in application order (call inside ``write()``)."""
        self.connection.executemany(APPEND_JOURNAL, events)

    def journal(self, user: str) -> list[tuple[int, int]]:
        """(item, ts) of every event applied to ``user``, in the order applied."""
        query = "SELECT item, ts FROM journal WHERE user = ? ORDER BY seq"
        return [(int(i), int(t)) for i, t in self.connection.execute(query, (user,))]

    def _encode(self, row: UserRow) -> tuple:
        return (
            row.user,
            np.ascontiguousarray(row.state, self.state_dtype).tobytes(),
            np.ascontiguousarray(row.hidden, np.float32).tobytes(),
            np.ascontiguousarray(row.seen, np.int32).tobytes(),
            int(row.last_ts),
            np.ascontiguousarray(row.last_items, np.int32).tobytes(),
            int(row.events),
        )

    def _decode(self, row: tuple) -> UserRow:
        user, state, hidden, seen, last_ts, last_items, events = row
        return UserRow(
            user=user,
            state=np.frombuffer(state, self.state_dtype).copy(),
            hidden=np.frombuffer(hidden, np.float32).copy(),
            seen=np.frombuffer(seen, np.int32),
            last_ts=int(last_ts),
            last_items=np.frombuffer(last_items, np.int32),
            events=int(events),
        )
