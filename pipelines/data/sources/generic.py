"""Generic sources: MovieLens ``ratings.dat`` (``::``-separated, no header), CSV with a column mapping
(headed, or headerless with the columns named in the config) and Parquet files with the same mapping.
Ids of csv and Parquet sources are kept as trimmed text; an optional filter keeps only some rows (e.g.
Taobao's ``behavior = buy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.sources.files import IngestError, clip, read_header
from pipelines.data.sources.staging import (
    Layout,
    Staged,
    raise_on_bad_values,
    raise_on_header_only_files,
    stage_csv,
)
from pipelines.data.sources.timestamps import UNITS
from pipelines.data.sql import run_sql

DEFAULT_GLOBS = {"movielens": ["*.dat", "*.dat.gz"], "csv": ["*.csv", "*.csv.gz"], "parquet": ["*.parquet"]}
MOVIELENS_COLUMNS = ["UserID", "MovieID", "Rating", "Timestamp"]


@dataclass(frozen=True)
class ColumnMapping:
    """Which of a file's columns hold the user, the item and the time, and which one filters rows."""

    user: str
    item: str
    time: str
    filter: str = ""  # empty: no filter
    filter_values: tuple[str, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return {"user_raw": self.user, "item_raw": self.item, "ts_raw": self.time}

    @property
    def needed(self) -> list[str]:
        return [self.user, self.item, self.time, *([self.filter] if self.filter else [])]

    def sql_params(self) -> dict[str, str]:
        return {
            "user_column": self.user,
            "item_column": self.item,
            "time_column": self.time,
            "filter_column": self.filter or self.user,
        }


def stage_movielens(con: duckdb.DuckDBPyConnection, files: list[Path]) -> Staged:
    columns = {"user_raw": "BIGINT", "item_raw": "BIGINT", "rating": "DOUBLE", "ts_raw": "BIGINT"}
    layout = Layout(dict(zip(columns, MOVIELENS_COLUMNS, strict=True)), delimiter="::", header=False)
    stage_csv(con, files, layout=layout, columns=columns)
    return Staged(layout, "s", "format")


def stage_csv_mapped(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    mapping: ColumnMapping,
    *,
    delimiter: str,
    header: bool,
    names: list[str],
    time_unit: str,
) -> Staged:
    """Stage csv files by ``mapping``; ``names`` are the columns of headerless files (ignored with a header,
    where every file's header must match the first one's)."""
    if header:
        names = _common_header(files, delimiter, mapping)
    columns = {name: "BIGINT" if name == mapping.time else "VARCHAR" for name in names}
    layout = Layout(mapping.labels, delimiter=delimiter, header=header, text_ids=True)
    stage_csv(con, files, layout=layout, sql="stage_csv_mapped", columns=columns, **mapping.sql_params())
    return Staged(layout, time_unit, "setting")


def _common_header(files: list[Path], delimiter: str, mapping: ColumnMapping) -> list[str]:
    header = read_header(files[0], delimiter)
    for path in files:
        found = read_header(path, delimiter)
        for column in mapping.needed:
            if column not in found:
                raise IngestError(f"{path}: line 1: column {clip(column)!r} missing from header (found {clip(found)})")
        if found != header:
            raise IngestError(f"{path}: line 1: header {clip(found)} differs from {files[0].name}'s {clip(header)}")
    return header


def stage_parquet(con: duckdb.DuckDBPyConnection, files: list[Path], mapping: ColumnMapping, time_unit: str) -> Staged:
    """Stage Parquet files by ``mapping``; a time column typed as timestamp or date is read as such."""
    time_types = {_time_type(path, mapping) for path in files}
    if len(time_types) > 1:
        raise IngestError(f"{files[0]}: row 0: column {mapping.time!r} has different types across files")
    datetime_column = pa.types.is_timestamp(time_type := time_types.pop()) or pa.types.is_date(time_type)
    sql = "stage_parquet_datetime" if datetime_column else "stage_parquet"
    names = [str(f) for f in files]
    run_sql(con, "stage_files", files=names)
    run_sql(con, sql, files=names, **mapping.sql_params())
    layout = Layout(mapping.labels, delimiter="", text_ids=True)
    raise_on_header_only_files(con, files, layout)
    raise_on_bad_values(con, layout)
    return Staged(layout, "ms", "none") if datetime_column else Staged(layout, time_unit, "setting")


def _time_type(path: Path, mapping: ColumnMapping) -> pa.DataType:
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise IngestError(f"{path}: row 0: not a readable Parquet file ({type(e).__name__})") from None
    for column in mapping.needed:
        if column not in schema.names:
            raise IngestError(f"{path}: row 0: column {clip(column)!r} missing (found {clip(schema.names)})")
    return schema.field(mapping.time).type


def normalize(con: duckdb.DuckDBPyConnection, time_unit: str) -> None:
    """``raw_events`` from staged MovieLens or LFM-1b rows."""
    multiply, divide = UNITS[time_unit]
    run_sql(con, "raw_events", multiply=multiply, divide=divide)


def normalize_mapped(con: duckdb.DuckDBPyConnection, staged: Staged, mapping: ColumnMapping) -> None:
    """``raw_events`` from staged csv or Parquet rows, filtered by the mapping's filter column."""
    multiply, divide = UNITS[staged.time_unit]
    run_sql(
        con,
        "raw_events_mapped",
        multiply=multiply,
        divide=divide,
        filter=bool(mapping.filter),
        filter_values=list(mapping.filter_values),
    )
