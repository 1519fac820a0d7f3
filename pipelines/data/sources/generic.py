"""Generic sources: MovieLens ``ratings.dat`` (``::``-separated, no header), a headed CSV with a column
mapping, and Parquet files with the same mapping. Ids of headed CSV and Parquet are kept as text.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.data.sources.files import (
    ColumnLabels,
    IngestError,
    check_not_empty,
    raise_on_bad_values,
    raise_on_header_only_files,
    read_header,
    stage_csv,
)
from pipelines.data.sql import run_sql

DEFAULT_GLOBS = {"movielens": "*.dat", "csv": "*.csv", "parquet": "*.parquet"}
MOVIELENS_COLUMNS = ["UserID", "MovieID", "Rating", "Timestamp"]
TIME_FACTORS = {"s": 1000, "ms": 1}


def stage_movielens(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    columns = {"user_raw": "BIGINT", "item_raw": "BIGINT", "rating": "DOUBLE", "ts_raw": "BIGINT"}
    labels = ColumnLabels(dict(zip(columns, MOVIELENS_COLUMNS, strict=True)), first_data_line=1)
    stage_csv(con, files, header=False, delimiter="::", columns=columns, labels=labels)


def stage_csv_mapped(
    con: duckdb.DuckDBPyConnection, files: list[Path], mapping: dict[str, str], delimiter: str
) -> None:
    """``mapping`` names the file's user, item and time columns (keys ``user_raw``, ``item_raw``, ``ts_raw``)."""
    for path in files:
        check_not_empty(path)
    header = read_header(files[0], delimiter)
    for path in files:
        found = read_header(path, delimiter)
        for column in mapping.values():
            if column not in found:
                raise IngestError(f"{path}: line 1: column {column!r} missing from header (found {found})")
        if found != header:
            raise IngestError(f"{path}: line 1: header {found} differs from {files[0].name}'s {header}")
    staged = {column: name for name, column in mapping.items()}
    columns = {
        staged.get(c, f"extra_{i}"): "BIGINT" if staged.get(c) == "ts_raw" else "VARCHAR" for i, c in enumerate(header)
    }
    stage_csv(
        con, files, header=True, delimiter=delimiter, columns=columns, labels=ColumnLabels(mapping, first_data_line=2)
    )


def stage_parquet(con: duckdb.DuckDBPyConnection, files: list[Path], mapping: dict[str, str]) -> None:
    for path in files:
        try:
            names = pq.read_schema(path).names
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise IngestError(f"{path}: row 0: not a readable Parquet file ({type(e).__name__})") from None
        for column in mapping.values():
            if column not in names:
                raise IngestError(f"{path}: row 0: column {column!r} missing (found {names})")
    run_sql(
        con,
        "stage_parquet",
        files=[str(f) for f in files],
        user_column=mapping["user_raw"],
        item_column=mapping["item_raw"],
        time_column=mapping["ts_raw"],
    )
    labels = ColumnLabels(mapping, first_data_line=0, unit="row")
    raise_on_header_only_files(con, files, labels)
    raise_on_bad_values(con, labels)


def normalize(con: duckdb.DuckDBPyConnection, time_unit: str) -> None:
    run_sql(con, "raw_events", ts_factor=TIME_FACTORS[time_unit])
