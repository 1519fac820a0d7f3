"""``raw_events`` -> ``events``, ``user_map``, ``item_map``: deduplicate, filter, assign dense ids.

Everything runs in one transaction, so a failure leaves the previous tables in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.data.config import EventsConfig
from pipelines.data.sql import fetch_one, run_sql


@dataclass(frozen=True)
class EventsSummary:
    raw_events: int
    duplicates_dropped: int
    filtered_events_dropped: int
    filter_rounds: int
    events: int
    users: int
    items: int


def build_events(con: duckdb.DuckDBPyConnection, config: EventsConfig) -> EventsSummary:
    raw = int(fetch_one(con, "count_raw_events")[0])
    con.execute("BEGIN TRANSACTION")
    try:
        run_sql(con, "events_dedup")
        deduplicated = int(fetch_one(con, "kept_count")[0])
        rounds = _apply_filters(con, config)
        kept = int(fetch_one(con, "kept_count")[0])
        if kept == 0:
            raise ValueError(
                f"the filters removed every event (min_events_per_user={config.min_events_per_user}, "
                f"min_item_occurrences={config.min_item_occurrences}, k_core={config.k_core})"
            )
        run_sql(con, "user_map")
        run_sql(con, "item_map")
        run_sql(con, "events")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    events, users, items = fetch_one(con, "events_stats")
    return EventsSummary(raw, raw - deduplicated, deduplicated - kept, rounds, events, users, items)


def _apply_filters(con: duckdb.DuckDBPyConnection, config: EventsConfig) -> int:
    """Items first, then users (so user minimums always hold); with k_core, repeat until nothing changes."""
    rounds = 0
    while True:
        rounds += 1
        removed = 0
        if config.min_item_occurrences > 1:
            removed += _deleted(run_sql(con, "filter_items", min_count=config.min_item_occurrences))
        if config.min_events_per_user > 1:
            removed += _deleted(run_sql(con, "filter_users", min_count=config.min_events_per_user))
        if not config.k_core or removed == 0:
            return rounds


def _deleted(result: duckdb.DuckDBPyConnection) -> int:
    row = next(iter(result.fetchall()), None)
    return int(row[0]) if row else 0
