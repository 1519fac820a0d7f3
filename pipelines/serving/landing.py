"""The events the service acknowledged, written out as landing data: day files of the dataset's lifelong log.

A 2xx from ``POST /events`` is a promise, so every applied event (a row of a served store's journal) becomes
part of the log of record, ``landing/served/<dataset>/served_events_<YYYY-MM-DD>.csv`` (``user,item,timestamp``,
raw ids, milliseconds, one file per UTC day of event time), which ``raw_events`` and ``daily_events`` read beside
the source's own files. Then no compaction of the journal and no rebuild of the store can forget them.

Writing is idempotent and atomic: a day file is rewritten as the union of what it holds and the new rows, one row
per distinct (user, item, timestamp) (a row carried over to a rebuilt store, or posted to two served models, is
one event), into a temporary file that is synced and renamed over the old one. Each store records the last
journal row it has landed (``landed_seq``, after the files are in place), and compaction keeps every row after
it; a run killed in between writes the same rows again, which changes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.serving.inbox import INBOX
from recmodels.serving.bundle import STORE_FILE, Catalogue, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.journal import journal_after, landed_seq, last_seq, record_landed
from recmodels.serving.service import latest_plausible_ms
from recmodels.serving.store import StateStore, StoreRetired

COLUMNS = ("user", "item", "timestamp")
FILE_PREFIX = "served_events_"
ROWS_PER_PASS = 200_000  # journal rows read and landed at a time
LandedEvent = tuple[str, str, int]  # (user, raw item, ts ms)


@dataclass
class LandingReport:
    """What one landing run wrote; ``future`` rows (accepted before the service refused such times) are left out,
    as the data layer would refuse them."""

    rows: int = 0
    future: int = 0
    days: set[str] = field(default_factory=set)


def day_file(folder: Path, day: str) -> Path:
    return folder / f"{FILE_PREFIX}{day}.csv"


def utc_day(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).date().isoformat()


@contextlib.contextmanager
def landing_lock(folder: Path) -> Iterator[None]:
    """One writer of the folder's day files at a time (the refresh, the inbox job and a rebuild may meet)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def read_day(path: Path) -> set[LandedEvent]:
    if not path.exists():
        return set()
    with path.open(newline="", encoding="utf-8") as handle:
        return {(user, item, int(ts)) for user, item, ts in list(csv.reader(handle))[1:]}


def write_day(path: Path, events: set[LandedEvent]) -> None:
    """Replace ``path`` with ``events`` in time order, atomically and durably."""
    partial = path.with_name(path.name + ".part")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(sorted(events, key=lambda e: (e[2], e[0], e[1])))
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def land_events(events: Iterable[LandedEvent], folder: Path, report: LandingReport) -> None:
    """Add ``events`` to their day files in ``folder`` (events after tomorrow are counted, not written)."""
    latest = latest_plausible_ms()
    by_day: dict[str, set[LandedEvent]] = {}
    for event in events:
        if event[2] > latest:
            report.future += 1
            continue
        by_day.setdefault(utc_day(event[2]), set()).add(event)
    with landing_lock(folder):
        for day, new in sorted(by_day.items()):
            path = day_file(folder, day)
            held = read_day(path)
            if not new <= held:
                write_day(path, held | new)
            report.rows += len(new)
            report.days.add(day)


def land_journal_rows(store: StateStore, item_raw: list[str], after: int, folder: Path, report: LandingReport) -> int:
    """Land the journal rows after row ``after`` up to the last one now (rows the service adds meanwhile wait
    for the next run: chasing them could go on forever); the last row landed (``after`` when none)."""
    last = last_seq(store)
    while after < last and (rows := journal_after(store, after, min(ROWS_PER_PASS, last - after))):
        rows = [row for row in rows if row[0] <= last]
        land_events(((user, item_raw[item - 1], ts) for _, user, item, ts in rows), folder, report)
        after = rows[-1][0]
    return after


def land_served_store(served: Path, folder: Path) -> LandingReport:
    """Land the journal rows of the served folder ``served`` not landed yet, and record them as landed."""
    report = LandingReport()
    store = StateStore(served / STORE_FILE, engine_for(load_model(served)).state_dtype)
    try:
        after = landed_seq(store.meta())
        last = land_journal_rows(store, Catalogue.read(served).item_raw, after, folder, report)
        if last > after:
            with contextlib.suppress(StoreRetired):  # its rebuild landed the rest under its lock
                record_landed(store, last)
    finally:
        store.close()
    return report


def served_models(dataset_root: Path) -> list[Path]:
    """The links ``data/serving/<dataset>/<model>`` (the inbox and hidden folders are not models); none when
    nothing is served for the dataset."""
    if not dataset_root.is_dir():
        return []
    return sorted(p for p in dataset_root.iterdir() if p.is_symlink() and p.name != INBOX)


def land_served_events(serving_root: Path, folder: Path) -> LandingReport:
    """Land what every model served for one dataset (``serving_root`` = ``data/serving/<dataset>``) acknowledged."""
    report = LandingReport()
    for link in served_models(serving_root):
        one = land_served_store(link.resolve(), folder)
        report.rows += one.rows
        report.future += one.future
        report.days |= one.days
    return report
