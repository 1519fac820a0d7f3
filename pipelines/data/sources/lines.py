"""Real line numbers for error messages.

DuckDB numbers records, not lines: a staged row's offset skips blank lines, and its reject line counts
blank lines but not the line breaks inside quoted values. Either way a message would send the user to the
wrong line. On the error path only, the one file is scanned with Python's ``csv`` module up to the bad
record, skipping blank records as DuckDB does, to find the line where that record starts.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

from pipelines.data.sources.files import open_binary


def record_starts(path: Path, delimiter: str) -> Iterator[tuple[int, bool]]:
    """(first line, is blank) of every CSV record of ``path``, the header included."""
    # csv needs a one-character delimiter; quoting starts a field only after one, so the first
    # character of a longer delimiter (MovieLens ``::``) finds the same records.
    with open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, delimiter=delimiter[0], quotechar='"', doublequote=True)
        start = 1
        for record in reader:
            yield start, not record
            start = reader.line_num + 1


def data_record_line(path: Path, delimiter: str, header: bool, offset: int) -> int | None:
    """The line where data record ``offset`` (0-based, after the header, blank lines skipped) starts."""
    records = itertools.islice(record_starts(path, delimiter), 1 if header else 0, None)
    return _nth((start for start, blank in records if not blank), offset)


def parser_record_line(path: Path, delimiter: str, parser_line: int) -> int | None:
    """The line where the record DuckDB calls line ``parser_line`` (1-based, blank records counted) starts."""
    return _nth((start for start, _ in record_starts(path, delimiter)), parser_line - 1)


def _nth(starts: Iterator[int], index: int) -> int | None:
    """The ``index``-th start line, or None when the file cannot be scanned that far (the caller falls back
    to DuckDB's own number)."""
    try:
        for number, start in enumerate(starts):
            if number == index:
                return start
    except (csv.Error, OSError, EOFError):
        return None
    return None
