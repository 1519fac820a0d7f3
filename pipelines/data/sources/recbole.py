"""RecBole atomic interaction files (``*.inter``): tab-separated, a typed header such as
``user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float``.

Published sequential-recommendation numbers (SASRec, GRU4Rec, Mamba4Rec on MovieLens-1M, ...) are run by
RecBole on these files, so reading them as they are keeps our data identical to theirs. The fields
``user_id``, ``item_id`` and ``timestamp`` are found by name, whatever their type suffix and position;
timestamps are seconds (fractions dropped); every other column is ignored. Staged rows are normalized like
MovieLens (``generic.normalize``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.data.sources.files import IngestError, check_not_empty, clip, read_header
from pipelines.data.sources.staging import Layout, Staged, stage_csv

DEFAULT_GLOBS = ["*.inter"]
DELIMITER = "\t"
# staging column -> the column RecBole writes; only the field name before ':' must match
FIELDS = {"user_raw": "user_id:token", "item_raw": "item_id:token", "ts_raw": "timestamp:float"}


def field_name(column: str) -> str:
    """The field a typed header column names: ``item_id:token`` -> ``item_id``."""
    return column.split(":", 1)[0].strip()


def field_columns(path: Path, header: list[str]) -> dict[str, str]:
    """The header column of each needed field (``{"user_raw": "user_id:token", ...}``), or an IngestError
    naming the file and the first missing or repeated field."""
    found: dict[str, str] = {}
    for column in header:
        field = field_name(column)
        if field in found:
            raise IngestError(f"{path}: line 1: field {clip(field)!r} named twice: {found[field]!r}, {clip(column)!r}")
        found[field] = column
    columns = {}
    for staging, usual in FIELDS.items():
        field = field_name(usual)
        if field not in found:
            raise IngestError(f"{path}: line 1: column {usual!r} missing: no field {field!r} in {clip(header)}")
        columns[staging] = found[field]
    return columns


def common_header(files: list[Path]) -> list[str]:
    """The header all files share; one read binds every column by name, so headers must be identical."""
    first = read_header(files[0], DELIMITER)
    for path in files:
        check_not_empty(path)
        header = read_header(path, DELIMITER)
        field_columns(path, header)
        if header != first:
            raise IngestError(f"{path}: line 1: header {clip(header)} differs from {files[0].name}'s {clip(first)}")
    return first


def stage(con: duckdb.DuckDBPyConnection, files: list[Path]) -> Staged:
    """Validate and parse ``.inter`` files into ``raw_stage``: tokens as text, the timestamp in seconds."""
    header = common_header(files)
    labels = field_columns(files[0], header)
    columns = {name: "DOUBLE" if name == labels["ts_raw"] else "VARCHAR" for name in header}
    layout = Layout(labels, delimiter=DELIMITER, header=True, text_ids=True)
    stage_csv(
        con,
        files,
        layout=layout,
        sql="stage_recbole",
        columns=columns,
        user_column=labels["user_raw"],
        item_column=labels["item_raw"],
        time_column=labels["ts_raw"],
    )
    return Staged(layout, "s", "format")
