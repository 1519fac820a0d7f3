"""Training windows as an index, cut into arrays only for the batch at hand.

Materializing every window would cost 16 bytes per event and the padding; here a window is two integers
(user, end), and a batch gathers its events from the training histories, which may be memory maps
(``recmodels.history_store``), so in-memory and out-of-core training cut the same batches for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from recmodels.data import SplitData


class WindowIndex:
    """Window w predicts the training events of user ``users[w]`` at ``ends[w] - max_len + 1 .. ends[w]``
    from the ones just before; windows are aligned at the end of a history (only a user's oldest one may
    be short, left padded) and listed per user, newest first."""

    def __init__(self, train_items: np.ndarray, train_offsets: np.ndarray, max_len: int) -> None:
        self.train_items, self.train_offsets, self.max_len = train_items, np.asarray(train_offsets), max_len
        pairs = np.maximum(np.diff(self.train_offsets) - 1, 0)  # (input, target) pairs per user
        per_user = -(-pairs // max_len)
        self.users = np.repeat(np.arange(len(pairs)), per_user)
        newest_first = np.arange(len(self.users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        self.ends = pairs[self.users] - newest_first * max_len  # pair index one past the window's last

    @classmethod
    def of(cls, data: SplitData, max_len: int) -> WindowIndex:
        return cls(*data.train_histories(), max_len)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def num_targets(self) -> int:
        return int(np.minimum(self.ends, self.max_len).sum())

    def window(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), each (len(chosen), max_len) int64, left padded with 0."""
        inputs = np.zeros((len(chosen), self.max_len), dtype=np.int64)
        targets = np.zeros_like(inputs)
        for row, w in enumerate(chosen):
            end, first = int(self.ends[w]), int(self.train_offsets[self.users[w]])
            size = min(end, self.max_len)
            events = self.train_items[first + end - size : first + end + 1]  # inputs then one more target
            inputs[row, self.max_len - size :] = events[:-1]
            targets[row, self.max_len - size :] = events[1:]
        return inputs, targets

    def batches(self, batch_size: int, generator: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches (inputs, targets), each cropped to the longest window it holds (less padding)."""
        order = generator.permutation(len(self))
        for start in range(0, len(order), batch_size):
            inputs, targets = self.window(order[start : start + batch_size])
            first_used = int((inputs != 0).argmax(axis=1).min()) if (inputs != 0).any() else inputs.shape[1]
            yield torch.from_numpy(inputs[:, first_used:]), torch.from_numpy(targets[:, first_used:])
