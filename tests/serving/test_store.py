"""The state store applies events once each, in timestamp order, atomically, and survives kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from recmodels.serving.bundle import STORE_FILE, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.store import StateStore
from recmodels.serving.updates import Event, apply_events, fresh_row
from tests.serving.conftest import user_histories


def open_store(folder: Path):
    engine = engine_for(load_model(folder))
    return StateStore(folder / STORE_FILE, engine.state_dtype), engine


def replay(engine, events: list[tuple[int, int]], initial=None) -> np.ndarray:
    """The state after applying ``events`` (item, ts) one by one from ``initial`` (a fresh user by default)."""
    row = initial or fresh_row(engine, "replay")
    states, hidden = row.state[None].copy(), row.hidden[None].copy()
    for item, _ in events:
        engine.advance(np.array([[item]]), states, hidden)
    return states[0]


def test_build_stores_every_user_with_its_last_events(served_folder):
    store, _ = open_store(served_folder("recmamba"))
    users, items, stamps = user_histories()
    assert store.num_users() == len(users)
    row = store.get(users[0])
    assert row.events == len(items[0]) and row.last_ts == stamps[0][-1]
    np.testing.assert_array_equal(store.seen(users[0]), np.unique(items[0]))
    assert store.meta()["version"] == "3"


@pytest.mark.parametrize("name", ["gru4rec", "lrurec"])
def test_duplicates_are_idempotent_and_order_is_by_timestamp(served_folder, name):
    store, engine = open_store(served_folder(name))
    before = store.get("user-1")
    batch = [Event("user-1", 5, 5000), Event("user-1", 4, 4000), Event("user-1", 6, 5000)]
    first = apply_events(store, engine, batch)
    after = store.get("user-1")
    again = apply_events(store, engine, batch)
    assert (first.applied, first.duplicates, first.stale) == (3, 0, 0)
    assert (again.applied, again.duplicates, again.stale) == (0, 2, 1)
    np.testing.assert_array_equal(store.get("user-1").state, after.state)
    np.testing.assert_allclose(after.state, replay(engine, [(4, 4000), (5, 5000), (6, 5000)], before), rtol=1e-5)
    assert store.journal("user-1") == [(4, 4000), (5, 5000), (6, 5000)]


def test_a_new_user_starts_from_an_empty_history(served_folder):
    store, engine = open_store(served_folder("recmamba"))
    report = apply_events(store, engine, [Event("newcomer", 3, 10), Event("newcomer", 9, 11)])
    assert (report.new_users, report.applied) == (1, 2)
    np.testing.assert_allclose(store.get("newcomer").state, replay(engine, [(3, 10), (9, 11)]), rtol=1e-5, atol=1e-7)


def test_posted_events_advance_hstu_with_their_times_as_a_whole_history_encode_would(served_folder):
    store, engine = open_store(served_folder("hstu"))
    _, items, stamps = user_histories()
    report = apply_events(store, engine, [Event("user-4", 7, 5000), Event("user-4", 8, 90_000_000)])
    assert report.applied == 2
    row = store.get("user-4")
    states, hidden = engine.encode([np.r_[items[4], 7, 8]], [np.r_[stamps[4], 5000, 90_000_000]])
    np.testing.assert_array_equal(row.state, states[0])  # the last max_len items, then their times
    np.testing.assert_allclose(row.hidden, hidden[0], rtol=1e-5, atol=1e-6)
    assert engine.state_dtype == np.int64 and row.state[-1] == 90_000_000


def test_a_failed_batch_changes_nothing(served_folder):
    store, engine = open_store(served_folder("recmamba"))
    before = store.get("user-2")
    with pytest.raises(ValueError, match="item id 1000000 is outside"):
        apply_events(store, engine, [Event("user-2", 7, 9000), Event("user-3", 10**6, 9000)])
    with pytest.raises(ValueError):  # a timestamp that is no integer
        apply_events(store, engine, [Event("user-2", 7, 9000), Event("user-3", 8, "not a time")])
    with pytest.raises(UnicodeEncodeError):  # inside the transaction: an id SQLite cannot store
        apply_events(store, engine, [Event("user-2", 7, 9000), Event("user-3\ud800", 8, 9000)])
    after = store.get("user-2")
    np.testing.assert_array_equal(after.state, before.state)
    assert store.journal("user-2") == [] and after.events == before.events


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from recmodels.serving.bundle import STORE_FILE, load_model
    from recmodels.serving.engines import engine_for
    from recmodels.serving.store import StateStore
    from recmodels.serving.updates import Event, apply_events
    folder = Path(sys.argv[1])
    engine = engine_for(load_model(folder))
    store = StateStore(folder / STORE_FILE, engine.state_dtype)
    rng = np.random.default_rng(0)
    ts = 10_000
    print("ready", flush=True)
    while True:
        ts += 1
        batch = [Event(f"user-{u}", int(i), ts) for u in range(6) for i in rng.choice(50, 20, replace=False) + 1]
        apply_events(store, engine, batch)
    """
)


def test_kill_9_during_updates_leaves_each_user_before_or_after_a_batch(served_folder, project_home):
    folder = served_folder("gru4rec")
    store, engine = open_store(folder)
    initial = {user: store.get(user) for user in (f"user-{u}" for u in range(6))}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(store.journal("user-0")) < 60:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    for user, row in initial.items():
        journal = store.journal(user)
        stored = store.get(user)
        assert len(journal) % 20 == 0 and stored.events == row.events + len(journal)
        np.testing.assert_allclose(stored.state, replay(engine, journal, row), rtol=1e-5, atol=1e-6)
