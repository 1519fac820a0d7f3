"""The ``user_states`` asset: every served model's per-user state store, rebuilt after each comparison.

For each model with a registered version (``<dataset>-<model>@current``), every user's whole history in
the current split is encoded (chunk by chunk, any length) into a fresh store, which is then published by
moving a link (``publish.py``): a failed build leaves the served store as it was. Recurrent models
(RecMamba, GRU4Rec) keep their recurrent state, attention models (SASRec, LinRec) their last window.
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
from pipelines.serving.publish import publish_version
from pipelines.serving.sources import download_current_model, raw_user_ids, served_histories
from pipelines.split_source import current_split
from recmodels.data import SplitData
from recmodels.serving.build import build_folder
from recmodels.serving.bundle import MODEL_FOLDER, load_model


class UserStatesConfig(dg.Config):
    models: list[str] = Field(
        default=list(MODEL_NAMES), description="Models to serve, each from <dataset>-<model>@current."
    )


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
    root = ProjectPaths.from_env().serving / split.dataset
    metadata: dict[str, object] = {
        "users": len(users),
        "split_fingerprint": split.fingerprint,
        "dataset": split.dataset,
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
            }
            summary = build_folder(
                partial,
                load_model(current.folder),
                current.folder / MODEL_FOLDER,
                histories.catalogue,
                histories.users,
                histories.items,
                histories.timestamps,
                meta,
            )
            version = partial.rename(versions / f"{stamp}-v{current.version}")
            carried = publish_version(root / model_name, version)
        context.log.info(f"{model_name}: {summary.users} users encoded in {time.perf_counter() - started:.1f} s")
        metadata[f"{model_name}/version"] = f"{current.registered_model} v{current.version}"
        metadata[f"{model_name}/bytes_per_user"] = summary.state_bytes_per_user
        metadata[f"{model_name}/seen_items_per_user"] = round(summary.seen_items_per_user, 1)
        metadata[f"{model_name}/events_carried_over"] = carried.applied if carried else 0
        metadata[f"{model_name}/path"] = dg.MetadataValue.path(str(root / model_name))
    if not any(key.endswith("/version") for key in metadata):
        raise dg.Failure(
            f"No version of {config.models} registered as current on {split.dataset}: materialize model_comparison."
        )
    return dg.MaterializeResult(metadata=metadata)
