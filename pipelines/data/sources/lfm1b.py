"""LFM-1b listening events: ``LFM-1b_LEs.txt``-style tab-separated files without a header,
``user-id, artist-id, album-id, track-id, timestamp`` (unix seconds); the item is a track or an artist.
Staged rows are normalized like MovieLens (``generic.normalize``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.data.sources.staging import Layout, Staged, stage_csv

DEFAULT_GLOBS = ["*.txt", "*.txt.gz"]
COLUMNS = ["user-id", "artist-id", "album-id", "track-id", "timestamp"]


def stage(con: duckdb.DuckDBPyConnection, files: list[Path], item_level: str) -> Staged:
    """Validate and parse LFM-1b files into ``raw_stage``; ``item_level`` is ``track`` or ``artist``."""
    names = {"user-id": "user_raw", "timestamp": "ts_raw", f"{item_level}-id": "item_raw"}
    columns = {names.get(name, name.replace("-", "_")): "BIGINT" for name in COLUMNS}
    layout = Layout({v: k for k, v in names.items()}, delimiter="\t", header=False)
    stage_csv(con, files, layout=layout, columns=columns)
    return Staged(layout, "s", "format")
