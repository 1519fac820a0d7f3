"""Users' model states as fixed-width rows of a memory-mapped file, two copies per user's slot.

A batch reads and writes its users' states with one gather and one scatter (numpy fancy indexing on the
mapping) instead of a BLOB per row through SQLite. The store (``store.py``) keeps which copy is current in
its SQLite row, so a write always fills the other copy and a commit, not the write, makes it current.
The file grows sparsely by doubling; a process whose mapping is shorter than a slot it needs maps it again
(another process may have grown the file).
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
        index = self._index(slots, copies)
        self._view[index] = states

    def _index(self, slots: np.ndarray, copies: np.ndarray) -> np.ndarray:
        index = 2 * np.asarray(slots, np.int64) + np.asarray(copies, np.int64)
        if len(index) and index.max() >= len(self._view):
            self._grow(int(index.max()) + 1)
        return index

    def _grow(self, rows: int) -> None:
        """Map at least ``rows`` rows, doubling the file if it is shorter."""
        row_bytes = self.width * self.dtype.itemsize
        size = os.fstat(self._file.fileno()).st_size
        if size < rows * row_bytes:
            os.ftruncate(self._file.fileno(), max(rows, 2 * size // row_bytes) * row_bytes)
        self._map()

    def _map(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        mapping = mmap.mmap(self._file.fileno(), size)
        self._view = np.frombuffer(mapping, self.dtype).reshape(-1, self.width)
