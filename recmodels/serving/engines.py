"""How each kind of model keeps a user's summary between events, as one fixed-size row of numbers.

An engine packs a model's per-user state into a flat numpy row (what the store keeps), encodes whole
histories of any length into rows, and advances rows by new events. Recurrent models (RecMamba, Mamba4Rec,
GRU4Rec, LRURec) keep their recurrent state: O(1) per event, whatever the history length. Attention models (SASRec,
LinRec, HSTU) keep their last ``max_len`` items and re-encode that window, so the service is like for like;
HSTU, which reads event times, keeps their timestamps beside them.
Every engine also keeps each user's last hidden vector, so a recommendation is one product with the catalogue.

Event batches are (B, T) item ids, left padded with 0 like every model input: row b holds user b's new
events in order; a row of zeros leaves that user as it was. Their timestamps (B, T) ms come alongside;
only the engine of a model that ``uses_timestamps`` reads them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from recmodels.models import GRU4Rec, LRURec, RecMamba, SequentialRecommender
from recmodels.models.mamba_mixer import MixerState
from recmodels.models.mamba_stack import MambaRecommender

ENCODE_CHUNK = 512  # events per forward_with_state call while encoding a long history


def left_padded(rows: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """(B, width) int64 with each row's last ``width`` items at the right, 0 before them."""
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    width = int(lengths.max(initial=0)) if width is None else width
    out = np.zeros((len(rows), width), dtype=np.int64)
    if lengths.sum() == 0 or width == 0:
        return out
    values = np.concatenate([np.asarray(r, np.int64) for r in rows])
    row = np.repeat(np.arange(len(rows)), lengths)
    column = width - lengths[row] + np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    kept = column >= 0  # a row longer than width keeps its last width items
    out[row[kept], column[kept]] = values[kept]
    return out


class Engine(ABC):
    """One model's per-user state as a flat row; ``advance`` and ``encode`` never need the full history."""

    state_dtype: np.dtype

    def __init__(self, model: SequentialRecommender) -> None:
        self.model = model.eval()
        self.hidden_width = int(model.item_embedding.weight.shape[1])
        self.num_items = model.num_items

    def check_items(self, items: np.ndarray) -> None:
        """A ValueError for ids outside 0..num_items (the compiled step does no bounds checks)."""
        if items.size and (items.min() < 0 or items.max() > self.num_items):
            bad = items[(items < 0) | (items > self.num_items)][0]
            raise ValueError(f"item id {bad} is outside the model's catalogue 1..{self.num_items}")

    @property
    @abstractmethod
    def state_width(self) -> int: ...

    def initial(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of users with no events yet: (states (B, S), hidden (B, D)); a fresh user's hidden is 0."""
        return np.zeros((batch, self.state_width), self.state_dtype), np.zeros((batch, self.hidden_width), np.float32)

    @abstractmethod
    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows for whole histories (any lengths) and their timestamps, as if every event had been streamed
        in order."""

    @abstractmethod
    def advance(
        self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray, timestamps: np.ndarray | None = None
    ) -> None:
        """Advance rows in place by new events (B, T), left padded with 0, at ``timestamps`` (B, T) ms."""


class RecurrentEngine(Engine):
    """A model with a fixed-size recurrent state (``init_state``, ``forward_with_state``, ``step``), as a float32
    row: ``encode`` runs each whole history through ``forward_with_state`` in chunks, ``advance`` steps it one
    event at a time with ``model.step``. Subclasses say how the state lies in the row."""

    state_dtype = np.dtype(np.float32)

    @abstractmethod
    def pack(self, state) -> np.ndarray:
        """The model's state for B users -> rows (B, state_width)."""

    @abstractmethod
    def unpack(self, states: np.ndarray):
        """Rows (B, state_width) -> the model's state for B users, on the model's device."""

    @torch.no_grad()
    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        states, hidden = self.initial(len(histories))
        if not len(histories):
            return states, hidden
        items = torch.from_numpy(left_padded(histories)).to(self.model.item_embedding.weight.device)
        state = self.model.init_state(len(histories))
        out = torch.zeros(len(histories), self.hidden_width)
        for start in range(0, items.shape[1], ENCODE_CHUNK):
            chunk_hidden, state = self.model.forward_with_state(items[:, start : start + ENCODE_CHUNK], state)
            out = chunk_hidden[:, -1].float().cpu()
        has_events = np.fromiter((len(history) > 0 for history in histories), bool, len(histories))
        hidden[has_events] = out.numpy()[has_events]  # a user with no events keeps the fresh user's 0
        return self.pack(state), hidden

    @torch.no_grad()
    def advance(
        self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray, timestamps: np.ndarray | None = None
    ) -> None:
        device = self.model.item_embedding.weight.device
        state = self.unpack(states)
        for column in torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device).T:
            step_hidden, state = self.model.step(column, state)
            real = (column != 0).cpu().numpy()
            hidden[real] = step_hidden[column != 0].float().cpu().numpy()
        states[:] = self.pack(state)


