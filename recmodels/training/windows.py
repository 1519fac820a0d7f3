"""Training windows as an index, cut into arrays only for the batch at hand.

Materializing every window would cost 16 bytes per event and the padding; here a window is two integers
(user, end), and a batch gathers its events from the training histories, which may be memory maps
(``recmodels.data.history_store``), so in-memory and out-of-core training cut the same batches for the same seed.
The inputs' timestamps are gathered only for a model that reads them (``uses_timestamps``).

Under the global time split no event is predicted from one at its own timestamp, as in evaluation
(``recmodels.evaluation.evaluate``): simultaneous events have no order (the export keeps the source's row
order among them, which a model could learn), so a pair whose input shares its target's timestamp has no
target. Leave-one-out keeps the reference's stable order and trains on every pair.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from recmodels.data.split_data import SplitData


class Batch(NamedTuple):
    """One training step's windows: input items and next-item targets (B, L), left padded with 0, and the
    inputs' timestamps (B, L) int64 ms (0 on padding) when the index carries them, else None."""

    inputs: torch.Tensor
    targets: torch.Tensor
    timestamps: torch.Tensor | None = None


class WindowIndex:
    """Window w predicts the training events of user ``users[w]`` at ``ends[w] - max_len + 1 .. ends[w]``
    from the ones just before; windows are aligned at the end of a history (only a user's oldest one may
    be short, left padded) and listed per user, newest first.

    ``tie_times``: the training events' timestamps (aligned with ``train_items``) when no event may be
    predicted from one at its own timestamp; a pair whose input shares its target's timestamp then has no
    target (0, which the loss skips)."""

    def __init__(
        self,
        train_items: np.ndarray,
        train_offsets: np.ndarray,
        max_len: int,
        train_timestamps: np.ndarray | None = None,
        tie_times: np.ndarray | None = None,
    ) -> None:
        self.train_items, self.train_offsets, self.max_len = train_items, np.asarray(train_offsets), max_len
        self.train_timestamps = train_timestamps  # aligned with train_items, or None: batches carry no times
        self.tie_times = tie_times
        pairs = np.maximum(np.diff(self.train_offsets) - 1, 0)  # (input, target) pairs per user
        per_user = -(-pairs // max_len)
        self.users = np.repeat(np.arange(len(pairs)), per_user)
        newest_first = np.arange(len(self.users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        self.ends = pairs[self.users] - newest_first * max_len  # pair index one past the window's last

    @classmethod
    def of(cls, data: SplitData, max_len: int, timestamps: bool = False) -> WindowIndex:
        """The windows of ``data``'s training events; with ``timestamps`` batches carry the inputs' times.
        Under the global time split no target is predicted from an event at its own timestamp."""
        global_time = data.metadata.get("split_mode") == "global_time"
        times = data.train_timestamps() if timestamps or global_time else None
        return cls(*data.train_histories(), max_len, times if timestamps else None, times if global_time else None)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def num_targets(self) -> int:
        return int(np.minimum(self.ends, self.max_len).sum())

    def window(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), each (len(chosen), max_len) int64, left padded with 0."""
        inputs = np.zeros((len(chosen), self.max_len), dtype=np.int64)
        targets = np.zeros_like(inputs)
        for row, (first, end, size) in enumerate(self._spans(chosen)):
            span = slice(first + end - size, first + end + 1)  # inputs then one more target
            events = self.train_items[span]
            inputs[row, self.max_len - size :] = events[:-1]
            targets[row, self.max_len - size :] = events[1:]
            if self.tie_times is not None:
                times = self.tie_times[span]
                targets[row, self.max_len - size :][times[1:] == times[:-1]] = 0
        return inputs, targets

    def input_timestamps(self, chosen: np.ndarray) -> np.ndarray:
        """(len(chosen), max_len) int64 ms of ``window(chosen)``'s inputs, 0 on padding."""
        if self.train_timestamps is None:
            raise ValueError("this window index was built without timestamps (WindowIndex.of(..., timestamps=True))")
        times = np.zeros((len(chosen), self.max_len), dtype=np.int64)
        for row, (first, end, size) in enumerate(self._spans(chosen)):
            times[row, self.max_len - size :] = self.train_timestamps[first + end - size : first + end]
        return times

    def _spans(self, chosen: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """Per chosen window: (user's first training event, window end, number of inputs)."""
        for w in chosen:
            end = int(self.ends[w])
            yield int(self.train_offsets[self.users[w]]), end, min(end, self.max_len)

    def batches(self, batch_size: int, generator: np.random.Generator) -> Iterator[Batch]:
        """Shuffled batches, each cropped to the longest window it holds (less padding)."""
        order = generator.permutation(len(self))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            inputs, targets = self.window(chosen)
            first_used = int((inputs != 0).argmax(axis=1).min()) if (inputs != 0).any() else inputs.shape[1]
            times = None
            if self.train_timestamps is not None:
                times = torch.from_numpy(self.input_timestamps(chosen)[:, first_used:])
            yield Batch(torch.from_numpy(inputs[:, first_used:]), torch.from_numpy(targets[:, first_used:]), times)
