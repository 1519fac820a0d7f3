"""Applying new events to stored users: timestamp order, idempotent duplicates, one batched step per batch.

Per user, events are applied in timestamp order (ties keep the order they came in). An event at the user's
last applied timestamp whose item was already applied there is a duplicate and skipped; one older than
the last applied timestamp is stale (already applied, or too late to apply without re-encoding the
history) and skipped too; the report counts both. Everything for one batch happens in one store
transaction, so a batch is applied whole or not at all.
"""

from __future__ import annotations

from collections import defaultdict
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


def looks_like_seconds(ts: int, last_ts: int) -> bool:
    return SECONDS_LIKE[0] <= ts < SECONDS_LIKE[1] <= last_ts


def fresh_row(engine: Engine, user: str) -> UserRow:
    states, hidden = engine.initial(1)
    return UserRow(user, states[0], hidden[0], NO_TIMESTAMP, np.zeros(0, np.int32), 0)


def accepted_events(row: UserRow, events: list[Event], report: ApplyReport) -> list[Event]:
    """The user's events still to apply, in order; updates ``row.last_ts`` / ``row.last_items``."""
    accepted = []
    at_last = set(row.last_items.tolist())
    for event in sorted(events, key=lambda e: e.ts):
        if event.ts < row.last_ts:
            report.stale += 1
            report.seconds_like += looks_like_seconds(event.ts, row.last_ts)
            continue
        if event.ts > row.last_ts:
            row.last_ts, at_last = event.ts, set()
        if event.item in at_last:
            report.duplicates += 1
            continue
        at_last.add(event.item)
        accepted.append(event)
    row.last_items = np.array(sorted(at_last), np.int32)
    return accepted


def apply_events(store: StateStore, engine: Engine, events: Sequence[Event]) -> ApplyReport:
    """Advance every affected user by its new events, all users in one batched engine call."""
    report = ApplyReport()
    engine.check_items(np.array([event.item for event in events], dtype=np.int64))
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_user[event.user].append(event)
    if not by_user:
        return report
    with store.write():
        rows = store.get_many(by_user)
        report.new_users = len(by_user) - len(rows)
        changed: list[tuple[UserRow, list[Event]]] = []
        for user, user_events in by_user.items():
            row = rows.get(user) or fresh_row(engine, user)
            accepted = accepted_events(row, user_events, report)
            if accepted:
                changed.append((row, accepted))
        if not changed:
            return report
        ends = np.cumsum([len(accepted) for _, accepted in changed])[:-1]
        items = left_padded(np.split(np.array([e.item for _, accepted in changed for e in accepted]), ends))
        times = left_padded(np.split(np.array([e.ts for _, accepted in changed for e in accepted]), ends))
        states = np.stack([row.state for row, _ in changed])
        hidden = np.stack([row.hidden for row, _ in changed])
        engine.advance(items, states, hidden, times)
        for b, (row, accepted) in enumerate(changed):
            row.state, row.hidden = states[b], hidden[b]
            row.events += len(accepted)
            report.applied += len(accepted)
        store.put_many([row for row, _ in changed], states)
        store.add_seen((row.slot, e.item) for row, accepted in changed for e in accepted)
        store.append_journal((e.user, e.item, e.ts) for _, accepted in changed for e in accepted)
    return report
