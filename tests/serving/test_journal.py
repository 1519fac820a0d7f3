"""Journal compaction on real SQLite stores: by age, by size, and never a row newer than the store's split or not
yet landed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recmodels.serving.journal import DAY_MS, HORIZON_KEY, JournalPolicy, compact_journal, record_landed
from recmodels.serving.store import StateStore


def store_with_journal(path: Path, days: list[int], horizon_day: int | None, landed: int | None = None) -> StateStore:
    """A store whose journal holds one event per entry of ``days`` (event time in days), applied in that order,
    the first ``landed`` of them (all by default) written out as landing data."""
    meta = {} if horizon_day is None else {HORIZON_KEY: str(horizon_day * DAY_MS)}
    store = StateStore.create(path, np.float32, 4, meta)
    with store.write():
        store.append_journal((f"user-{n}", 1 + n, day * DAY_MS) for n, day in enumerate(days))
    record_landed(store, len(days) if landed is None else landed)
    return store


def journal_days(store: StateStore) -> list[int]:
    return [ts // DAY_MS for (ts,) in store.connection.execute("SELECT ts FROM journal ORDER BY seq")]


def test_rows_older_than_the_age_limit_are_deleted(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", list(range(10)), horizon_day=9)
    report = compact_journal(store, JournalPolicy(max_age_days=3, max_rows=100))
    assert journal_days(store) == [6, 7, 8, 9]  # 3 days before the newest row (day 9) is day 6
    assert (report.deleted_by_age, report.deleted_by_size, report.kept_for_rebuild, report.rows) == (6, 0, 0, 4)


def test_the_earliest_applied_rows_beyond_the_size_limit_are_deleted(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", [5, 1, 4, 2, 3, 0], horizon_day=9)
    report = compact_journal(store, JournalPolicy(max_age_days=30, max_rows=4))
    assert journal_days(store) == [4, 2, 3, 0]  # the order applied decides, not the event time
    assert (report.deleted_by_age, report.deleted_by_size, report.rows) == (0, 2, 4)


def test_rows_newer_than_the_split_are_kept_whatever_the_policy(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", list(range(10)), horizon_day=5)
    report = compact_journal(store, JournalPolicy(max_age_days=1, max_rows=1))
    assert journal_days(store) == [6, 7, 8, 9]
    assert report.deleted_by_age + report.deleted_by_size == 6
    assert report.kept_for_rebuild == 3  # days 6, 7 and 8 are past both limits; day 9 is within them


def test_a_store_without_a_recorded_horizon_keeps_its_whole_journal(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", list(range(10)), horizon_day=None)
    report = compact_journal(store, JournalPolicy(max_age_days=1, max_rows=1))
    assert journal_days(store) == list(range(10)) and report.kept_for_rebuild == 9


def test_rows_not_yet_landed_are_kept_whatever_the_policy(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", list(range(10)), horizon_day=9, landed=4)
    report = compact_journal(store, JournalPolicy(max_age_days=1, max_rows=1))
    assert journal_days(store) == [4, 5, 6, 7, 8, 9]
    assert report.kept_for_rebuild == 5  # days 4 to 8 are past both limits; day 9 is within them
    record_landed(store, 10)
    assert journal_days(store) == [4, 5, 6, 7, 8, 9] and compact_journal(store, JournalPolicy(1, 1)).rows == 1


def test_the_last_applied_row_stays_so_sequence_numbers_keep_growing(tmp_path):
    store = store_with_journal(tmp_path / "states.sqlite", [9, 0], horizon_day=9)
    compact_journal(store, JournalPolicy(max_age_days=1, max_rows=1))
    with store.write():
        store.append_journal([("late", 1, 0)])
    assert store.connection.execute("SELECT seq FROM journal ORDER BY seq").fetchall() == [(2,), (3,)]


def test_the_policy_travels_in_the_store_meta():
    policy = JournalPolicy(max_age_days=7, max_rows=1234)
    assert JournalPolicy.from_meta({"model": "recmamba", **policy.as_meta()}) == policy
    assert JournalPolicy.from_meta({}) == JournalPolicy()
