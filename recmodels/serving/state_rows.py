"""Users' model states as fixed-width rows of a memory-mapped file, two copies per user's slot.

A batch reads its users' states with one gather (numpy fancy indexing on the mapping) and writes them with a
``pwrite`` a row, instead of a BLOB per row through SQLite. The store (``store.py``) keeps which copy is
current in its SQLite row, so a write always fills the other copy and a commit, not the write, makes it
current; it syncs the file (``sync``) before that commit. The file grows sparsely by doubling; a process whose
mapping is shorter than a slot it needs maps it again (another process may have grown the file).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

MIN_SLOTS = 1_024  # slots of a new file (sparse: unwritten slots take no disk)


class StateRows:
    def __init__(self, path: Path, dtype: np.dtype, width: int) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.width = int(width)
        self.row_bytes = self.width * self.dtype.itemsize
        self._file = open(self.path, "r+b")  # noqa: SIM115 (held while the store lives; closed when collected)
        self._view = np.zeros((0, self.width), self.dtype)
        self._map()

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, width: int) -> None:
        with open(path, "xb") as handle:
            handle.truncate(2 * MIN_SLOTS * int(width) * np.dtype(dtype).itemsize)

    def read(self, slots: np.ndarray, copies: np.ndarray) -> np.ndarray:
        """(B, width) states: copy ``copies[b]`` of slot ``slots[b]``."""
        index = self._index(slots, copies)
        return self._view[index]

    def write(self, slots: np.ndarray, copies: np.ndarray, states: np.ndarray) -> None:
        """Copy ``states[b]`` into copy ``copies[b]`` of slot ``slots[b]``. A scatter through the mapping cost as much
        (the pages a sync has cleaned fault on the next write either way) but made the sync twice as slow (the
        kernel write-protects each mapped page it writes back): 30 against 16 ms for 1,000 rows of 19 KB. A full
        disk is also an error here, where a sparse mapping would crash the process (SIGBUS)."""
        index = self._index(slots, copies)
        states = np.ascontiguousarray(states, self.dtype)
        for b, row in enumerate(index.tolist()):
            written = os.pwrite(self._file.fileno(), states[b], row * self.row_bytes)
            if written != self.row_bytes:
                raise OSError(f"{self.path}: wrote {written} of the {self.row_bytes} bytes of row {row}")

    def sync(self) -> None:
        """Wait until every row written and the file's size are on disk."""
        os.fdatasync(self._file.fileno())

    def _index(self, slots: np.ndarray, copies: np.ndarray) -> np.ndarray:
        index = 2 * np.asarray(slots, np.int64) + np.asarray(copies, np.int64)
        if len(index) and index.max() >= len(self._view):
            self._grow(int(index.max()) + 1)
        return index

    def _grow(self, rows: int) -> None:
        """Map at least ``rows`` rows, doubling the file if it is shorter."""
        size = os.fstat(self._file.fileno()).st_size
        if size < rows * self.row_bytes:
            os.ftruncate(self._file.fileno(), max(rows, 2 * size // self.row_bytes) * self.row_bytes)
        self._map()

    def _map(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        mapping = mmap.mmap(self._file.fileno(), size)
        self._view = np.frombuffer(mapping, self.dtype).reshape(-1, self.width)
