"""The small job that advances served users' states by new events from the inbox (never the whole graph).

Every served model of every dataset gets the same events, batched (one store transaction and one batched
step per batch), through the link, so a rebuild published meanwhile gets the batches its old store refused.
Applying a file twice changes nothing (duplicates and stale events are skipped), so a run that fails half way
is simply run again. Each store's journal is then landed (``landing.py``) and compacted by the policy the
store was built with.
"""

from collections import Counter
from pathlib import Path

import dagster as dg

from pipelines.paths import ProjectPaths
from pipelines.serving.inbox import inbox_files, mark_done, read_events
from pipelines.serving.landing import land_served_store, served_models
from recmodels.serving.journal import JournalPolicy, compact_journal
from recmodels.serving.service import ServedFolder
from recmodels.serving.store import StoreRetired

BATCH_EVENTS = 10_000


def apply_to_model(link: Path, events: list[tuple[str, str, int]], landing: Path) -> Counter:
    """Apply raw events to one served model, then land and compact its journal; items outside its catalogue
    are counted."""
    served = ServedFolder(link)
    counts: Counter = Counter()
    try:
        for start in range(0, len(events), BATCH_EVENTS):
            batch = events[start : start + BATCH_EVENTS]
            dense_ids = served.get().dense_ids
            known = [e for e in batch if e[1] in dense_ids]
            counts["unknown_items"] += len(batch) - len(known)
            report = served.post_events(known)
            counts.update(applied=report.applied, duplicates=report.duplicates, stale=report.stale,
                          new_users=report.new_users)  # fmt: skip
        counts.update(compact_served(served, landing))
    finally:
        served.get().close()
    return counts


def compact_served(served: ServedFolder, landing: Path) -> Counter:
    """Land the served store's journal, then compact it by its own policy (a rebuild that retires it compacts
    its own)."""
    service = served.get()
    land_served_store(service.folder, landing)
    try:
        compacted = compact_journal(service.store, JournalPolicy.from_meta(service.meta))
    except StoreRetired:
        return Counter()
    return Counter(journal_deleted=compacted.deleted,
                   journal_kept_for_rebuild=compacted.kept_for_rebuild)  # fmt: skip


@dg.op(description="Apply the event files waiting in data/serving/<dataset>/inbox to every served model's state store.")
def advance_user_states_op(context: dg.OpExecutionContext) -> None:
    paths = ProjectPaths.from_env()
    root = paths.serving
    datasets = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    for dataset_root in datasets:
        files = inbox_files(dataset_root)
        if not files:
            continue
        events = [event for path in files for event in read_events(path)]
        metadata: dict[str, object] = {"dataset": dataset_root.name, "files": len(files), "events": len(events)}
        for link in served_models(dataset_root):
            for key, value in apply_to_model(link, events, paths.served_events(dataset_root.name)).items():
                metadata[f"{link.name}/{key}"] = value
        for path in files:
            mark_done(path)
        context.log.info(f"{dataset_root.name}: {len(events)} events from {len(files)} files applied: {metadata}")
        context.log_event(dg.AssetObservation(asset_key="user_states", metadata=metadata))


@dg.job(description="Advance the served users' states by the events waiting in data/serving/<dataset>/inbox.")
def advance_user_states() -> None:
    advance_user_states_op()
