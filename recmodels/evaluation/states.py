"""Streaming models' per-user states kept from one evaluation to the next, so a history is encoded once.

A streaming model (RecMamba, Mamba4Rec, GRU4Rec, LRURec) reads a target's whole prior history. Validation
encodes each user's history up to its last validation target; the test, with the same weights, would
encode it all again to reach the test targets, which come later. ``UserStates`` keeps each user's state
after the events an evaluation encoded (``ends``), and the next evaluation continues from there: for the
test only the events after validation are encoded. ``recmodels.training.loop.fit`` keeps the states of the
best epoch's validation for the test.

A model's state is a tensor or nested lists/tuples of tensors, each with a batch dimension of its own
(GRU's is the second); it is found by comparing the shapes of ``init_state(1)`` and ``init_state(2)``.
Fresh states are zeros, so a user that no evaluation has reached starts from zeros here too.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from recmodels.models.base import SequentialRecommender

State = object  # a tensor, or lists/tuples (named tuples included) of states


def leaves(state: State) -> list[Tensor]:
    """The tensors of ``state``, depth first."""
    if isinstance(state, Tensor):
        return [state]
    return [leaf for part in state for leaf in leaves(part)]


def rebuild(like: State, tensors: Iterator[Tensor]) -> State:
    """A state shaped like ``like`` whose tensors are taken from ``tensors`` in ``leaves`` order."""
    if isinstance(like, Tensor):
        return next(tensors)
    parts = [rebuild(part, tensors) for part in like]
    return type(like)(*parts) if hasattr(like, "_fields") else type(like)(parts)


class UserStates:
    """Each user's state after its first ``ends[user]`` events (0: none encoded, a fresh state)."""

    def __init__(self, model: SequentialRecommender, num_users: int) -> None:
        if not model.supports_streaming:
            raise ValueError(f"{type(model).__name__} keeps no state between events")
        self.model, self.num_users = model, num_users
        self.ends = np.zeros(num_users, dtype=np.int64)
        one, two = leaves(model.init_state(1)), leaves(model.init_state(2))
        self.batch_dims = [
            next(dim for dim, (a, b) in enumerate(zip(x.shape, y.shape, strict=True)) if a != b)
            for x, y in zip(one, two, strict=True)
        ]
        self.store: list[Tensor] | None = None  # every user's state, made at the first ``keep``

    def initial(self, users: np.ndarray, starts: np.ndarray) -> State:
        """The state of each of ``users`` after its first ``starts`` events: kept, or fresh where 0."""
        fresh = self.model.init_state(len(users))
        if self.store is None or not starts.any():
            return fresh
        device = self.store[0].device
        index = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(device)
        kept = torch.from_numpy(starts > 0).to(device)
        tensors = []
        for stored, zeros, dim in zip(self.store, leaves(fresh), self.batch_dims, strict=True):
            shape = [1] * stored.dim()
            shape[dim] = len(users)
            tensors.append(torch.where(kept.view(shape), stored.index_select(dim, index), zeros))
        return rebuild(fresh, iter(tensors))

    def keep(self, users: np.ndarray, state: State, ends: np.ndarray) -> None:
        """Record ``state`` as each of ``users``'s state after its first ``ends`` events."""
        tensors = leaves(state)
        if self.store is None:
            self.store = [t.new_zeros(self._shape(t, dim)) for t, dim in zip(tensors, self.batch_dims, strict=True)]
        index = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.store[0].device)
        for stored, tensor, dim in zip(self.store, tensors, self.batch_dims, strict=True):
            stored.index_copy_(dim, index, tensor.to(stored.dtype))
        self.ends[users] = ends

    def _shape(self, tensor: Tensor, dim: int) -> list[int]:
        shape = list(tensor.shape)
        shape[dim] = self.num_users
        return shape