class MambaEngine(RecurrentEngine):
    """Per layer: the conv window (E, K - 1) then the SSM state (E, N), float32; RecMamba on the CPU steps
    through the fused kernel, other Mamba models (and CUDA) through ``model.step``, the mixer's ``mix`` of
    length 1."""

    def __init__(self, model: MambaRecommender) -> None:
        super().__init__(model)
        weights = model.blocks[0].mixer.weights()
        self.n_layers = len(model.blocks)
        self.conv_shape = (weights.d_inner, weights.d_conv - 1)
        self.ssm_shape = (weights.d_inner, weights.d_state)
        self.fused = None
        on_cpu = model.item_embedding.weight.device.type == "cpu"
        if isinstance(model, RecMamba) and on_cpu and weights.selective:
            from recmodels.serving import fused_step  # compiles on first use; only CPU RecMamba needs it

            self.fused = fused_step.mamba_weights(model)
            self._fused_step = fused_step.fused_step

    @property
    def layer_width(self) -> int:
        return int(np.prod(self.conv_shape) + np.prod(self.ssm_shape))

    @property
    def state_width(self) -> int:
        return self.n_layers * self.layer_width

    def pack(self, state: list[MixerState]) -> np.ndarray:
        parts = [torch.cat([s.conv.flatten(1), s.ssm.flatten(1)], dim=1) for s in state]
        return torch.cat(parts, dim=1).float().cpu().numpy()

    def unpack(self, states: np.ndarray) -> list[MixerState]:
        device = self.model.item_embedding.weight.device
        rows = torch.from_numpy(states).to(device)
        conv_size = int(np.prod(self.conv_shape))
        out = []
        for layer in range(self.n_layers):
            part = rows[:, layer * self.layer_width : (layer + 1) * self.layer_width]
            conv = part[:, :conv_size].reshape(len(rows), *self.conv_shape).contiguous()
            ssm = part[:, conv_size:].reshape(len(rows), *self.ssm_shape).contiguous()
            out.append(MixerState(conv, ssm))
        return out

    @torch.no_grad()
    def advance(
        self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray, timestamps: np.ndarray | None = None
    ) -> None:
        if self.fused is None:
            super().advance(items, states, hidden, timestamps)
            return
        self.check_items(items)
        self._fused_step(self.fused, np.ascontiguousarray(items, dtype=np.int64), states, hidden)


class LRUEngine(RecurrentEngine):
    """Per layer the complex state (H,) as (real, imaginary) float32 pairs: n_layers x H x 2 numbers."""

    def __init__(self, model: LRURec) -> None:
        super().__init__(model)
        self.layer_shape = (model.d_state, 2)
        self.n_layers = model.config.n_layers

    @property
    def state_width(self) -> int:
        return self.n_layers * int(np.prod(self.layer_shape))

    def pack(self, state: Tensor) -> np.ndarray:
        return state.transpose(0, 1).reshape(state.shape[1], -1).float().cpu().numpy()  # (n_layers, B, H, 2) -> (B, S)

    def unpack(self, states: np.ndarray) -> Tensor:
        rows = torch.from_numpy(states).to(self.model.item_embedding.weight.device, self.model.state_dtype)
        return rows.reshape(len(states), self.n_layers, *self.layer_shape).transpose(0, 1).contiguous()


