"""Event batches: left padded for the engines, and applied once each in time order whatever they hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels.serving.engines import left_padded
from recmodels.serving.updates import Event, apply_events
from tests.serving.test_store import open_store


@pytest.fixture
def served_folder_once(served_folder):
    """One GRU4Rec store for every example: each example starts from what the last one left (any state)."""
    return open_store(served_folder("gru4rec"))


rows_of_items = st.lists(st.lists(st.integers(1, 10**12), max_size=6), max_size=6)


@given(rows=rows_of_items, width=st.one_of(st.none(), st.integers(0, 8)))
def test_each_row_keeps_its_last_items_at_the_right(rows, width):
    out = left_padded([np.array(r, np.int64) for r in rows], width)
    expected_width = max((len(r) for r in rows), default=0) if width is None else width
    assert out.shape == (len(rows), expected_width) and out.dtype == np.int64
    for b, row in enumerate(rows):
        kept = row[max(len(row) - expected_width, 0) :]
        assert out[b, expected_width - len(kept) :].tolist() == kept
        assert not out[b, : expected_width - len(kept)].any()


def reference_accepted(last: dict[str, tuple[int, set]], events: list[tuple[str, int, int]]) -> list[tuple]:
    """One event at a time, per user in time order (ties in arrival order): the rule the store promises."""
    accepted = []
    for user in dict.fromkeys(u for u, _, _ in events):
        last_ts, at_last = last.get(user, (np.iinfo(np.int64).min, set()))
        for _, item, ts in sorted((e for e in events if e[0] == user), key=lambda e: e[2]):
            if ts < last_ts:
                continue
            if ts > last_ts:
                last_ts, at_last = ts, set()
            if item not in at_last:
                at_last.add(item)
                accepted.append((user, item, ts))
        last[user] = (last_ts, at_last)
    return accepted


event_batches = st.lists(
    st.lists(st.tuples(st.sampled_from(["a", "b", "user-1"]), st.integers(1, 4), st.integers(0, 3)), max_size=12),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=event_batches)
def test_batches_apply_each_new_event_once_in_time_order(served_folder_once, batches):
    """Ties, repeats within a batch, repeats of the last applied time and stale events, against the rule."""
    store, engine = served_folder_once
    with store.write() as con:
        con.execute("DELETE FROM journal")
    start = {user: store.get(user) for user in ("a", "b", "user-1")}
    last = {u: (row.last_ts, set(row.last_items.tolist())) for u, row in start.items() if row is not None}
    expected = []
    for batch in batches:
        shifted = [(u, i, t + 5_000) for u, i, t in batch]  # after user-1's built history (up to 2,000)
        expected += reference_accepted(last, shifted)
        apply_events(store, engine, [Event(u, i, t) for u, i, t in shifted])
    for user in ("a", "b", "user-1"):
        assert store.journal(user) == [(i, t) for u, i, t in expected if u == user]
        if user in last and store.get(user) is not None:
            assert store.get(user).last_ts == last[user][0]
            assert set(store.get(user).last_items.tolist()) == last[user][1]
