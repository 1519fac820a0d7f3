"""The store's journal beyond one store's life: read in order to carry it over to a rebuilt store, and kept bounded.

A rebuild encodes every user's history from the warehouse's split, then applies the old store's journal on top;
so the journal only has to hold what the split may not: events newer than the newest event of the split the
store was built from (its horizon, ``split_horizon_ms`` in the store's meta). Older rows are deleted by a
retention policy (age, measured on event time, and size), which the ``user_states`` asset records in the meta
too, so the inbox job compacts with the same policy.

Every applied event also becomes part of the log of record: the pipelines write the journal out as day files
of the dataset's landing data and record the last row written (``landed_seq`` in the meta); compaction never
deletes a row after it, so no event is forgotten before the warehouse can ingest it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from recmodels.serving.store import StateStore

HORIZON_KEY = "split_horizon_ms"  # meta: the newest event time of the split the store was built from
MAX_AGE_KEY = "journal_max_age_days"
MAX_ROWS_KEY = "journal_max_rows"
LANDED_KEY = "landed_seq"  # meta: the last journal row written out as landing data (0: none yet)
DAY_MS = 86_400_000
NO_HORIZON = int(np.iinfo(np.int64).min)  # a store built without one: every row may still be needed

SELECT_AFTER = "SELECT seq, user, item, ts FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
# What compaction may delete: no row a rebuild needs (after the horizon), none not yet landed, nor the last applied.
DELETE_OLDER = """
DELETE FROM journal WHERE ts < :age_limit AND ts <= :horizon AND seq <= :landed AND seq < :last_seq"""
DELETE_EARLIEST = """
DELETE FROM journal WHERE seq IN (
    SELECT seq FROM journal WHERE ts <= :horizon AND seq <= :landed AND seq < :last_seq ORDER BY seq LIMIT :excess
)"""
NTH_NEWEST_SEQ = "SELECT seq FROM journal ORDER BY seq DESC LIMIT 1 OFFSET ?"
COUNT_KEPT = """
SELECT count(*) FROM journal
WHERE (ts > :horizon OR seq > :landed) AND (ts < :age_limit OR seq < :size_limit)"""


@dataclass(frozen=True)
class JournalPolicy:
    """How much journal a store keeps (rows a rebuild still needs are kept whatever the policy)."""

    max_age_days: int = 30  # rows older than the newest row's event time minus this are deleted
    max_rows: int = 10_000_000  # beyond this, the earliest applied rows are deleted

    def as_meta(self) -> dict[str, str]:
        return {MAX_AGE_KEY: str(self.max_age_days), MAX_ROWS_KEY: str(self.max_rows)}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> JournalPolicy:
        """The policy a store was built with (the defaults for a store built before policies were recorded)."""
        default = cls()
        return cls(int(meta.get(MAX_AGE_KEY, default.max_age_days)), int(meta.get(MAX_ROWS_KEY, default.max_rows)))


@dataclass(frozen=True)
class CompactionReport:
    deleted_by_age: int
    deleted_by_size: int
    kept_for_rebuild: int  # rows the policy would delete, kept: newer than the split, or not yet landed
    rows: int  # rows left

    @property
    def deleted(self) -> int:
        return self.deleted_by_age + self.deleted_by_size


def rebuild_horizon(meta: dict[str, str]) -> int:
    """The newest event time the store's split holds; rows after it exist nowhere else a rebuild reads."""
    return int(meta.get(HORIZON_KEY, NO_HORIZON))


def landed_seq(meta: dict[str, str]) -> int:
    """The last journal row already written out as landing data."""
    return int(meta.get(LANDED_KEY, 0))


def record_landed(store: StateStore, seq: int) -> None:
    """Record that every journal row up to ``seq`` is landing data now (never moves back)."""
    with store.write() as con:
        con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), ?)",
            (LANDED_KEY, str(seq), seq),
        )


def last_seq(store: StateStore) -> int:
    """The sequence number of the last applied journal row (0 when none)."""
    return int(store.connection.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])


def journal_after(store: StateStore, seq: int, limit: int) -> list[tuple[int, str, int, int]]:
    """Up to ``limit`` rows (seq, user, item, ts) applied after row ``seq``, in the order applied."""
    return store.connection.execute(SELECT_AFTER, (seq, limit)).fetchall()


def compact_journal(store: StateStore, policy: JournalPolicy) -> CompactionReport:
    """Delete journal rows by ``policy``, never one newer than the store's horizon or not yet landed, in one
    transaction.

    The last applied row always stays, so that sequence numbers keep growing: a publish carries the rows
    after the last one it carried, and a reused number would be skipped.
    """
    meta = store.meta()
    horizon, landed = rebuild_horizon(meta), landed_seq(meta)
    with store.write() as con:
        newest_ts, last_seq = con.execute("SELECT max(ts), max(seq) FROM journal").fetchone()
        if last_seq is None:
            return CompactionReport(0, 0, 0, 0)
        age_limit = newest_ts - policy.max_age_days * DAY_MS
        bounds = {"horizon": horizon, "landed": landed, "last_seq": last_seq, "age_limit": age_limit}
        by_age = con.execute(DELETE_OLDER, bounds).rowcount
        excess = max(count_rows(con) - policy.max_rows, 0)
        by_size = con.execute(DELETE_EARLIEST, {**bounds, "excess": excess}).rowcount
        nth_newest = con.execute(NTH_NEWEST_SEQ, (policy.max_rows - 1,)).fetchone()
        size_limit = nth_newest[0] if nth_newest else 0  # rows before it are beyond max_rows
        kept = con.execute(COUNT_KEPT, {**bounds, "size_limit": size_limit}).fetchone()[0]
        rows = count_rows(con)
    return CompactionReport(by_age, by_size, int(kept), rows)


def count_rows(con: sqlite3.Connection) -> int:
    return int(con.execute("SELECT count(*) FROM journal").fetchone()[0])
