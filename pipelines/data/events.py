"""``raw_events`` -> ``events``, ``user_map``, ``item_map``: deduplicate, filter, assign dense ids; and
``events`` -> ``sequences``, one row of lists per user.

Each build runs in one transaction, so a failure leaves the previous tables in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from pipelines.data.config import EventsConfig
from pipelines.data.sql import fetch_one, run_sql

# DuckDB memory per event while a user's events are listed: 4 M events fit a 610 MiB limit, 10 M do not.
LISTED_EVENT_BYTES = 200
SIZE_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}  # current_setting's units


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


def build_sequences(con: duckdb.DuckDBPyConnection, events_per_batch: int | None = None) -> int:
    """The ``sequences`` table, built ``events_per_batch`` events' worth of users at a time (default: what
    the connection's memory limit holds), so that its memory follows the batch rather than the log (LFM-1b:
    1.09 B events); returns the number of batches."""
    return build_by_user_batches(con, "sequences", "sequences_insert", events_per_batch)


def build_by_user_batches(
    con: duckdb.DuckDBPyConnection, create: str, insert: str, events_per_batch: int | None = None, **params: Any
) -> int:
    """Run ``sql/<create>.sql``, then ``sql/<insert>.sql`` (with ``params``) once per batch of users holding
    about ``events_per_batch`` events (default: what the memory limit holds), all in one transaction so that a
    failure keeps the previous table; returns the number of batches."""
    events_per_batch = events_per_batch or max(memory_limit_bytes(con) // LISTED_EVENT_BYTES, 1)
    batches = run_sql(con, "user_batches", events_per_batch=events_per_batch).fetchall()
    con.execute("BEGIN TRANSACTION")
    try:
        run_sql(con, create)
        for first_user, end_user in batches:
            run_sql(con, insert, first_user=first_user, end_user=end_user, **params)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(batches)


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's DuckDB memory limit, which ``current_setting`` writes as e.g. '5.5 GiB'."""
    number, unit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0].split()
    return int(float(number) * SIZE_UNITS[unit])


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
