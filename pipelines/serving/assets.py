"""The ``user_states`` asset: every served model's per-user state store, rebuilt after each comparison.

For each model with a registered version (``<dataset>-<model>@current``), every user's whole history in
the current split is encoded (chunk by chunk, any length) into a fresh store, which is then published by
moving a link (``publish.py``): a failed build leaves the served store as it was, and no event the service
applied to it is lost. Recurrent models (RecMamba, GRU4Rec, LRURec) keep their recurrent state, attention
models (SASRec, LinRec, HSTU) their last window. Each store records the newest event time of its split, and the
new store's journal is compacted after the publish, never below that horizon (``recmodels/serving/journal.py``).
"""

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.data.resources import Warehouse
from pipelines.model_names import MODEL_NAMES
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.serving.landing import land_served_events, land_served_store
from pipelines.serving.publish import CarryOverReport, publish_version
from pipelines.serving.sources import download_current_model, raw_user_ids, served_histories, user_id_kind
from pipelines.split_source import current_split
from recmodels.data.split_data import SplitData
from recmodels.models import SequentialRecommender
from recmodels.serving.build import build_folder
from recmodels.serving.bundle import MODEL_FOLDER, STORE_FILE, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.journal import HORIZON_KEY, NO_HORIZON, CompactionReport, JournalPolicy, compact_journal
from recmodels.serving.service import USER_IDS_KEY
from recmodels.serving.store import StateStore

DEFAULT_JOURNAL = JournalPolicy()


class UserStatesConfig(dg.Config):
    models: list[str] = Field(
        default=list(MODEL_NAMES), description="Models to serve, each from <dataset>-<model>@current."
    )
    journal_max_age_days: int = Field(
        default=DEFAULT_JOURNAL.max_age_days,
        ge=1,
        description="Journal rows (events the service applied) older than this, in event time before the newest "
        "row, are deleted after each publish and inbox run; rows newer than the split are always kept.",
    )
    journal_max_rows: int = Field(
        default=DEFAULT_JOURNAL.max_rows,
        ge=1,
        description="Journal rows kept at most (the earliest applied go first); rows newer than the split are "
        "always kept, even beyond this.",
    )

    def journal_policy(self) -> JournalPolicy:
        return JournalPolicy(self.journal_max_age_days, self.journal_max_rows)


def compact_published(
    version: Path, model: SequentialRecommender, policy: JournalPolicy, landing: Path
) -> CompactionReport:
    """Land the just-published store's journal (rows carried over), then compact it (its horizon is in its meta)."""
    land_served_store(version, landing)
    store = StateStore(version / STORE_FILE, engine_for(model).state_dtype)
    try:
        return compact_journal(store, policy)
    finally:
        store.close()


def journal_metadata(model_name: str, carried: CarryOverReport | None, compacted: CompactionReport) -> dict:
    """What the publish did with the old journal, and what compaction left of the new one."""
    carried = carried or CarryOverReport()
    return {
        f"{model_name}/events_carried_over": carried.applied,
        f"{model_name}/carried_stale": carried.stale,
        f"{model_name}/carried_duplicates": carried.duplicates,
        f"{model_name}/carried_unknown_items": carried.unknown_items,
        f"{model_name}/carried_future": carried.future,
        f"{model_name}/carried_under_lock": carried.under_lock,
        f"{model_name}/journal_deleted": compacted.deleted,
        f"{model_name}/journal_kept_for_rebuild": compacted.kept_for_rebuild,
        f"{model_name}/journal_rows": compacted.rows,
    }


@dg.asset(
    deps=["model_comparison"],
    group_name="serving",
    kinds={"sqlite", "pytorch"},
    description="Per-user model states of every served model, for the service (python -m recmodels.serve).",
)
def user_states(
    context: dg.AssetExecutionContext, config: UserStatesConfig, mlflow_tracking: MlflowTracking, warehouse: Warehouse
) -> dg.MaterializeResult:
    unknown = sorted(set(config.models) - set(MODEL_NAMES))
    if unknown:
        raise dg.Failure(f"user_states.config.models: unknown model(s) {unknown}; expected some of {list(MODEL_NAMES)}")
    split = current_split(context)
    data = SplitData.load(split.export_dir)
    users = raw_user_ids(warehouse, split.dataset, data.user_ids)
    paths = ProjectPaths.from_env()
    root, landing = paths.serving / split.dataset, paths.served_events(split.dataset)
    landed = land_served_events(root, landing)  # the rebuild's split may already read them (raw_events lands too)
    horizon = int(data.timestamps.max(initial=NO_HORIZON))
    metadata: dict[str, object] = {
        "users": len(users),
        "split_fingerprint": split.fingerprint,
        "dataset": split.dataset,
        "split_horizon_ms": horizon,
        "served_events_landed": landed.rows,
    }
    for model_name in config.models:
        with tempfile.TemporaryDirectory() as download:
            current = download_current_model(mlflow_tracking.client, split.dataset, model_name, Path(download))
            if current is None:
                context.log.warning(f"No {model_name}@current registered on {split.dataset}: not served.")
                continue
            started = time.perf_counter()
            histories = served_histories(split, data, users, current.item_raw)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            versions = root / ".versions" / model_name
            partial = versions / f".partial-{stamp}"
            meta = {
                "model": model_name,
                "version": current.version,
                "registered_model": current.registered_model,
                "dataset": split.dataset,
                "split_fingerprint": split.fingerprint,
                "export_path": str(split.export_dir),
                "built_at": stamp,
                HORIZON_KEY: str(horizon),
                USER_IDS_KEY: user_id_kind(warehouse, split.dataset),
                **config.journal_policy().as_meta(),
            }
            model = load_model(current.folder)
            summary = build_folder(
                partial,
                model,
                current.folder / MODEL_FOLDER,
                histories.catalogue,
                histories.users,
                histories.items,
                histories.timestamps,
                meta,
            )
            version = partial.rename(versions / f"{stamp}-v{current.version}")
            carried = publish_version(root / model_name, version, landing)
            compacted = compact_published(version, model, config.journal_policy(), landing)
        context.log.info(f"{model_name}: {summary.users} users encoded in {time.perf_counter() - started:.1f} s")
        if carried:
            context.log.info(f"{model_name}: {carried.summary()}")
        metadata[f"{model_name}/version"] = f"{current.registered_model} v{current.version}"
        metadata[f"{model_name}/bytes_per_user"] = summary.state_bytes_per_user
        metadata[f"{model_name}/seen_items_per_user"] = round(summary.seen_items_per_user, 1)
        metadata.update(journal_metadata(model_name, carried, compacted))
        metadata[f"{model_name}/path"] = dg.MetadataValue.path(str(root / model_name))
    if not any(key.endswith("/version") for key in metadata):
        raise dg.Failure(
            f"No version of {config.models} registered as current on {split.dataset}: materialize model_comparison."
        )
    return dg.MaterializeResult(metadata=metadata)
