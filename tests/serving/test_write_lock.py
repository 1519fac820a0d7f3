"""Writers wait for the store's write lock a bounded time: woken the moment it is let go, taking it at once
from a holder that died, and refused with StoreBusy (503 with Retry-After over HTTP) when a live holder keeps
it past the wait. The holder is a real process inside a real write transaction."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from recmodels.serving.app import create_app
from recmodels.serving.bundle import STORE_FILE
from recmodels.serving.store import StateStore
from recmodels.serving.updates import Event, apply_events
from recmodels.serving.write_lock import LOCK_TIMEOUT_ENV, StoreBusy
from tests.serving.test_http import WRITE_TOKEN, bearer, event_body, generated_token, published, running, serve_command
from tests.serving.test_store import open_store

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from recmodels.serving.store import StateStore
    store = StateStore(Path(sys.argv[1]), np.float32)
    while sys.stdin.readline():  # a line: take the lock (end of input: stop)
        with store.write():
            print("holding", flush=True)
            sys.stdin.readline()  # a line: let go (unless the test kills this process first)
        print(time.time(), flush=True)
    """
)


def tell(process: subprocess.Popen) -> str:
    """Send the holder a line; its answer."""
    process.stdin.write("\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


@contextlib.contextmanager
def holder(folder: Path) -> Iterator[subprocess.Popen]:
    """A process inside a write transaction on the folder's store until it is killed; told (``tell``), it lets go,
    told again, it takes the lock again."""
    command = [sys.executable, "-c", HOLDER, str(folder / STORE_FILE)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert tell(process) == "holding"
        yield process
    finally:
        process.kill()
        process.wait()


def killed(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def timed_apply(store: StateStore, engine, ts: int) -> tuple[int, float]:
    """Events applied by a one-event batch for user-0, and the seconds it took."""
    began = time.monotonic()
    report = apply_events(store, engine, [Event("user-0", 3, ts)])
    return report.applied, time.monotonic() - began


def seconds_from_release_to_write(process: subprocess.Popen, store: StateStore) -> float:
    """Seconds from the holder letting go of the lock to the writer that waited for it being in its transaction;
    the holder then takes the lock again."""
    acquired: list[float] = []

    def write() -> None:
        with store.write():
            acquired.append(time.time())

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)
    assert not acquired  # waiting
    released = float(tell(process))  # the time the holder let go
    writer.join(timeout=30)
    assert tell(process) == "holding"
    return acquired[0] - released


def test_a_waiting_writer_is_woken_the_moment_the_holder_lets_go(served_folder):
    folder = served_folder("gru4rec")
    store = StateStore(folder / STORE_FILE, np.float32, lock_timeout_s=30)
    with holder(folder) as process:
        gaps = [seconds_from_release_to_write(process, store) for _ in range(5)]
    assert np.median(gaps) < 0.05  # SQLite's retries sleep up to 100 ms; a busy machine may delay one wake-up


def test_a_writer_takes_the_lock_at_once_from_a_holder_that_died(served_folder):
    folder = served_folder("gru4rec")
    _, engine = open_store(folder)
    store = StateStore(folder / STORE_FILE, engine.state_dtype, lock_timeout_s=30)
    with holder(folder) as process:
        killed(process)  # SIGKILL inside its transaction: the kernel drops its flock and SQLite's locks
        applied, waited = timed_apply(store, engine, 9_000)
    assert applied == 1 and waited < 2


def test_a_live_holder_past_the_wait_makes_writers_busy_until_it_is_gone(served_folder):
    folder = served_folder("gru4rec")
    _, engine = open_store(folder)
    store = StateStore(folder / STORE_FILE, engine.state_dtype, lock_timeout_s=0.3)
    events_before = store.get("user-0").events
    threads_before = threading.active_count()
    with holder(folder) as process:
        for _ in range(3):
            began = time.monotonic()
            with pytest.raises(StoreBusy, match=r"write lock was held for more than 0\.3 s"):
                timed_apply(store, engine, 9_000)
            assert 0.3 <= time.monotonic() - began < 2
        assert threading.active_count() <= threads_before + 1  # one thread waits for the holder, not one a try
        assert store.get("user-0").events == events_before  # readers do not wait
        killed(process)
        assert timed_apply(store, engine, 9_000)[0] == 1
    assert store.get("user-0").events == events_before + 1


def test_a_thread_waits_for_another_thread_of_its_process_no_longer_than_the_timeout(served_folder):
    folder = served_folder("gru4rec")
    store = StateStore(folder / STORE_FILE, open_store(folder)[1].state_dtype, lock_timeout_s=0.3)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.write():
            holding.set()
            release.wait(timeout=30)

    other = threading.Thread(target=hold)
    other.start()
    holding.wait(timeout=30)
    with pytest.raises(StoreBusy), store.write():
        pass
    release.set()
    other.join(timeout=30)
    with store.write():
        pass


def test_a_post_kept_waiting_past_the_lock_timeout_is_answered_503_with_retry_after(served_folder, monkeypatch):
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")  # as python -m recmodels.serve --lock-timeout 0.5 sets it
    folder = served_folder("gru4rec")
    app = create_app(published(folder), write_token=WRITE_TOKEN)
    with (
        holder(folder) as process,
        running(app) as base_url,
        httpx.Client(base_url=base_url, headers=bearer(WRITE_TOKEN), timeout=30) as client,
    ):
        busy = client.post("/events", content=event_body(user="user-0", timestamp=9_000))
        assert (busy.status_code, busy.headers.get("retry-after")) == (503, "1")
        assert busy.json()["detail"] == "service: the state store's write lock was held for more than 0.5 s; retry"
        assert client.get("/users/user-0/recommendations").status_code == 200  # readers do not wait
        killed(process)
        assert client.post("/events", content=event_body(user="user-0", timestamp=9_000)).json()["applied"] == 1


def test_the_serve_command_gives_its_lock_timeout_to_the_workers(served_folder, project_home):
    folder = served_folder("gru4rec")
    with holder(folder), serve_command(project_home, "gru4rec", folder, "--lock-timeout", "0.5") as (base_url, _):
        body = event_body(user="user-0", timestamp=9_000)
        busy = httpx.post(f"{base_url}/events", content=body, headers=bearer(generated_token(project_home)), timeout=30)
        assert busy.status_code == 503 and "held for more than 0.5 s" in busy.json()["detail"]