class GRUEngine(Engine):
    """The GRU's hidden state of every layer (n_layers x D), float32."""

    state_dtype = np.dtype(np.float32)

    def __init__(self, model: GRU4Rec) -> None:
        super().__init__(model)
        self.n_layers = model.config.n_layers

    @property
    def state_width(self) -> int:
        return self.n_layers * self.hidden_width

    def _run(self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray) -> None:
        device = self.model.item_embedding.weight.device
        batch = len(items)
        state = torch.from_numpy(states).to(device).reshape(batch, self.n_layers, -1).transpose(0, 1).contiguous()
        tokens = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device)
        for start in range(0, tokens.shape[1], ENCODE_CHUNK):
            chunk = tokens[:, start : start + ENCODE_CHUNK]
            chunk_hidden, state = self.model.forward_with_state(chunk, state)
            real = (chunk[:, -1] != 0).cpu().numpy()  # left padded: a user with events has one in the last column
            hidden[real] = chunk_hidden[:, -1][torch.from_numpy(real).to(device)].float().cpu().numpy()
        states[:] = state.transpose(0, 1).reshape(batch, -1).float().cpu().numpy()

    @torch.no_grad()
    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        states, hidden = self.initial(len(histories))
        self._run(left_padded(histories), states, hidden)
        return states, hidden

    @torch.no_grad()
    def advance(
        self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray, timestamps: np.ndarray | None = None
    ) -> None:
        self._run(items, states, hidden)


class WindowEngine(Engine):
    """Attention models: the last ``max_len`` items (int32, left padded), re-encoded on every update. A model
    that reads event times (HSTU) keeps the items' timestamps after them: [items | ms], int64, 0 on padding."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__(model)
        self.width = int(model.config.max_len)
        self.timed = model.uses_timestamps
        self.state_dtype = np.dtype(np.int64 if self.timed else np.int32)

    @property
    def state_width(self) -> int:
        return 2 * self.width if self.timed else self.width

    def _hidden(self, windows: np.ndarray) -> Tensor:
        device = self.model.item_embedding.weight.device
        tensor = torch.from_numpy(windows.astype(np.int64)).to(device)
        if self.timed:
            return self.model.forward_last(tensor[:, : self.width], tensor[:, self.width :]).float().cpu()
        return self.model.forward_last(tensor).float().cpu()

    def _check_times(self, timestamps: object) -> None:
        if self.timed and timestamps is None:
            raise ValueError(f"{type(self.model).__name__} reads event times: pass the events' timestamps")

    @torch.no_grad()
    def encode(
        self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check_times(timestamps)
        states, hidden = self.initial(len(histories))
        if len(histories):
            states[:, : self.width] = left_padded(histories, self.width)
            if self.timed:
                states[:, self.width :] = left_padded(timestamps, self.width)
            hidden[:] = self._hidden(states).numpy()
        return states, hidden

    @torch.no_grad()
    def advance(
        self, items: np.ndarray, states: np.ndarray, hidden: np.ndarray, timestamps: np.ndarray | None = None
    ) -> None:
        self._check_times(timestamps)
        changed = (items != 0).any(axis=1)
        if not changed.any():
            return
        users = np.flatnonzero(changed)
        kept = [states[b, : self.width] != 0 for b in users]
        new = [items[b] != 0 for b in users]
        rows = [
            np.concatenate([states[b, : self.width][k], items[b][n]]) for b, k, n in zip(users, kept, new, strict=True)
        ]
        windows = left_padded(rows, self.width)
        if self.timed:
            times = [
                np.concatenate([states[b, self.width :][k], timestamps[b][n]])
                for b, k, n in zip(users, kept, new, strict=True)
            ]
            windows = np.concatenate([windows, left_padded(times, self.width)], axis=1)
        windows = windows.astype(self.state_dtype)
        states[changed] = windows
        hidden[changed] = self._hidden(windows).numpy()


def engine_for(model: SequentialRecommender) -> Engine:
    """The engine that serves ``model``: its recurrent state when it has one, else its last window."""
    if isinstance(model, MambaRecommender):
        return MambaEngine(model)
    if isinstance(model, GRU4Rec):
        return GRUEngine(model)
    if isinstance(model, LRURec):
        return LRUEngine(model)
    if hasattr(model, "forward_last"):
        return WindowEngine(model)
    raise TypeError(f"no serving engine for {type(model).__name__}")
