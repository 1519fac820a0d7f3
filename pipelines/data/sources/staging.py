"""The staging table ``raw_stage`` and the checks that turn its bad rows into one-line errors.

DuckDB parses; rows it rejects, rows with a missing id or timestamp, ids with control characters and
implausible timestamps are reported here, naming the file, the line (or Parquet row) where a user finds the
value, and the column as the file names it, instead of being silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from pipelines.data.sources import timestamps
from pipelines.data.sources.files import (
    IngestError,
    check_complete_last_line,
    check_not_empty,
    clip,
)
from pipelines.data.sources.lines import data_record_line, parser_record_line
from pipelines.data.sql import fetch_one, run_sql

CONTROL_CHARACTERS = {chr(c) for c in [*range(0x20), 0x7F]}
UnitFix = Literal["setting", "format", "none"]  # how a user changes the time unit (timestamps.implausible)


@dataclass(frozen=True)
class Layout:
    """How staged rows map back to a file: column names as the file has them, and lines or Parquet rows."""

    labels: dict[str, str]  # staging column (``user_raw``, ...) -> the file's column name
    delimiter: str = ","  # "" for Parquet, whose rows are numbered from 0
    header: bool = True
    text_ids: bool = False  # ids staged as text: trimmed, and checked for control characters

    def label(self, column: str | None) -> str:
        return self.labels.get(column or "", column or "?")

    def first_data_row(self) -> str:
        if not self.delimiter:
            return "row 0"
        return "line 2" if self.header else "line 1"

    def data_row(self, path: str, offset: int) -> str:
        """Where data row ``offset`` (0-based within its file) is: its real line, or its Parquet row."""
        if not self.delimiter:
            return f"row {offset}"
        line = data_record_line(Path(path), self.delimiter, self.header, offset)
        return f"line {line or offset + (2 if self.header else 1)}"

    def parser_row(self, path: str, parser_line: int) -> str:
        return f"line {parser_record_line(Path(path), self.delimiter, parser_line) or parser_line}"


@dataclass(frozen=True)
class Staged:
    """What ``raw_stage`` holds: where its rows come from, and the unit of its ``ts_raw`` values."""

    layout: Layout
    time_unit: str  # a key of timestamps.UNITS
    unit_fix: UnitFix


def stage_csv(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    *,
    layout: Layout,
    sql: str = "stage_csv",
    **params: object,
) -> None:
    """Parse CSV files into ``raw_stage`` with ``sql/<sql>.sql``, or raise an IngestError for the first bad
    file, row or value."""
    for path in files:
        check_not_empty(path)
        check_complete_last_line(path)
    names = [str(f) for f in files]
    run_sql(con, "stage_clear_rejects")
    run_sql(con, "stage_files", files=names)
    try:
        run_sql(con, sql, files=names, header=layout.header, delimiter=layout.delimiter, **params)
    except (duckdb.IOException, duckdb.InvalidInputException) as error:
        # e.g. a truncated gzip stream; DuckDB names the file somewhere in its (multi-line) message
        message = str(error)
        where = next((name for name in names if name in message), names[0])
        raise IngestError(f"{where}: cannot read the file ({clip(message.splitlines()[0], 160)})") from None
    raise_on_rejects(con, layout)
    raise_on_header_only_files(con, files, layout)
    raise_on_bad_values(con, layout)


def raise_on_rejects(con: duckdb.DuckDBPyConnection, layout: Layout) -> None:
    """Turn the first row the CSV parser rejected into an IngestError."""
    row = next(iter(run_sql(con, "stage_rejects").fetchall()), None)
    if row is None:
        return
    path, line, column, error_type, csv_line, message = row
    message = clip(" ".join(str(message).split()))
    problem = {
        "CAST": f"cannot parse {clip(csv_line)!r}: {message}",
        "MISSING COLUMNS": f"too few columns ({message})",
        "TOO MANY COLUMNS": f"too many columns ({message})",
        "INVALID UNICODE": "invalid UTF-8 bytes",
        "INVALID ENCODING": "invalid UTF-8 bytes",
        "UNQUOTED VALUE": "badly quoted value",
    }.get(error_type, f"{error_type}: {message}")
    raise IngestError(f"{path}: {layout.parser_row(path, line)}: column {layout.label(column)!r}: {problem}")


def raise_on_header_only_files(con: duckdb.DuckDBPyConnection, files: list[Path], layout: Layout) -> None:
    row = next(iter(run_sql(con, "stage_empty_files", files=[str(f) for f in files]).fetchall()), None)
    if row is not None:
        raise IngestError(f"{row[0]}: {layout.first_data_row()}: no data rows")


def raise_on_bad_values(con: duckdb.DuckDBPyConnection, layout: Layout) -> None:
    """NULL ids, NULL or negative timestamps and ids with control characters are errors, never silently
    dropped or kept rows."""
    row = next(iter(run_sql(con, "stage_bad_value").fetchall()), None)
    if row is None and layout.text_ids:
        row = next(iter(run_sql(con, "stage_bad_text_id").fetchall()), None)
    if row is None:
        return
    path, offset, user, item, ts = row
    column, problem = _problem(user, item, ts)
    raise IngestError(f"{path}: {layout.data_row(path, offset)}: column {layout.label(column)!r}: {problem}")


def _problem(user: object, item: object, ts: int | None) -> tuple[str, str]:
    """The first bad value of a staged row, as (staging column, what is wrong with it)."""
    for column, value in (("user_raw", user), ("item_raw", item)):
        if value is None:
            return column, "missing or unparsable value"
        control = next((c for c in str(value) if c in CONTROL_CHARACTERS), None)
        if control is not None:
            return column, f"id {clip(value)!r} contains the control character U+{ord(control):04X}"
    if ts is None:
        return "ts_raw", "missing or unparsable value"
    return "ts_raw", "negative timestamp"


def raise_on_implausible_timestamps(con: duckdb.DuckDBPyConnection, staged: Staged, window: tuple[int, int]) -> None:
    """The first staged timestamp outside ``window`` (ms), compared in its own unit, fails the run."""
    low, high = timestamps.raw_bounds(window, staged.time_unit)
    row = next(iter(run_sql(con, "stage_implausible_time", low=low, high=high).fetchall()), None)
    if row is None:
        return
    path, offset, raw = row
    problem = timestamps.implausible(raw, staged.time_unit, window, staged.unit_fix)
    where = staged.layout.data_row(path, offset)
    raise IngestError(f"{path}: {where}: column {staged.layout.label('ts_raw')!r}: {problem}")


def count_staged(con: duckdb.DuckDBPyConnection) -> int:
    return int(fetch_one(con, "stage_count")[0])
