"""New events for served users, as files: ``data/serving/<dataset>/inbox/*.csv`` with a header ``user,item,timestamp``
(raw ids, milliseconds since the epoch). Publish a file by rename (``.part``, ``.tmp`` and hidden names are
ignored, as in the landing folder); once applied it moves to ``inbox/.done/``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.data.sources.files import is_published

INBOX = "inbox"
DONE = ".done"
COLUMNS = ("user", "item", "timestamp")


class EventFileError(ValueError):
    """A bad event file, with file, line and column in the message."""


def inbox_files(dataset_root: Path) -> list[Path]:
    """Published event files waiting in ``dataset_root/inbox``, in name order (the order they are applied)."""
    inbox = dataset_root / INBOX
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and is_published(p.relative_to(inbox)))


def read_events(path: Path) -> list[tuple[str, str, int]]:
    """(user, item, timestamp) rows of one event file."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EventFileError(f"{path}: line 1: missing column(s) {missing}; expected a header {','.join(COLUMNS)}")
        events = []
        for line, row in enumerate(reader, start=2):
            for column in COLUMNS:
                if not row[column]:
                    raise EventFileError(f"{path}: line {line}, column {column}: empty value")
            try:
                timestamp = int(row["timestamp"])
            except ValueError:
                value = row["timestamp"]
                raise EventFileError(
                    f"{path}: line {line}, column timestamp: {value!r} is not an integer (ms since the epoch)"
                ) from None
            if timestamp < 0:
                raise EventFileError(f"{path}: line {line}, column timestamp: {timestamp} is negative")
            events.append((row["user"], row["item"], timestamp))
    return events


def mark_done(path: Path) -> None:
    done = path.parent / DONE
    done.mkdir(exist_ok=True)
    path.replace(done / path.name)
