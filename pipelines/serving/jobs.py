"""The small job that advances served users' states by new events from the inbox (never the whole graph).

Every served model of every dataset gets the same events, batched (one store transaction and one batched
step per batch). Applying a file twice changes nothing (duplicates and stale events are skipped), so a run
that fails half way is simply run again.
"""

from collections import Counter
from pathlib import Path

import dagster as dg

from pipelines.paths import ProjectPaths
from pipelines.serving.inbox import INBOX, inbox_files, mark_done, read_events
from recmodels.serving.service import RecommendationService

BATCH_EVENTS = 10_000


def served_models(dataset_root: Path) -> list[Path]:
    """The links ``data/serving/<dataset>/<model>`` (the inbox and hidden folders are not models)."""
    return sorted(p for p in dataset_root.iterdir() if p.is_symlink() and p.name != INBOX)


def apply_to_model(link: Path, events: list[tuple[str, str, int]]) -> Counter:
    """Apply raw events to one served model; items outside its catalogue are counted, not applied."""
    service = RecommendationService(link.resolve())
    counts: Counter = Counter()
    try:
        known = [e for e in events if e[1] in service.dense_ids]
        counts["unknown_items"] = len(events) - len(known)
        for start in range(0, len(known), BATCH_EVENTS):
            report = service.post_events(known[start : start + BATCH_EVENTS])
            counts.update(applied=report.applied, duplicates=report.duplicates, stale=report.stale,
                          new_users=report.new_users)  # fmt: skip
    finally:
        service.close()
    return counts


@dg.op(description="Apply the event files waiting in data/serving/<dataset>/inbox to every served model's state store.")
def advance_user_states_op(context: dg.OpExecutionContext) -> None:
    root = ProjectPaths.from_env().serving
    datasets = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    for dataset_root in datasets:
        files = inbox_files(dataset_root)
        if not files:
            continue
        events = [event for path in files for event in read_events(path)]
        metadata: dict[str, object] = {"dataset": dataset_root.name, "files": len(files), "events": len(events)}
        for link in served_models(dataset_root):
            for key, value in apply_to_model(link, events).items():
                metadata[f"{link.name}/{key}"] = value
        for path in files:
            mark_done(path)
        context.log.info(f"{dataset_root.name}: {len(events)} events from {len(files)} files applied: {metadata}")
        context.log_event(dg.AssetObservation(asset_key="user_states", metadata=metadata))


@dg.job(description="Advance the served users' states by the events waiting in data/serving/<dataset>/inbox.")
def advance_user_states() -> None:
    advance_user_states_op()
