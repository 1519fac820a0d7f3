"""The MLflow model registry side of training: where champions live and how a new model starts from one."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pyarrow.parquet as pq
import torch
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
ITEM_TABLE = "item_embedding.weight"  # the only item-indexed tensor: output scores are tied to it
ITEM_MAP_ARTIFACT = "data/item_map.parquet"  # logged by every training run next to its model


def registered_name(dataset: str, model: str | None = None) -> str:
    """``<dataset>-<model>`` holds each model type's champion; ``<dataset>-best`` the overall winner."""
    return f"{dataset}-{model or 'best'}"


def register_champion(client: mlflow.MlflowClient, name: str, run_id: str) -> str:
    """Register the run's model under ``name`` (once per run) and point ``champion`` at it; returns the version."""
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    version = existing[0].version if existing else mlflow.register_model(f"runs:/{run_id}/model", name).version
    client.set_registered_model_alias(name, CHAMPION, version)
    return str(version)


@dataclass(frozen=True)
class Champion:
    """A registered champion's weights and the raw item id of each embedding row."""

    state_dict: dict[str, torch.Tensor]
    item_raw_ids: list[str]


def load_champion(client: mlflow.MlflowClient, name: str) -> Champion | None:
    """The champion under ``name``, or None when the registry has none yet."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION}", map_location="cpu")
    item_map = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=ITEM_MAP_ARTIFACT)
    return Champion(model.state_dict(), pq.read_table(item_map)["item_raw"].to_pylist())


def adapt_champion(
    champion: Champion, target: dict[str, torch.Tensor], item_raw_ids: list[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The champion's weights fitted to a model of the current catalogue: embedding rows are matched by raw
    item id (dense ids change when the catalogue does), new items keep their fresh initialisation, and
    tensors whose shape changed keep theirs too. Returns the state and the names not taken over.
    """
    old_row = {raw: row for row, raw in enumerate(champion.item_raw_ids, start=1)}
    adapted, skipped = {}, []
    for name, fresh in target.items():
        old = champion.state_dict.get(name)
        if name == ITEM_TABLE and old is not None and old.shape[1:] == fresh.shape[1:]:
            merged = fresh.clone()
            pairs = [(new, old_row[raw]) for new, raw in enumerate(item_raw_ids, start=1) if raw in old_row]
            if pairs:
                new_rows, old_rows = map(list, zip(*pairs, strict=True))
                merged[new_rows] = old[old_rows]
            adapted[name] = merged
        elif old is not None and old.shape == fresh.shape:
            adapted[name] = old
        else:
            adapted[name] = fresh
            skipped.append(name)
    return adapted, skipped
