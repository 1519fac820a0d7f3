"""The lifelong champion: after each window, ``<dataset>-best@champion`` points at the model and update
strategy with the best mean NDCG@10 over the latest windows, as it stands for the next window.

Walk-forward scores are out of sample by construction (each window is tested before any model trains on
it), so choosing on them leaks nothing into the windows that follow. A version is registered only when the
choice or its weights changed: a ``frozen`` winner keeps its version from window to window, a
``fine_tune`` or ``retrain`` winner gets a new one each window (its weights moved).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from pipelines.lifelong.tracking import TAG_STRATEGY
from pipelines.metric_names import TAG_DATASET, TAG_KIND, TAG_MODEL, TAG_MODEL_URI
from pipelines.registry import CHAMPION, ITEM_MAP_ARTIFACT, log_model_files, register_version, registered_name
from pipelines.resources import MlflowTracking
from recmodels import SequentialRecommender

KIND_CHAMPION = "walk_forward_champion"
TAG_STATE = "recmamba.walk_forward_state"  # which saved state of the (model, strategy) the version holds


@dataclass(frozen=True)
class Candidate:
    """A (model, strategy) after a window: its weights, which saved state they are, and its recent score."""

    model_name: str
    strategy: str
    model: SequentialRecommender
    state: str  # e.g. "initial" for frozen, the window key for fine_tune and retrain
    mean_ndcg_10: float
    mean_train_seconds: float


def best(candidates: list[Candidate]) -> Candidate | None:
    """The highest mean NDCG@10; on a tie the one cheaper to keep fresh."""
    scored = [c for c in candidates if not math.isnan(c.mean_ndcg_10)]
    return max(scored, key=lambda c: (c.mean_ndcg_10, -c.mean_train_seconds), default=None)


def promote(
    context: dg.AssetExecutionContext,
    tracking: MlflowTracking,
    dataset: str,
    winner: Candidate,
    item_raw_ids: list[str],
    last_windows: int,
) -> str:
    """Point ``<dataset>-best@champion`` at ``winner``; returns the version (the current one if unchanged)."""
    name, client = registered_name(dataset), tracking.client
    identity = {TAG_MODEL: winner.model_name, TAG_STRATEGY: winner.strategy, TAG_STATE: winner.state}
    current = _champion_tags(client, name)
    if current is not None and all(current[1].get(key) == value for key, value in identity.items()):
        return current[0]
    tags = {TAG_KIND: KIND_CHAMPION, TAG_DATASET: dataset, **identity}
    run_name = f"walk_forward/champion/{context.partition_key}"
    with tracking.materialization_run(context, dataset, run_name, tags), tempfile.TemporaryDirectory() as folder:
        model_uri = log_model_files(client, winner.model, winner.model_name, f"{dataset}-{winner.model_name}")
        # Row i of the embedding is item i: the map lets serving and warm starts match rows by raw item id.
        item_map = Path(folder) / Path(ITEM_MAP_ARTIFACT).name
        pq.write_table(pa.table({"item_raw": item_raw_ids}), item_map)
        mlflow.log_artifact(str(item_map), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
        mlflow.log_metrics({"mean_ndcg_10": winner.mean_ndcg_10, "mean_train_seconds": winner.mean_train_seconds})
        mlflow.set_tag(TAG_MODEL_URI, model_uri)
        run_id = mlflow.active_run().info.run_id
    description = (
        f"{winner.model_name} updated by {winner.strategy}, as it stands after window {context.partition_key}: "
        f"mean NDCG@10 {winner.mean_ndcg_10:.4f} over the latest {last_windows} walk-forward windows."
    )
    return register_version(client, name, run_id, CHAMPION, description, identity)


def _champion_tags(client: mlflow.MlflowClient, name: str) -> tuple[str, dict[str, str]] | None:
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return str(version.version), dict(version.tags)
