"""KuaiRand raw logs: headed CSV in the official 19-column layout, one exposure per row.

Events are ordered by ``time_ms`` (``hourmin`` is rounded, sometimes to the next hour). Which exposures
count as interactions is the user's choice: all, ``is_click = 1`` or ``long_view = 1`` (read as integers).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.data.sources.files import check_header, check_not_empty
from pipelines.data.sources.staging import Layout, Staged, stage_csv
from pipelines.data.sql import run_sql

DEFAULT_GLOBS = ["*.csv", "*.csv.gz"]
COLUMNS = [
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
    "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
    "comment_stay_time", "is_profile_enter", "is_rand", "tab",
]  # fmt: skip
STAGE_NAMES = {"user_id": "user_raw", "video_id": "item_raw", "time_ms": "ts_raw"}


def stage(con: duckdb.DuckDBPyConnection, files: list[Path]) -> Staged:
    """Validate and parse KuaiRand files into ``raw_stage`` (every column an integer; time_ms in ms)."""
    for path in files:
        check_not_empty(path)
        check_header(path, ",", COLUMNS)
    columns = {STAGE_NAMES.get(name, name): "BIGINT" for name in COLUMNS}
    layout = Layout({v: k for k, v in STAGE_NAMES.items()}, delimiter=",", header=True)
    stage_csv(con, files, layout=layout, columns=columns)
    return Staged(layout, "ms", "format")


def normalize(con: duckdb.DuckDBPyConnection, interactions: str) -> None:
    """``raw_events`` from the staged rows that count as interactions."""
    run_sql(con, "raw_events_kuairand", interactions=interactions)
