"""The store's states file and seen table: a rollback keeps the committed copy, the file grows under other
openers, and recommendations skip seen items exactly as a mask over the whole catalogue would."""

from __future__ import annotations

import numpy as np
import pytest

from recmodels.serving.bundle import STORE_FILE
from recmodels.serving.service import RecommendationService, top_items
from recmodels.serving.state_rows import MIN_SLOTS
from recmodels.serving.store import StateStore
from recmodels.serving.updates import Event, apply_events
from tests.serving.conftest import NUM_ITEMS, user_histories
from tests.serving.test_store import open_store


def test_a_rolled_back_write_leaves_the_committed_state(served_folder):
    store, _ = open_store(served_folder("recmamba"))
    before = store.get("user-1")
    changed = store.get("user-1")
    changed.state += 1.0
    with pytest.raises(RuntimeError, match="stop"), store.write():
        store.put_many([changed])  # fills the other copy...
        raise RuntimeError("stop")  # ...which the rollback leaves behind, not current
    np.testing.assert_array_equal(store.get("user-1").state, before.state)
    with store.write():
        store.put_many([changed])
    np.testing.assert_array_equal(store.get("user-1").state, before.state + 1.0)


def test_a_user_written_twice_in_one_transaction_is_refused(served_folder):
    store, _ = open_store(served_folder("gru4rec"))
    row = store.get("user-0")
    with pytest.raises(RuntimeError, match="twice"), store.write():
        store.put_many([row])
        store.put_many([row])  # would overwrite the committed copy a rollback needs
    assert store.get("user-0").events == row.events


def test_the_states_file_grows_and_a_store_opened_before_follows(served_folder):
    folder = served_folder("gru4rec")
    writer, engine = open_store(folder)
    reader = StateStore(folder / STORE_FILE, engine.state_dtype)  # mapped before the file grows
    users = [f"late-{u}" for u in range(MIN_SLOTS + 10)]
    apply_events(writer, engine, [Event(user, 1 + u % NUM_ITEMS, 5_000) for u, user in enumerate(users)])
    last = writer.get(users[-1])
    assert last.slot >= MIN_SLOTS
    np.testing.assert_array_equal(reader.get(users[-1]).state, last.state)


@pytest.mark.parametrize("k", [1, 5, 20, NUM_ITEMS])
def test_recommendations_skip_seen_items_as_a_mask_over_the_catalogue_would(served_folder, k):
    folder = served_folder("recmamba")
    service = RecommendationService(folder)
    store, engine = open_store(folder)
    seen_most = [Event("fan", item, 7_000) for item in range(1, NUM_ITEMS - 3)]  # forces wider candidate lists
    apply_events(store, engine, seen_most)
    users, _, _ = user_histories()
    for user in [*users, "fan"]:
        seen = store.seen(user)
        *_, hidden = store.hidden(user)
        scores = service.scores(hidden)
        scores[seen] = -np.inf
        expected = top_items(scores, min(k, int(np.isfinite(scores).sum())))
        got = service.recommend(user, k, exclude_seen=True)
        assert got.items == [service.catalogue.item_raw[i - 1] for i in expected]
    assert len(service.recommend("fan", NUM_ITEMS, exclude_seen=True).items) == 4


def test_stale_events_in_seconds_are_counted_apart(served_folder):
    store, engine = open_store(served_folder("gru4rec"))
    now_ms = 1_700_000_000_000
    apply_events(store, engine, [Event("clock", 3, now_ms)])
    report = apply_events(store, engine, [Event("clock", 4, now_ms // 1000), Event("clock", 5, now_ms - 60_000)])
    assert (report.stale, report.seconds_like, report.applied) == (2, 1, 0)
