"""LFM-1b listening events: ``LFM-1b_LEs.txt``-style tab-separated files without a header,
``user-id, artist-id, album-id, track-id, timestamp`` (unix seconds); the item is a track or an artist.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.data.sources.files import ColumnLabels, stage_csv
from pipelines.data.sql import run_sql

DEFAULT_GLOB = "*.txt"
COLUMNS = ["user-id", "artist-id", "album-id", "track-id", "timestamp"]


def stage(con: duckdb.DuckDBPyConnection, files: list[Path], item_level: str) -> None:
    """Validate and parse LFM-1b files into ``raw_stage``; ``item_level`` is ``track`` or ``artist``."""
    names = {"user-id": "user_raw", "timestamp": "ts_raw", f"{item_level}-id": "item_raw"}
    columns = {names.get(name, name.replace("-", "_")): "BIGINT" for name in COLUMNS}
    labels = ColumnLabels({v: k for k, v in names.items()}, first_data_line=1)
    stage_csv(con, files, header=False, delimiter="\t", columns=columns, labels=labels)


def normalize(con: duckdb.DuckDBPyConnection) -> None:
    run_sql(con, "raw_events", ts_factor=1000)
