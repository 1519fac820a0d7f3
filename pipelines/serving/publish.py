"""Publishing a rebuilt served folder without losing an event the service applied to the one it replaces.

Versions live in ``data/serving/<dataset>/.versions/<model>/``; the link ``data/serving/<dataset>/<model>`` moves to a
new version in one rename (the service follows it at its next request). Before that, the old store's journal is
applied to the new store, in two passes: most of it while the service keeps writing to the old store, then the
rows applied meanwhile under the old store's write lock, inside which the link moves and the old store is retired.
A service writer waiting for that lock then finds the old store retired and posts to the new folder, so every
event the old store acknowledged is in the new one, and none is applied twice. Events the new store already
holds, or cannot hold, are counted with their reason, never dropped silently; so are events timed after
tomorrow, which a service before the time window accepted and which froze their users: the rebuild mends them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.paths import inside
from pipelines.serving.landing import LandingReport, land_journal_rows
from recmodels.serving.bundle import STORE_FILE, Catalogue, load_model, publish
from recmodels.serving.engines import engine_for
from recmodels.serving.journal import journal_after, landed_seq
from recmodels.serving.service import latest_plausible_ms
from recmodels.serving.store import StateStore
from recmodels.serving.updates import Event, apply_events

KEEP_VERSIONS = 2  # the published one and the one before it
CARRY_BATCH = 10_000  # journal rows per read and per transaction on the new store


@dataclass
class CarryOverReport:
    """What became of the old journal's rows in the new store; every row read is in exactly one count."""

    applied: int = 0
    stale: int = 0  # older than the user's last event in the new store: its rebuilt history already covers them
    duplicates: int = 0  # same user, item and time as an event the new store already holds
    unknown_items: int = 0  # items the new model's catalogue lacks
    future: int = 0  # timed after tomorrow (accepted by a service before it refused such times): they froze users
    new_users: int = 0  # users the new split does not hold (among the applied)
    under_lock: int = 0  # of those read, rows carried while the old store was locked (applied to it meanwhile)

    @property
    def read(self) -> int:
        return self.applied + self.stale + self.duplicates + self.unknown_items + self.future

    def summary(self) -> str:
        return (
            f"{self.applied} of {self.read} journal events carried over ({self.under_lock} under the old store's "
            f"lock); not applied: {self.stale} stale (the rebuilt history reaches past them), {self.duplicates} "
            f"duplicates, {self.unknown_items} with items the new catalogue lacks, {self.future} timed after tomorrow"
        )


class JournalCarrier:
    """Carries the old folder's journal to the new folder's store, raw item ids matched across catalogues."""

    def __init__(self, old: Path, new: Path, landing: Path) -> None:
        self.landing = landing
        self.old_items = Catalogue.read(old).item_raw
        self.new_ids = Catalogue.read(new).dense_ids()
        self.engine = engine_for(load_model(new))
        self.old_store = StateStore(old / STORE_FILE, self.engine.state_dtype)
        self.new_store = StateStore(new / STORE_FILE, self.engine.state_dtype)
        self.report = CarryOverReport()
        self.last_seq = 0

    def carry(self) -> int:
        """Apply every row after the last carried one, a batch at a time, until caught up; the rows read."""
        read = 0
        while rows := journal_after(self.old_store, self.last_seq, CARRY_BATCH):
            events, latest = [], latest_plausible_ms()
            for _, user, item, ts in rows:
                dense = self.new_ids.get(self.old_items[item - 1], 0)
                if ts > latest:
                    self.report.future += 1
                elif not dense:
                    self.report.unknown_items += 1
                else:
                    events.append(Event(user, dense, ts))
            applied = apply_events(self.new_store, self.engine, events)
            self.report.applied += applied.applied
            self.report.stale += applied.stale
            self.report.duplicates += applied.duplicates
            self.report.new_users += applied.new_users
            self.last_seq = rows[-1][0]
            read += len(rows)
        return read

    def carry_and_publish(self, link: Path, version: Path) -> CarryOverReport:
        """Carry the journal over, then, with no write to the old store possible, the rest; land what the old
        store has not landed yet (the new store may not hold all of it), retire, move the link."""
        self.carry()
        with self.old_store.write():
            self.report.under_lock = self.carry()
            after = landed_seq(self.old_store.meta())
            land_journal_rows(self.old_store, self.old_items, after, self.landing, LandingReport())
            self.old_store.retire(datetime.now(UTC).isoformat())
            publish(link, version)
        return self.report

    def close(self) -> None:
        self.old_store.close()
        self.new_store.close()


def publish_version(link: Path, version: Path, landing: Path) -> CarryOverReport | None:
    """Carry the current version's journal over (and land it in the ``landing`` folder) and retire it, point
    ``link`` at ``version``, prune old versions; what became of the old journal (None for a first version)."""
    report = None
    if link.exists():
        carrier = JournalCarrier(link.resolve(), version, landing)
        try:
            report = carrier.carry_and_publish(link, version)
        finally:
            carrier.close()
    else:
        publish(link, version)
    versions = sorted(version.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in versions[KEEP_VERSIONS:]:
        if old.resolve() != version.resolve():
            shutil.rmtree(inside(link.parent, old))
    return report
