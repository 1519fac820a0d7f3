"""The sequences table is built a range of users at a time, so its memory follows the batch, not the log; any
batching gives the table one statement over every user gives, and a failed build keeps the previous table."""

import duckdb
import numpy as np
import pytest

from pipelines.data import events as events_module
from pipelines.data.events import build_sequences, memory_limit_bytes


@pytest.fixture
def con(tmp_path):
    """A warehouse whose ``events`` hold 9 users of 1-12 events, with timestamp ties broken by row id."""
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    rng = np.random.default_rng(0)
    rows = [
        (user, int(rng.integers(1, 50)), int(rng.integers(0, 4)), row)
        for row, user in enumerate(np.repeat(np.arange(9), rng.integers(1, 13, size=9)).tolist())
    ]
    connection.execute("CREATE TABLE events (user_id INTEGER, item_id INTEGER, ts BIGINT, row_id BIGINT)")
    connection.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows[::-1])  # stored out of order
    yield connection
    connection.close()


def sequences(con) -> list[tuple]:
    return con.execute("SELECT * FROM sequences ORDER BY user_id").fetchall()


def test_every_batching_gives_the_one_statement_table(con):
    assert build_sequences(con, events_per_batch=10**9) == 1
    whole = sequences(con)
    assert [user for user, *_ in whole] == list(range(9))
    for user, items, timestamps, length in whole:
        expected = con.execute(
            "SELECT list(item_id ORDER BY ts, row_id), list(ts ORDER BY ts, row_id), count(*) FROM events "
            "WHERE user_id = ?",
            [user],
        ).fetchone()
        assert (items, timestamps, length) == expected
    for events_per_batch in (1, 5, 17):
        batches = build_sequences(con, events_per_batch)
        assert batches > 1 and sequences(con) == whole
    assert build_sequences(con, events_per_batch=1) == 9  # a user is never split


def test_a_failed_build_keeps_the_previous_table(con):
    build_sequences(con)
    before = sequences(con)
    # The last user's item no longer fits the table's INTEGER: its batch fails after the others went in.
    con.execute("ALTER TABLE events ALTER COLUMN item_id SET DATA TYPE BIGINT")
    con.execute("UPDATE events SET item_id = 2 ** 40 WHERE user_id = 8")
    with pytest.raises(duckdb.ConversionException):
        build_sequences(con, events_per_batch=1)
    assert sequences(con) == before


def test_the_batch_follows_the_memory_limit(con, monkeypatch):
    con.execute("SET memory_limit = '64MiB'")  # 64 MiB / 200 bytes: about 335 k events, more than the 56 here
    assert memory_limit_bytes(con) == 64 * 2**20
    assert build_sequences(con) == 1
    monkeypatch.setattr(events_module, "LISTED_EVENT_BYTES", 64 * 2**20 // 20)  # as if an event took 1/20 of it
    assert build_sequences(con) > 1
