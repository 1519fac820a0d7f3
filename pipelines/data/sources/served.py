"""The service's acknowledged events as part of a dataset's log: ``landing/served/<dataset>/served_events_<day>.csv``.

The serving pipelines write these day files (``pipelines/serving/landing.py``); whatever the dataset's source,
``raw_events`` and ``daily_events`` append their rows to the source's after staging and checking them like any
landing file, so the next refresh trains on what the service was told. Ids are text in the files and become the
source's own type; an id that cannot (text where the source's ids are integers) is an error naming its file,
line and column.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.data.sources.files import IngestError, clip, is_published
from pipelines.data.sources.staging import Layout, Staged, count_staged, raise_on_implausible_timestamps, stage_csv
from pipelines.data.sql import fetch_one, run_sql

FILE_GLOB = "served_events_*.csv"
LAYOUT = Layout({"user_raw": "user", "item_raw": "item", "ts_raw": "timestamp"}, delimiter=",", header=True)
COLUMNS = {"user_raw": "VARCHAR", "item_raw": "VARCHAR", "ts_raw": "BIGINT"}


def served_files(folder: Path) -> list[Path]:
    """The published day files of ``folder`` (none when the service never acknowledged an event), in name order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(FILE_GLOB) if p.is_file() and is_published(p.relative_to(folder)))


def append_served(con: duckdb.DuckDBPyConnection, files: list[Path], window: tuple[int, int]) -> int:
    """Stage, check and append the served events of ``files`` to ``raw_events`` (already built from the
    source); the rows appended."""
    if not files:
        return 0
    stage_csv(con, files, layout=LAYOUT, columns=COLUMNS)
    raise_on_implausible_timestamps(con, Staged(LAYOUT, "ms", "none"), window)
    integer_users, integer_items = fetch_one(con, "raw_events_id_types")
    bad = next(
        iter(run_sql(con, "stage_served_bad_id", integer_users=integer_users, integer_items=integer_items).fetchall()),
        None,
    )
    if bad is not None:
        path, offset, column, value = bad
        raise IngestError(
            f"{path}: {LAYOUT.data_row(path, offset)}: column {column!r}: {clip(value)!r} is not an integer, and the"
            " dataset's source has integer ids (an event the service accepted before it checked ids)"
        )
    staged = count_staged(con)
    run_sql(con, "raw_events_served", first_row=int(fetch_one(con, "raw_events_next_row")[0]))
    return staged
