"""A writer killed at any point of a batch's write leaves every batch it acknowledged applied once, the killed
batch applied once if its commit happened and not at all if not, and sending it again completes it: a real
writer process that kills itself (SIGKILL) right after the store step named, on a real store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recmodels.serving.store import StateStore, UserRow
from recmodels.serving.updates import Event, apply_events
from tests.serving.conftest import NUM_ITEMS
from tests.serving.test_store import open_store, replay

KILLED_WRITER = textwrap.dedent(
    """
    import contextlib, json, os, signal, sys
    from pathlib import Path
    from recmodels.serving.bundle import STORE_FILE, load_model
    from recmodels.serving.engines import engine_for
    from recmodels.serving.state_rows import StateRows
    from recmodels.serving.store import StateStore
    from recmodels.serving.updates import Event, apply_events

    def then_die(method):
        def step(*args, **kwargs):
            method(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return step

    def die_after_commit(write):
        @contextlib.contextmanager
        def transaction(self):
            with write(self) as con:
                yield con
            os.kill(os.getpid(), signal.SIGKILL)  # committed; the caller is never answered
        return transaction

    folder, point, batches = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    engine = engine_for(load_model(folder))
    store = StateStore(folder / STORE_FILE, engine.state_dtype)
    for number, batch in enumerate(batches):
        if number == len(batches) - 1:
            if point == "rows written":
                StateRows.write = then_die(StateRows.write)
            elif point == "rows synced":
                StateRows.sync = then_die(StateRows.sync)
            else:
                StateStore.write = die_after_commit(StateStore.write)
        apply_events(store, engine, [Event(*event) for event in batch])
        print("acknowledged", flush=True)
    """
)
USERS = [f"user-{u}" for u in range(6)] + ["newcomer"]  # the newcomer gets a slot in the first batch


def batches(count: int) -> list[list[tuple[str, int, int]]]:
    """Two events for each user a batch, at a later time each batch."""
    return [
        [(user, 1 + (7 * b + 2 * u + e) % NUM_ITEMS, 10_000 + b) for u, user in enumerate(USERS) for e in (0, 1)]
        for b in range(count)
    ]


def assert_applied_once(store: StateStore, engine, initial: dict[str, UserRow], sent: list[list]) -> None:
    """Each user's journal holds the batches' events once, in order, and its state is theirs replayed."""
    for user in USERS:
        expected = [(item, ts) for batch in sent for who, item, ts in batch if who == user]
        assert store.journal(user) == expected
        start = initial.get(user)
        row = store.get(user)
        assert row.events == (start.events if start else 0) + len(expected)
        np.testing.assert_allclose(row.state, replay(engine, expected, start), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("point", "committed"), [("rows written", False), ("rows synced", False), ("committed", True)])
def test_a_writer_killed_at_each_point_applies_every_acknowledged_batch_once(served_folder, point, committed):
    folder = served_folder("recmamba")
    store, engine = open_store(folder)
    initial = {user: row for user in USERS if (row := store.get(user))}
    sent = batches(3)
    writer = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(folder), point, json.dumps(sent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    assert writer.stdout.split() == ["acknowledged"] * 2  # the last batch was never answered
    assert_applied_once(store, engine, initial, sent if committed else sent[:-1])

    again = apply_events(store, engine, [Event(*event) for event in sent[-1]])

    assert (again.applied, again.duplicates) == ((0, len(sent[-1])) if committed else (len(sent[-1]), 0))
    assert_applied_once(store, engine, initial, sent)
