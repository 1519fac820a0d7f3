"""Landing-folder files and the checks that turn bad input into one-line errors naming file, line, column.

Cheap checks (empty file, header, truncated last line) read only the first and last bytes in Python;
the parse itself is DuckDB's, whose rejected rows are reported here instead of being dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.data.sql import fetch_one, run_sql


class IngestError(ValueError):
    """Raw input that cannot be ingested; the message is one line: file, line/row, column, problem."""


@dataclass(frozen=True)
class ColumnLabels:
    """Maps the staging names (``user_raw``, ...) back to the names a user sees in the file."""

    labels: dict[str, str]
    first_data_line: int  # 2 after a header, 1 without one; 0 counts Parquet rows from zero
    unit: str = "line"

    def label(self, column: str | None) -> str:
        return self.labels.get(column or "", column or "?")


def landing_files(folder: Path, pattern: str) -> list[Path]:
    """The files to ingest, in name order (which fixes the source row ids of equal timestamps)."""
    if not folder.is_dir():
        raise IngestError(f"{folder}: landing folder does not exist")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise IngestError(f"{folder}: no files match {pattern!r}")
    return files


def check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: line 1: empty file (0 bytes)")


def check_complete_last_line(path: Path) -> None:
    """A file cut off mid-write ends without a newline; its last value may look valid but be truncated."""
    with path.open("rb") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
    with path.open("rb") as f:
        line = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) + 1
    raise IngestError(f"{path}: line {line}: last line has no line ending (truncated file?)")


def read_header(path: Path, delimiter: str) -> list[str]:
    with path.open("rb") as f:
        first = f.readline()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: line 1: header is not valid UTF-8 (byte {e.start})") from None
    return [name.strip().strip('"') for name in text.rstrip("\r\n").split(delimiter)]


def check_header(path: Path, delimiter: str, expected: list[str]) -> None:
    """The header must name exactly the expected columns, in order (columns are bound by position)."""
    found = read_header(path, delimiter)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing:
        raise IngestError(f"{path}: line 1: column {missing[0]!r} missing from header")
    if extra:
        raise IngestError(f"{path}: line 1: column {extra[0]!r} not expected (expected {expected})")
    for position, (want, got) in enumerate(zip(expected, found, strict=True), start=1):
        if want != got:
            raise IngestError(f"{path}: line 1: column {got!r} at position {position}, expected {want!r}")


def stage_csv(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    *,
    header: bool,
    delimiter: str,
    columns: dict[str, str],
    labels: ColumnLabels,
) -> None:
    """Parse CSV files into ``raw_stage``, or raise an IngestError for the first bad file, row or value."""
    for path in files:
        check_not_empty(path)
        check_complete_last_line(path)
    run_sql(con, "stage_csv", files=[str(f) for f in files], header=header, delimiter=delimiter, columns=columns)
    raise_on_rejects(con, labels)
    raise_on_header_only_files(con, files, labels)
    raise_on_bad_values(con, labels)


def raise_on_rejects(con: duckdb.DuckDBPyConnection, labels: ColumnLabels) -> None:
    """Turn the first row the CSV parser rejected into an IngestError."""
    row = next(iter(run_sql(con, "stage_rejects").fetchall()), None)
    if row is None:
        return
    path, line, column, error_type, csv_line, message = row
    problem = {
        "CAST": f"cannot parse {csv_line!r}: {message}",
        "MISSING COLUMNS": f"too few columns ({message})",
        "TOO MANY COLUMNS": f"too many columns ({message})",
        "INVALID UNICODE": "invalid UTF-8 bytes",
        "INVALID ENCODING": "invalid UTF-8 bytes",
        "UNQUOTED VALUE": "badly quoted value",
    }.get(error_type, f"{error_type}: {message}")
    problem = " ".join(problem.split())
    raise IngestError(f"{path}: line {line}: column {labels.label(column)!r}: {problem}")


def raise_on_header_only_files(con: duckdb.DuckDBPyConnection, files: list[Path], labels: ColumnLabels) -> None:
    row = next(iter(run_sql(con, "stage_empty_files", files=[str(f) for f in files]).fetchall()), None)
    if row is not None:
        raise IngestError(f"{row[0]}: {labels.unit} {labels.first_data_line}: no data rows")


def raise_on_bad_values(con: duckdb.DuckDBPyConnection, labels: ColumnLabels) -> None:
    """NULL ids and NULL or negative timestamps are errors, never silently dropped rows."""
    row = next(iter(run_sql(con, "stage_bad_value").fetchall()), None)
    if row is None:
        return
    path, offset, column, problem = row
    what = "negative timestamp" if problem == "negative" else "missing or unparsable value"
    position = f"{labels.unit} {offset + labels.first_data_line}"
    raise IngestError(f"{path}: {position}: column {labels.label(column)!r}: {what}")


def count_staged(con: duckdb.DuckDBPyConnection) -> int:
    return int(fetch_one(con, "stage_count")[0])
