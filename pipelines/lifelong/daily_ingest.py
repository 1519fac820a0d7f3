"""Incremental ingest: the landed files of some days -> ``daily_events``, ``daily_user_map``,
``daily_item_map``, ``daily_sequence_chunks`` (read as the view ``daily_sequences``), replacing exactly
those days' rows.

Files are staged and normalized by the same parsers as the full ingest, in a private in-memory database
attached beside the warehouse (so the full path's ``raw_events`` is never touched), then merged into the
warehouse in one transaction: the days' old events are deleted, new users and items get the next dense
ids (existing ones keep theirs), and only the days' sequence chunks are rewritten (``daily_sequences``
joins a user's chunks, one per day), so a day's cost does not grow with the history. Ingesting days one
by one in day order gives the same tables, ids included, as ingesting them all in one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.data.config import RawEventsConfig
from pipelines.data.ingest import default_globs, normalize_staged, stage_files
from pipelines.data.sources.drift import DRIFT_FOLDER
from pipelines.data.sources.files import IngestError, check_unchanged, file_states, landing_files, resolve_landing_dir
from pipelines.data.sources.served import append_served, served_files
from pipelines.data.sources.staging import Staged, raise_on_implausible_timestamps
from pipelines.data.sources.timestamps import plausible_window
from pipelines.data.sql import fetch_one, run_sql
from pipelines.lifelong.partitions import day_of_file
from pipelines.paths import ProjectPaths

STEPS = (
    "daily_delete_events",
    "daily_delete_sequence_chunks",
    "daily_new_users",
    "daily_new_items",
    "daily_mapped_batch",
    "daily_insert_events",
    "daily_insert_sequence_chunks",
)
DAY_STEPS = {"daily_delete_events", "daily_delete_sequence_chunks"}  # the steps bound to the days being replaced


class DailyEventsConfig(RawEventsConfig):
    """What to ingest per day: the full ingest's fields, into the ``lifelong`` dataset by default."""

    dataset: str = "lifelong"


@dataclass(frozen=True)
class DailySummary:
    days: int
    files: int
    rows: int  # distinct events of these days after this ingest
    total_events: int
    users: int
    items: int


def landing_folder(config: RawEventsConfig, paths: ProjectPaths) -> Path:
    """The configured folder, else the source's; the synthetic source reads the drifting stream."""
    default = paths.landing / (DRIFT_FOLDER if config.source == "synthetic" else config.source)
    return resolve_landing_dir(paths.landing, config.landing_dir, default)


def files_by_day(config: RawEventsConfig, paths: ProjectPaths) -> dict[str, list[Path]]:
    """Every published landing file with a date in its name, grouped by that day (files in name order)."""
    folder = landing_folder(config, paths)
    patterns = [config.file_glob] if config.file_glob else default_globs(config)
    return by_day(landing_files(folder, patterns, paths.landing))


def by_day(files: list[Path]) -> dict[str, list[Path]]:
    """``files`` with a date in their names, grouped by that day (in the order given)."""
    days: dict[str, list[Path]] = {}
    for path in files:
        day = day_of_file(path)
        if day is not None:
            days.setdefault(day, []).append(path)
    return days


def ingest_days(
    con: duckdb.DuckDBPyConnection, config: RawEventsConfig, paths: ProjectPaths, days: list[str]
) -> DailySummary:
    """Replace the rows of ``days`` with what their landed files hold now, the service's day files included."""
    landed = files_by_day(config, paths)
    served = by_day(served_files(paths.served_events(config.dataset_name)))
    chosen = [(day, path) for day in sorted(days) for path in landed.get(day, [])]
    chosen_served = [(day, path) for day in sorted(days) for path in served.get(day, [])]
    if not chosen and not chosen_served:
        folder = landing_folder(config, paths)
        raise IngestError(
            f"{folder}: no landed file is named with a day in {days[0]}..{days[-1]} (e.g. log_20220105.csv)"
        )
    run_sql(con, "daily_attach_staging")
    try:
        with con.cursor() as staging:
            run_sql(staging, "daily_use_staging")
            rows = _stage_batch(staging, config, chosen, chosen_served)
        _merge(con, days)
    finally:
        run_sql(con, "daily_detach_staging")
    events, users, items, _, _ = fetch_one(con, "daily_stats")
    return DailySummary(len(days), len(chosen) + len(chosen_served), rows, int(events), int(users), int(items))


def _merge(con: duckdb.DuckDBPyConnection, days: list[str]) -> None:
    """Replace the days' rows with the staged batch, in one transaction."""
    run_sql(con, "daily_tables")
    con.execute("BEGIN TRANSACTION")
    try:
        for step in STEPS:
            run_sql(con, step, **({"days": days} if step in DAY_STEPS else {}))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _stage_batch(
    staging: duckdb.DuckDBPyConnection,
    config: RawEventsConfig,
    chosen: list[tuple[str, Path]],
    chosen_served: list[tuple[str, Path]],
) -> int:
    """Parse and check the days' files into ``daily_staging.day_batch`` (raw ids, ms, day, stable row id); the
    service's day files after the source's."""
    files = [path for _, path in chosen]
    every = chosen + chosen_served
    file_days = {"source_file": [str(p) for _, p in every], "day": [date.fromisoformat(d) for d, _ in every]}
    staging.register("file_days", pa.table(file_days))
    window = plausible_window(config.min_timestamp, config.max_timestamp)
    if files:
        before = file_states(files)
        try:
            staged = stage_files(staging, config, files)
        except IngestError:
            check_unchanged(before)
            raise
        check_unchanged(before)
        raise_on_implausible_timestamps(staging, staged, window)
        normalize_staged(staging, config, staged)
        _raise_on_off_day_rows(staging, staged)
    else:
        run_sql(staging, "raw_events_empty")
    # The service's day files hold each event in the file of its UTC day by construction (landing.py).
    append_served(staging, [path for _, path in chosen_served], window)
    return int(run_sql(staging, "daily_day_batch").fetchall()[0][0])


def _raise_on_off_day_rows(mem: duckdb.DuckDBPyConnection, staged: Staged) -> None:
    """A row whose time is not on its file's day would make a day's partition not own its events."""
    row = next(iter(run_sql(mem, "daily_off_day_row").fetchall()), None)
    if row is None:
        return
    path, offset, ts, day = row
    when = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="seconds")
    where = staged.layout.data_row(path, offset)
    raise IngestError(
        f"{path}: {where}: column {staged.layout.label('ts_raw')!r}: time {when} is not on the file's day {day}"
        " (a file holds one day of events, named by that day)"
    )
