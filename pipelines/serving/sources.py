"""What a served folder is built from: the files of each architecture's registered ``current`` version and the
split export's histories, keyed by raw user id (the warehouse's ``user_map``) and re-expressed in that
version's item ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from pipelines.data.resources import Warehouse
from pipelines.registry import CURRENT, load_current, registered_name
from pipelines.split_source import CurrentSplit
from recmodels.data.split_data import SplitData
from recmodels.serving.bundle import MODEL_FOLDER, Catalogue, remap_items

EXPORT_ITEM_MAP = "item_map.parquet"
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}


@dataclass(frozen=True)
class CurrentModelFiles:
    registered_model: str
    version: str
    folder: Path  # holds model/state_dict.pt and model/config.json
    item_raw: list[str]


def download_current_model(
    client: mlflow.MlflowClient, dataset: str, model: str, folder: Path
) -> CurrentModelFiles | None:
    """``<dataset>-<model>@current`` downloaded under ``folder``; None when no version is ``current`` yet."""
    name = registered_name(dataset, model)
    try:
        version = client.get_model_version_by_alias(name, CURRENT)
    except MlflowException:
        return None
    current = load_current(client, name)
    if current is None:
        return None
    (folder / MODEL_FOLDER).mkdir(parents=True)
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{CURRENT}", dst_path=str(folder / MODEL_FOLDER))
    return CurrentModelFiles(name, str(version.version), folder, current.item_raw_ids)


def raw_user_ids(warehouse: Warehouse, dataset: str, user_ids: np.ndarray) -> list[str]:
    """Raw ids of the export's dense user ids, from the warehouse's ``user_map``."""
    with warehouse.connect(dataset, read_only=True) as con:
        table = con.table("user_map").select("user_id, CAST(user_raw AS VARCHAR) AS user_raw").fetch_arrow_table()
    raw = dict(zip(table["user_id"].to_pylist(), table["user_raw"].to_pylist(), strict=True))
    missing = [int(u) for u in user_ids if int(u) not in raw]
    if missing:
        raise dg.Failure(
            f"user_map of {dataset} lacks {len(missing)} user ids of the export (first: {missing[0]}): the warehouse"
            " was rebuilt after this export; re-materialize splits and user_states together."
        )
    return [raw[int(u)] for u in user_ids]


def user_id_kind(warehouse: Warehouse, dataset: str) -> str:
    """``integer`` when the dataset's source has integer user ids (a served user must then be one), else ``text``."""
    with warehouse.connect(dataset, read_only=True) as con:
        user_map = con.table("user_map")
        kind = user_map.types[user_map.columns.index("user_raw")]
    return "integer" if str(kind) in INTEGER_TYPES else "text"


@dataclass(frozen=True)
class ServedHistories:
    users: list[str]
    items: list[np.ndarray]  # the served version's dense ids, 0 for items it never saw
    timestamps: list[np.ndarray]
    catalogue: Catalogue


def served_histories(split: CurrentSplit, data: SplitData, users: list[str], item_raw: list[str]) -> ServedHistories:
    """Every user's whole history (training events and targets: all that is known) in the served version's ids."""
    export_raw = pq.read_table(split.export_dir / EXPORT_ITEM_MAP)["item_raw"].to_pylist()
    target = {raw: dense for dense, raw in enumerate(item_raw, start=1)}
    items = remap_items(data.items.astype(np.int64), export_raw, target)
    train_items = items[(data.split == 0) & (items != 0)]
    counts = np.bincount(train_items, minlength=len(item_raw) + 1)[: len(item_raw) + 1]
    bounds = data.offsets
    return ServedHistories(
        users=users,
        items=[items[bounds[r] : bounds[r + 1]] for r in range(data.num_users)],
        timestamps=[data.timestamps[bounds[r] : bounds[r + 1]] for r in range(data.num_users)],
        catalogue=Catalogue(item_raw, counts),
    )
