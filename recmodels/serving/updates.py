"""Applying new events to stored users: timestamp order, idempotent duplicates, one batched step per batch.

Per user, events are applied in timestamp order (ties keep the order they came in). An event at the user's
last applied timestamp whose item was already applied there is a duplicate and skipped; one older than
the last applied timestamp is stale (already applied, or too late to apply without re-encoding the
history) and skipped too; the report counts both. Everything for one batch happens in one store
transaction, so a batch is applied whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recmodels.serving.engines import Engine, left_padded
from recmodels.serving.store import NO_TIMESTAMP, StateStore, UserRow


@dataclass(frozen=True)
class Event:
    user: str
    item: int  # dense item id of the served model, >= 1
    ts: int  # milliseconds since the epoch


# Stale events timed in [1e9, 1e11) ms (January 1970 to March 1973) against a user whose last event is later
# than 1e11 ms were most likely sent in seconds (2001 to 5138 in seconds): the report counts them apart.
SECONDS_LIKE = (10**9, 10**11)


@dataclass
class ApplyReport:
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    new_users: int = 0
    seconds_like: int = 0  # of the stale ones: timestamps that look like seconds, not milliseconds


def looks_like_seconds(ts: np.ndarray, last_ts: np.ndarray) -> np.ndarray:
    return (ts >= SECONDS_LIKE[0]) & (ts < SECONDS_LIKE[1]) & (last_ts >= SECONDS_LIKE[1])


@dataclass(frozen=True)
class EventColumns:
    """A batch as columns, in the order the events came: what the service decodes and the store applies."""

    users: list[str]
    items: np.ndarray  # (n,) int64 dense item ids
    ts: np.ndarray  # (n,) int64 milliseconds

    @classmethod
    def of(cls, events: Sequence[Event]) -> EventColumns:
        items = np.array([e.item for e in events], np.int64)
        return cls([e.user for e in events], items, np.array([e.ts for e in events], np.int64))


def fresh_row(engine: Engine, user: str) -> UserRow:
    states, hidden = engine.initial(1)
    return UserRow(user, states[0], hidden[0], NO_TIMESTAMP, np.zeros(0, np.int32), 0)


def group_starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where any of the (sorted) ``keys`` changes from the previous position, 0 included."""
    changes = np.zeros(len(keys[0]), bool)
    changes[0] = True
    for key in keys:
        changes[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(changes)


def screen(rows: list[UserRow], user: np.ndarray, item: np.ndarray, ts: np.ndarray, report: ApplyReport) -> np.ndarray:
    """The mask of events to apply, over events sorted by (user, ts, arrival); counts the others."""
    last_ts = np.array([row.last_ts for row in rows], np.int64)[user]
    stale = ts < last_ts
    by_key = np.lexsort((item, ts, user))  # stable: equal events stay in arrival order
    repeat = np.ones(len(ts), bool)
    repeat[by_key[group_starts(user[by_key], ts[by_key], item[by_key])]] = False
    for i in np.flatnonzero(~stale & ~repeat & (ts == last_ts)):  # rare: the user's last time again
        repeat[i] = item[i] in rows[user[i]].last_items
    report.stale += int(stale.sum())
    report.seconds_like += int((stale & looks_like_seconds(ts, last_ts)).sum())
    report.duplicates += int((repeat & ~stale).sum())
    return ~stale & ~repeat


def apply_events(store: StateStore, engine: Engine, events: Sequence[Event] | EventColumns) -> ApplyReport:
    """Advance every affected user by its new events, all users in one batched engine call."""
    batch = events if isinstance(events, EventColumns) else EventColumns.of(events)
    report = ApplyReport()
    engine.check_items(batch.items)
    if not batch.users:
        return report
    index: dict[str, int] = {}
    user_of = np.array([index.setdefault(user, len(index)) for user in batch.users], np.int64)
    order = np.lexsort((batch.ts, user_of))  # by user, then time; ties keep arrival order
    user, item, ts = user_of[order], batch.items[order], batch.ts[order]
    with store.write():
        stored = store.get_many(index)
        report.new_users = len(index) - len(stored)
        rows = [stored.get(name) or fresh_row(engine, name) for name in index]
        keep = screen(rows, user, item, ts, report)
        user, item, ts = user[keep], item[keep], ts[keep]
        if not len(user):
            return report
        starts = group_starts(user)
        ends = np.r_[starts[1:], len(user)]
        changed = [rows[u] for u in user[starts]]
        items, times = left_padded(np.split(item, starts[1:])), left_padded(np.split(ts, starts[1:]))
        states = np.stack([row.state for row in changed])
        hidden = np.stack([row.hidden for row in changed])
        engine.advance(items, states, hidden, times)
        last_start = np.r_[group_starts(user, ts), len(user)]
        tails = last_start[np.searchsorted(last_start, ends) - 1]  # first event at each user's new last time
        for b, row in enumerate(changed):
            at_last = item[tails[b] : ends[b]].astype(np.int32)
            row.last_items = np.concatenate([row.last_items, at_last]) if ts[tails[b]] == row.last_ts else at_last
            row.last_ts = int(ts[tails[b]])
            row.state, row.hidden = states[b], hidden[b]
            row.events += int(ends[b] - starts[b])
        report.applied = len(user)
        store.put_many(changed, states)
        slots = np.array([row.slot for row in rows], np.int64)
        store.add_seen(zip(slots[user].tolist(), item.tolist(), strict=True))
        names = list(index)
        store.append_journal(zip([names[u] for u in user], item.tolist(), ts.tolist(), strict=True))
    return report
