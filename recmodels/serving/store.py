"""The per-user state store: a SQLite file in WAL mode for what is small or searched, and a file of fixed-width
state rows beside it for the model states, which are big (RecMamba's 2 layers: 19 KB a user).

Why SQLite WAL (measured in ``benchmarks/serving.py``): readers never block and never see a half-written row
(they read the last committed snapshot), a writer's ``BEGIN IMMEDIATE`` transaction makes each batch's
read-modify-write of a user atomic across threads and processes, a killed process leaves every row as it
was before or after its last commit, and a point read costs microseconds. DuckDB is columnar: point reads
and single-row updates of wide rows are an order of magnitude slower, and only one process may open a file
for writing.

Why the states live outside SQLite: a batch of 1,000 users rewrote 19 MB of BLOBs through SQLite's overflow
pages and then checkpointed them (about 100 ms a batch); a gather and a write of the same bytes in a file of
fixed-width rows (``state_rows.py``) take about 7 ms, before the sync below. Each user owns a slot of two copies
in ``<store>.rows``; a write fills the copy that is not current and the same SQLite transaction flips
``users.copy`` to it, so a killed process leaves every user's state as of its last commit, like the rest of
the row. Only writers (inside ``write()``, one at a time) read states; recommendations read ``hidden`` from
SQLite.

Why a power cut loses nothing acknowledged: before its COMMIT a batch syncs the rows file (one ``fdatasync``,
cheaper than flushing each written row's pages through the mapping: 26 against 80 ms for 1,000 rows of 19 KB, 3
against 4 ms for 10), so the copies a commit makes current are on disk before the commit is; and the commit runs
with ``synchronous=FULL`` (the WAL is synced before COMMIT returns), so a commit acknowledged is never lost. A
later batch overwrites a user's other copy only after the commit that made it the other copy is durable, so no
commit a power cut leaves points at a copy being overwritten. (Under ``NORMAL`` a power cut may drop the last
commits, and the copies they pointed away from may already hold a later batch's half-written states.) The price,
measured on 2 cores (ext4 on a virtual disk): a 1,000-event batch took 62-74 ms against 34-39 ms unsynced,
mostly writing its 19 MB of states; a 10-event batch 1.2-1.6 ms against 0.6-0.7.

Writers take turns on ``write_lock.py``'s lock, waiting at most ``lock_timeout_s``; SQLite's busy timeout is the
same, and only a process writing around that lock (the ``sqlite3`` shell) can make it count.

Tables: ``users`` (``slot``, ``copy``, ``hidden`` (float32, the last hidden vector), ``last_ts`` and
``last_items`` (the items at ``last_ts``: with timestamp order, all an O(1) duplicate check needs),
``events`` applied); ``seen`` (slot, item): one row per distinct item a user has seen, appended as events
arrive, so an update costs the same whatever the history length; ``journal``: every applied event, in the
order applied; ``meta``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recmodels.serving.state_rows import StateRows
from recmodels.serving.write_lock import WriteLock, lock_timeout_from_environment

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user TEXT PRIMARY KEY, slot INTEGER NOT NULL UNIQUE, copy INTEGER NOT NULL, hidden BLOB NOT NULL,
    last_ts INTEGER NOT NULL, last_items BLOB NOT NULL, events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (slot INTEGER NOT NULL, item INTEGER NOT NULL, PRIMARY KEY (slot, item))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, user TEXT NOT NULL, item INTEGER NOT NULL,
    ts INTEGER NOT NULL);
"""
USER_COLUMNS = "user, slot, copy, hidden, last_ts, last_items, events"
SELECT_USERS = "SELECT {columns} FROM users WHERE user IN ({marks})"
USERS_PER_SELECT = 4_096  # bound parameters per statement stay far below SQLite's limit (32,766)
INSERT_USER = f"INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
UPDATE_USER = "UPDATE users SET copy = ?, hidden = ?, last_ts = ?, last_items = ?, events = ? WHERE slot = ?"
SEEN_AMONG = "SELECT item FROM seen WHERE slot = ? AND item IN (SELECT value FROM json_each(?))"
APPEND_JOURNAL = "INSERT INTO journal (user, item, ts) VALUES (?, ?, ?)"
# Checkpoint the WAL into the file every ~40 MB rather than SQLite's 4 MB: pages a stream of batches keeps
# rewriting (users, seen) are copied back once per checkpoint, not once per batch (~7% of a 1,000-event batch).
WAL_CHECKPOINT_PAGES = 10_000
RETIRED_KEY = "retired_at"  # meta key set when a rebuilt store replaces this one
STATE_BYTES_KEY = "state_bytes"  # meta key: the width of one state copy in the rows file
NO_TIMESTAMP = int(np.iinfo(np.int64).min)  # last_ts of a user with no event yet


