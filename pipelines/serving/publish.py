"""Publishing a rebuilt served folder without losing events the service applied to the one it replaces.

Versions live in ``data/serving/<dataset>/.versions/<model>/``; the link ``data/serving/<dataset>/<model>`` moves to a
new version in one rename (the service follows it at its next request). Before that, events the old
store's journal holds are applied to the new store: those newer than a user's history in the new split
advance it, the others are skipped as stale, so a rebuild never drops what arrived through the service.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.paths import inside
from recmodels.serving.bundle import STORE_FILE, Catalogue, load_model, publish
from recmodels.serving.engines import engine_for
from recmodels.serving.store import StateStore
from recmodels.serving.updates import ApplyReport, Event, apply_events

KEEP_VERSIONS = 2  # the published one and the one before it


def carry_over_journal(old: Path, new: Path) -> ApplyReport:
    """Apply the old folder's journal to the new folder's store (raw item ids matched across catalogues)."""
    old_catalogue, new_catalogue = Catalogue.read(old), Catalogue.read(new)
    new_ids = new_catalogue.dense_ids()
    engine = engine_for(load_model(new))
    old_store = StateStore(old / STORE_FILE, engine.state_dtype)
    rows = old_store.connection.execute("SELECT user, item, ts FROM journal ORDER BY seq").fetchall()
    old_store.close()
    events = []
    for user, item, ts in rows:
        dense = new_ids.get(old_catalogue.item_raw[item - 1], 0)
        if dense:
            events.append(Event(user, dense, ts))
    store = StateStore(new / STORE_FILE, engine.state_dtype)
    try:
        return apply_events(store, engine, events)
    finally:
        store.close()


def publish_version(link: Path, version: Path) -> ApplyReport | None:
    """Carry the current version's journal over, point ``link`` at ``version``, prune old versions."""
    report = None
    if link.exists():
        report = carry_over_journal(link.resolve(), version)
    publish(link, version)
    versions = sorted(version.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in versions[KEEP_VERSIONS:]:
        if old.resolve() != version.resolve():
            shutil.rmtree(inside(link.parent, old))
    return report
