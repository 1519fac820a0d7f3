"""The MLflow model registry shared by training, reporting, serving and the lifelong wing: how a trained model
is logged and registered, which version each alias names (reporting moves ``current`` and ``champion``), and how
a new model starts from a registered one (training's warm start from ``current``)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import torch
from mlflow.exceptions import MlflowException

from pipelines.metric_names import TAG_MODEL_URI
from pipelines.resources import filter_literal
from recmodels import build_model
from recmodels.models import SequentialRecommender

# One alias per role, so that exactly one version in a dataset's registry is "the champion":
CHAMPION = "champion"  # on <dataset>-best: the model to serve, the best of the newest comparison
CURRENT = "current"  # on <dataset>-<model>: that architecture's newest compared version (warm starts, serving)
ITEM_TABLE = "item_embedding.weight"  # the only item-indexed tensor: output scores are tied to it
ITEM_MAP_ARTIFACT = "data/item_map.parquet"  # logged by every training run next to its model
# A logged model is these two files, not a pickle: loading one never runs code from the store.
STATE_DICT_FILE = "state_dict.pt"
CONFIG_FILE = "config.json"


def registered_name(dataset: str, model: str | None = None) -> str:
    """``<dataset>-<model>`` holds each architecture's versions; ``<dataset>-best`` the overall winners."""
    return f"{dataset}-{model or 'best'}"


def log_model_files(
    client: mlflow.MlflowClient, model: SequentialRecommender, model_name: str, display_name: str | None = None
) -> str:
    """Log the active run's model (architecture ``model_name``) as an MLflow logged model of weights and config,
    shown as ``display_name`` (e.g. ``synthetic-recmamba``); returns its ``models:/`` URI."""
    logged = mlflow.initialize_logged_model(name=display_name or model_name)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(model.state_dict(), Path(folder) / STATE_DICT_FILE)
        config = {"model": model_name, "num_items": model.num_items, "config": dataclasses.asdict(model.config)}
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        client.log_model_artifacts(logged.model_id, folder)
    mlflow.finalize_logged_model(logged.model_id, "READY")
    return logged.model_uri


def load_model_files(model_uri: str) -> SequentialRecommender:
    """The model logged at ``model_uri`` (``models:/...``), rebuilt from its config with its weights."""
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    config = json.loads((folder / CONFIG_FILE).read_text())
    model = build_model(config["model"], config["num_items"], **config["config"])
    model.load_state_dict(_load_weights(folder))
    return model


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / STATE_DICT_FILE, map_location="cpu", weights_only=True)


def register_version(
    client: mlflow.MlflowClient,
    name: str,
    run_id: str,
    alias: str,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> str:
    """Register the run's model under ``name`` (once per run), describe and tag that version, and point
    ``alias`` at it; returns the version."""
    model_uri = client.get_run(run_id).data.tags[TAG_MODEL_URI]
    # A version carries the run that logged the model: a multi-seed run's model was logged by a child run.
    model_run_id = client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id or run_id
    query = f"name = {filter_literal(name)} and run_id = {filter_literal(model_run_id)}"
    existing = client.search_model_versions(query)
    version = str(existing[0].version if existing else mlflow.register_model(model_uri, name).version)
    if description:
        client.update_model_version(name, version, description=description)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, alias, version)
    return version


@dataclass(frozen=True)
class RegisteredWeights:
    """A registered version's weights and the raw item id of each embedding row; ``version`` and ``run_id``
    say which version they are and which run trained it (a warm start checks that run's split)."""

    state_dict: dict[str, torch.Tensor]
    item_raw_ids: list[str]
    version: str = ""
    run_id: str = ""


def load_current(client: mlflow.MlflowClient, name: str) -> RegisteredWeights | None:
    """``<dataset>-<model>@current``: that architecture's newest compared version (warm starts, serving)."""
    return load_registered(client, name, CURRENT)


def load_champion(client: mlflow.MlflowClient, name: str) -> RegisteredWeights | None:
    """``<dataset>-best@champion``: the dataset's one winner."""
    return load_registered(client, name, CHAMPION)


def load_registered(client: mlflow.MlflowClient, name: str, alias: str) -> RegisteredWeights | None:
    """The weights of the version ``alias`` points at under ``name``, or None when no version has that alias."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{alias}"))
    item_map = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=ITEM_MAP_ARTIFACT)
    item_raw_ids = pq.read_table(item_map)["item_raw"].to_pylist()
    return RegisteredWeights(_load_weights(folder), item_raw_ids, str(version.version), version.run_id)


def adapt_to_catalogue(
    registered: RegisteredWeights, target: dict[str, torch.Tensor], item_raw_ids: list[str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Registered weights fitted to a model of the current catalogue: embedding rows are matched by raw
    item id (dense ids change when the catalogue does), new items keep their fresh initialisation, and
    tensors whose shape changed keep theirs too. Returns the state and the names not taken over.
    """
    old_row = {raw: row for row, raw in enumerate(registered.item_raw_ids, start=1)}
    adapted, skipped = {}, []
    for name, fresh in target.items():
        old = registered.state_dict.get(name)
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
