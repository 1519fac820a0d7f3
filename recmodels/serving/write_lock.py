"""The state store's write lock: writers take turns across threads and processes, each waiting a bounded time.

Why a lock beside SQLite's: left to SQLite, a waiting writer sleeps and retries with growing pauses (up to
100 ms), which made busy batches wait seconds. A thread lock and ``flock`` on ``<store>.lock`` wake the next
writer the moment the one before it is done.

Why bounded: a writer that hangs while holding the lock would block every other writer forever, so a writer
waits at most ``timeout_s`` and then raises ``StoreBusy`` (the service answers 503 with Retry-After).
``flock`` itself cannot time out, and polling it would wake late and lose every race to a busy holder that
takes the lock again at once. So a writer that finds the lock taken blocks in ``flock`` on a thread of its
own, on its own open of the file (flock locks belong to an open file), and waits for that thread at most
the rest of its time: when the holder lets go, the thread takes the lock and hands it over. A writer that
gave up leaves the thread waiting for the next writer of its process, which takes the lock from it; if none
waits when it gets the lock, it lets go at once. A hung holder thus costs one waiting thread a process.

A holder that dies loses the lock: the kernel drops a process's flock locks with its last descriptor of the
file, and SQLite's own locks (fcntl locks) too. A child forked while the lock is held would share it; the
processes that share a store (uvicorn's workers, a rebuild's publish) are spawned, and subprocesses close
inherited descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LOCK_TIMEOUT_ENV = "RECMAMBA_LOCK_TIMEOUT_S"  # set by python -m recmodels.serve --lock-timeout
DEFAULT_LOCK_TIMEOUT_S = 10.0


class StoreBusy(TimeoutError):
    """Another writer held the store's write lock for longer than this writer may wait: retry later."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__(f"{path}: the state store's write lock was held for more than {timeout_s:g} s")
        self.timeout_s = timeout_s


def lock_timeout_from_environment() -> float:
    """Seconds a writer waits for the lock: ``RECMAMBA_LOCK_TIMEOUT_S`` when set, else 10."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={text!r}: expected a number of seconds above 0")
    return seconds


@dataclass
class Handover:
    """A thread blocked in ``flock`` on ``file``; ``taken`` once it holds the lock for the writer that ``wants`` it."""

    file: BinaryIO
    wants: bool = True
    taken: bool = False


class WriteLock:
    """One store's write lock, for one process: ``with lock.held(): ...`` waits at most ``timeout_s``."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        if not 0 < timeout_s < float("inf"):  # threading.Lock takes a negative timeout as "forever"
            raise ValueError(f"{path}: a write lock's timeout must be seconds above 0 (got {timeout_s})")
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self._turn = threading.Lock()  # this process's writers, one at a time
        self._file = open(self.path, "a+b")  # noqa: SIM115 (held while the store lives)
        self._handing = threading.Condition()  # guards _waiting and the hand-over
        self._waiting: Handover | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_s
        if not self._turn.acquire(timeout=self.timeout_s):
            raise StoreBusy(self.path, self.timeout_s)
        try:
            file = self._lock_file(deadline)
            try:
                yield
            finally:
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)
                if file is not self._file:
                    file.close()
        finally:
            self._turn.release()

    def _lock_file(self, deadline: float) -> BinaryIO:
        """The open file holding the flock: ours when it is free (one system call), else the waiting thread's."""
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return self._file
        except BlockingIOError:
            pass
        with self._handing:
            handover = self._waiting or self._start_waiting()
            handover.wants = True
            taken = self._handing.wait_for(lambda: handover.taken, timeout=max(deadline - time.monotonic(), 0))
            handover.wants = False
            if not taken:
                raise StoreBusy(self.path, self.timeout_s)
            self._waiting = None
            return handover.file

    def _start_waiting(self) -> Handover:
        handover = Handover(open(self.path, "a+b"))  # noqa: SIM115 (closed by whoever ends up holding it)
        threading.Thread(target=self._wait, args=(handover,), name="store-lock-wait", daemon=True).start()
        self._waiting = handover
        return handover

    def _wait(self, handover: Handover) -> None:
        fcntl.flock(handover.file.fileno(), fcntl.LOCK_EX)
        with self._handing:
            if handover.wants:
                handover.taken = True
                self._handing.notify_all()
                return
            self._waiting = None
        handover.file.close()  # no writer waits any more: let the lock go
