"""The log as numpy arrays, and the SplitData views a window needs: what a model may train on before the
window, and the window's events as targets, each with its user's full prior history as context."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from pipelines.data.sql import sql_text
from recmodels.data.split_data import TEST, TRAIN, VALID, SplitData


@dataclass(frozen=True)
class EventLog:
    """Events in (user, time) order, as flat arrays."""

    users: np.ndarray  # (E,) int32
    items: np.ndarray  # (E,) int32
    timestamps: np.ndarray  # (E,) int64 ms

    @classmethod
    def until(cls, con: duckdb.DuckDBPyConnection, end_ms: int) -> EventLog:
        table = con.sql(sql_text("daily_events_until"), params={"end_ms": end_ms}).to_arrow_table()
        return cls(
            table["user_id"].to_numpy().astype(np.int32),
            table["item_id"].to_numpy().astype(np.int32),
            table["ts"].to_numpy().astype(np.int64),
        )

    @property
    def num_items(self) -> int:
        return int(self.items.max()) if len(self.items) else 0

    def where(self, keep: np.ndarray) -> EventLog:
        return EventLog(self.users[keep], self.items[keep], self.timestamps[keep])


def as_split(log: EventLog, split: np.ndarray, num_items: int) -> SplitData:
    """SplitData over ``log`` (already in user order) with the given per-event split codes."""
    starts = np.flatnonzero(np.r_[True, log.users[1:] != log.users[:-1]]) if len(log.users) else np.zeros(0, int)
    offsets = np.r_[starts, len(log.users)].astype(np.int64)
    return SplitData(
        user_ids=log.users[starts].astype(np.int32),
        items=log.items,
        timestamps=log.timestamps,
        split=split.astype(np.int8),
        offsets=offsets,
        metadata={"num_items": num_items},
    )


def window_targets(log: EventLog, start_ms: int, num_items: int) -> SplitData:
    """The histories of users active in the window: events before ``start_ms`` are context, later ones targets."""
    active = np.unique(log.users[log.timestamps >= start_ms])
    view = log.where(np.isin(log.users, active))
    return as_split(view, np.where(view.timestamps >= start_ms, TEST, TRAIN), num_items)


def training_split(log: EventLog, num_items: int) -> SplitData:
    """Train on ``log``; each user's last event validates the epochs (so the best epoch is kept) and the one
    before it is the unused test slot, leaving everything earlier to train on."""
    split = np.full(len(log.users), TRAIN, np.int8)
    last = np.flatnonzero(np.r_[log.users[1:] != log.users[:-1], True]) if len(log.users) else np.zeros(0, int)
    has_history = np.r_[False, log.users[1:] == log.users[:-1]]
    long_enough = last[(last >= 2) & has_history[last] & has_history[np.maximum(last - 1, 0)]]
    split[long_enough] = VALID
    split[long_enough - 1] = TEST
    return as_split(log, split, num_items)


def recent_events(log: EventLog, since_ms: int, context: int) -> EventLog:
    """Events at or after ``since_ms`` of the users active then, plus up to ``context`` events before them."""
    is_new = log.timestamps >= since_ms
    active = np.isin(log.users, np.unique(log.users[is_new]))
    first_new = np.full(int(log.users.max()) + 1 if len(log.users) else 1, len(log.users), np.int64)
    np.minimum.at(first_new, log.users[is_new], np.flatnonzero(is_new))
    position = np.arange(len(log.users))
    keep = active & (position >= first_new[log.users] - context)
    return log.where(keep)
