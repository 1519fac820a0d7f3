"""Landing-folder files: which ones are read, whether they are safe and complete, and what their header says.

A run config must not be a way to read arbitrary files of the machine, so every folder and file resolves
(symlinks followed) inside the landing folder. Writers publish files by renaming ``<name>.part``; a file
that still changes while DuckDB reads it fails the run instead of loading a cut-off last row. Checks here
read only a file's first and last bytes; DuckDB does the parsing.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import BinaryIO

MAX_QUOTED = 80  # characters of a config value or of file content an error message quotes at most
MAX_HEADER_BYTES = 1 << 20
UNPUBLISHED_SUFFIXES = (".part", ".tmp")
PUBLISH_HINT = "publish files by writing {name}.part and renaming"


class IngestError(ValueError):
    """Raw input that cannot be ingested; the message is one line: file, line/row, column, problem."""


def clip(text: object, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters, so an error never echoes a file (or a pasted secret) at length."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_landing_dir(root: Path, landing_dir: str, default: Path) -> Path:
    """The folder to read: ``landing_dir`` (relative to the landing root ``root``) or ``default``.

    It must resolve inside ``root`` after following symlinks.
    """
    folder = root / Path(landing_dir).expanduser() if landing_dir else default
    if not folder.resolve().is_relative_to(root.resolve()):
        shown = clip(landing_dir or default)
        raise IngestError(f"landing_dir {shown!r}: outside the landing folder {root}; put raw files under it")
    return folder


def is_published(relative: Path) -> bool:
    """False for hidden files and for ``.part``/``.tmp`` files a writer has not renamed into place yet."""
    hidden = any(part.startswith(".") for part in relative.parts)
    return not hidden and not relative.name.endswith(UNPUBLISHED_SUFFIXES)


def landing_files(folder: Path, patterns: list[str], root: Path) -> list[Path]:
    """The published files matching any of ``patterns``, in name order (which fixes the source row ids of
    equal timestamps); a symlink leading out of the landing folder ``root`` is an error."""
    if not folder.is_dir():
        raise IngestError(f"{folder}: landing folder does not exist")
    matches = {p for pattern in patterns for p in folder.glob(pattern)}
    files = sorted(p for p in matches if p.is_file() and is_published(p.relative_to(folder)))
    if not files:
        raise IngestError(f"{folder}: no files match {clip(' or '.join(patterns))!r}")
    resolved_root = root.resolve()
    for path in files:
        if not path.resolve().is_relative_to(resolved_root):
            raise IngestError(f"{path}: links to a file outside the landing folder {root}; copy the file in instead")
    return files


def file_states(files: list[Path]) -> dict[Path, tuple[int, int]]:
    """Size and modification time of each file, taken before anything reads it."""
    states = {}
    for path in files:
        stat = path.stat()
        states[path] = (stat.st_size, stat.st_mtime_ns)
    return states


def check_unchanged(before: dict[Path, tuple[int, int]]) -> None:
    """A file appended to or rewritten while it was read may have given a cut-off row: refuse the run."""
    for path, (size, mtime_ns) in before.items():
        try:
            now = path.stat()
        except FileNotFoundError:
            raise IngestError(f"{path}: removed while being read; {PUBLISH_HINT.format(name=path.name)}") from None
        if (now.st_size, now.st_mtime_ns) != (size, mtime_ns):
            change = f"size {size} -> {now.st_size}"
            raise IngestError(f"{path}: changed while being read ({change}); {PUBLISH_HINT.format(name=path.name)}")


def is_compressed(path: Path) -> bool:
    return path.suffix in {".gz", ".zst"}


def open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed for ``.gz`` (DuckDB decompresses the same files on its own)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".zst":
        raise IngestError(f"{path}: zstd-compressed files are not supported; compress with gzip (.gz) instead")
    return path.open("rb")


def check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: line 1: empty file (0 bytes)")


def check_complete_last_line(path: Path) -> None:
    """A file cut off mid-write ends without a newline; its last value may look valid but be truncated.

    Compressed files are left to DuckDB, which fails on a truncated stream.
    """
    if is_compressed(path):
        return
    with path.open("rb") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
    with path.open("rb") as f:
        line = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) + 1
    raise IngestError(f"{path}: line {line}: last line has no line ending (truncated file?)")


def read_header(path: Path, delimiter: str) -> list[str]:
    """The column names of the first line, parsed as CSV (a quoted name may hold the delimiter), without a
    UTF-8 byte order mark; a name given twice is an error, as columns are then ambiguous."""
    try:
        with open_binary(path) as f:
            first = f.readline(MAX_HEADER_BYTES)
    except (OSError, EOFError) as e:
        raise IngestError(f"{path}: line 1: cannot read the header ({clip(e)})") from None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: line 1: header is not valid UTF-8 (byte {e.start})") from None
    names = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])]
    for position, name in enumerate(names):
        if name in names[:position]:
            raise IngestError(f"{path}: line 1: column {clip(name)!r} appears twice in the header")
    return names


def check_header(path: Path, delimiter: str, expected: list[str]) -> None:
    """The header must name exactly the expected columns, in order (columns are bound by position)."""
    found = read_header(path, delimiter)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing:
        raise IngestError(f"{path}: line 1: column {missing[0]!r} missing from header")
    if extra:
        raise IngestError(f"{path}: line 1: column {clip(extra[0])!r} not expected (expected {expected})")
    for position, (want, got) in enumerate(zip(expected, found, strict=True), start=1):
        if want != got:
            raise IngestError(f"{path}: line 1: column {clip(got)!r} at position {position}, expected {want!r}")