class StoreRetired(RuntimeError):
    """This store was replaced by a rebuilt one: nothing more may be written to it (write to the new one)."""


@dataclass
class UserRow:
    """One user's stored summary (numpy arrays decoded from the BLOBs and the rows file)."""

    user: str
    state: np.ndarray
    hidden: np.ndarray  # (D,) float32
    last_ts: int
    last_items: np.ndarray  # int32 items applied at last_ts
    events: int
    slot: int = -1  # the user's place in the rows file; -1 until first written
    copy: int = 1  # which of the slot's two copies holds the committed state


def rows_path(path: Path) -> Path:
    """The states file beside a store file: ``states.sqlite`` -> ``states.rows``."""
    return Path(path).with_suffix(".rows")


class StateStore:
    """A store opened by one process; every thread gets its own SQLite connection (SQLite's rule). A writer waits
    at most ``lock_timeout_s`` for another's turn (default: ``RECMAMBA_LOCK_TIMEOUT_S``, else 10 s), then raises
    ``StoreBusy``."""

    def __init__(self, path: Path, state_dtype: np.dtype, lock_timeout_s: float | None = None) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"state store {path} does not exist: materialize the user_states asset first")
        self.path = Path(path)
        self.state_dtype = np.dtype(state_dtype)
        self._local = threading.local()
        self.lock_timeout_s = lock_timeout_from_environment() if lock_timeout_s is None else lock_timeout_s
        self.write_lock = WriteLock(self.path.with_suffix(".lock"), self.lock_timeout_s)
        meta = self.meta()
        if STATE_BYTES_KEY not in meta:
            raise ValueError(f"{path} was built by an older recmamba (states inside SQLite): materialize user_states")
        self.state_bytes = int(meta[STATE_BYTES_KEY])
        if self.state_bytes % self.state_dtype.itemsize:
            raise ValueError(f"{path}: states of {self.state_bytes} bytes are not rows of {self.state_dtype}")
        self.rows = StateRows(rows_path(self.path), self.state_dtype, self.state_bytes // self.state_dtype.itemsize)

    @classmethod
    def create(cls, path: Path, state_dtype: np.dtype, state_width: int, meta: dict[str, str]) -> StateStore:
        """A new, empty store at ``path`` (which must not exist) for states of ``state_width`` values."""
        path = Path(path)
        if path.exists() or rows_path(path).exists():
            raise FileExistsError(f"{path} already exists: a new store is always built in a fresh file")
        StateRows.create(rows_path(path), state_dtype, state_width)
        state_bytes = int(state_width) * np.dtype(state_dtype).itemsize
        with contextlib.closing(sqlite3.connect(path)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)", sorted({**meta, STATE_BYTES_KEY: str(state_bytes)}.items())
            )
            con.commit()
        return cls(path, state_dtype)

    @property
    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "connection", None)
        if con is None:
            # Writers take turns on write_lock first: SQLite's lock is then free but for processes writing
            # around it, and waiting for it no longer than for write_lock keeps a write's wait bounded.
            con = sqlite3.connect(self.path, timeout=self.lock_timeout_s, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # a commit acknowledged survives a power cut (module docstring)
            con.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
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

    def users_after(self, ts: int) -> int:
        """How many users' last applied event is later than ``ts``."""
        return int(self.connection.execute("SELECT count(*) FROM users WHERE last_ts > ?", (ts,)).fetchone()[0])

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction; ``BEGIN IMMEDIATE`` takes the write lock before reading, so a
        read-modify-write of a user can never interleave with another writer's. Raises ``StoreRetired``
        once a rebuilt store has replaced this one, ``StoreBusy`` when the lock stays held past its wait."""
        con = self.connection
        with self.write_lock.held():
            con.execute("BEGIN IMMEDIATE")
            if con.execute("SELECT 1 FROM meta WHERE key = ?", (RETIRED_KEY,)).fetchone() is not None:
                con.execute("ROLLBACK")
                raise StoreRetired(f"{self.path} was replaced by a rebuilt store")
            self._local.written = set()
            try:
                yield con
                if self._local.written:
                    self.rows.sync()  # the states this commit makes current reach the disk before it
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def retire(self, when: str) -> None:
        """Refuse every later ``write()`` (call inside ``write()``, once the rebuilt store has what this one
        applied): a writer that finds its store retired writes to the new one instead."""
        self.connection.execute("INSERT INTO meta VALUES (?, ?)", (RETIRED_KEY, when))

    def hidden(self, user: str) -> tuple[int, int, np.ndarray] | None:
        """(slot, events applied, last hidden vector) of a user, or None: all a recommendation reads (the count
        tells whether an answer computed before still holds)."""
        row = self.connection.execute("SELECT slot, events, hidden FROM users WHERE user = ?", (user,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), np.frombuffer(row[2], np.float32).copy())

    def get(self, user: str) -> UserRow | None:
        return self.get_many([user]).get(user)

    def get_many(self, users: Iterable[str]) -> dict[str, UserRow]:
        """The stored users among ``users``, in one statement (call inside ``write()`` when the states are
        to be advanced: outside it, a concurrent writer may be filling the copy read next)."""
        users = list(users)
        found = []
        for start in range(0, len(users), USERS_PER_SELECT):
            chunk = users[start : start + USERS_PER_SELECT]
            query = SELECT_USERS.format(columns=USER_COLUMNS, marks=", ".join("?" * len(chunk)))
            found += self.connection.execute(query, chunk).fetchall()
        slots = np.array([row[1] for row in found], np.int64)
        states = self.rows.read(slots, np.array([row[2] for row in found], np.int64))
        rows = {}
        for b, (user, slot, copy, hidden, last_ts, last_items, events) in enumerate(found):
            rows[user] = UserRow(
                user=user,
                state=states[b],
                hidden=np.frombuffer(hidden, np.float32).copy(),
                last_ts=int(last_ts),
                last_items=np.frombuffer(last_items, np.int32),
                events=int(events),
                slot=int(slot),
                copy=int(copy),
            )
        return rows

    def put_many(self, rows: Iterable[UserRow], states: np.ndarray | None = None) -> None:
        """Write rows (call inside ``write()``): each state into its slot's other copy, new users into new
        slots; ``row.slot`` and ``row.copy`` then name what the commit makes current. ``states`` (B, S), when
        the caller holds the rows' states as one array, saves copying them into one."""
        rows = list(rows)
        stored = [row for row in rows if row.slot >= 0]
        new = [row for row in rows if row.slot < 0]
        if new:
            first = int(self.connection.execute("SELECT coalesce(max(slot) + 1, 0) FROM users").fetchone()[0])
            for slot, row in enumerate(new, start=first):
                row.slot, row.copy = slot, 1
        self._write_states(rows, states)
        self.connection.executemany(UPDATE_USER, ((*self._encode(row)[2:], row.slot) for row in stored))
        self.connection.executemany(INSERT_USER, (self._encode(row) for row in new))

    def add_seen(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Record (slot, item) pairs as seen (call inside ``write()``); pairs already there are kept once."""
        self.connection.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", pairs)

    def seen_among(self, slot: int, items: np.ndarray) -> set[int]:
        """The ones of ``items`` the user of ``slot`` has seen: a lookup per item, whatever the history."""
        listed = "[" + ",".join(map(str, items.tolist())) + "]"
        return {item for (item,) in self.connection.execute(SEEN_AMONG, (slot, listed))}

    def seen(self, user: str) -> np.ndarray:
        """Every distinct item ``user`` has seen, sorted."""
        query = "SELECT item FROM seen JOIN users USING (slot) WHERE user = ? ORDER BY item"
        return np.array([item for (item,) in self.connection.execute(query, (user,))], dtype=np.int32)

    def append_journal(self, events: Iterable[tuple[str, int, int]]) -> None:
        """Record applied (user, item, ts) in application order (call inside ``write()``)."""
        self.connection.executemany(APPEND_JOURNAL, events)

    def journal(self, user: str) -> list[tuple[int, int]]:
        """(item, ts) of every event applied to ``user``, in the order applied."""
        query = "SELECT item, ts FROM journal WHERE user = ? ORDER BY seq"
        return [(int(i), int(t)) for i, t in self.connection.execute(query, (user,))]

    def _write_states(self, rows: list[UserRow], states: np.ndarray | None) -> None:
        """Fill each row's copy that is not current. A second write of a user in one transaction would
        overwrite its committed copy, which a rollback must still find, so it is refused."""
        if not rows:
            return
        slots = np.array([row.slot for row in rows], np.int64)
        if self._local.written.intersection(slots.tolist()) or len(np.unique(slots)) < len(slots):
            raise RuntimeError("a user was written twice in one transaction")
        self._local.written.update(slots.tolist())
        if states is None:
            states = np.stack([np.asarray(row.state, self.state_dtype) for row in rows])
        if states.dtype != self.state_dtype or states.shape[1] * states.itemsize != self.state_bytes:
            held = f"{self.state_bytes} bytes of {self.state_dtype}"
            raise ValueError(f"states of {states.dtype} x {states.shape[1]}; the store holds {held}")
        for row in rows:
            row.copy = 1 - row.copy
        self.rows.write(slots, np.array([row.copy for row in rows]), states)

    def _encode(self, row: UserRow) -> tuple:
        return (
            row.user,
            row.slot,
            row.copy,
            np.ascontiguousarray(row.hidden, np.float32).tobytes(),
            int(row.last_ts),
            np.ascontiguousarray(row.last_items, np.int32).tobytes(),
            int(row.events),
        )
