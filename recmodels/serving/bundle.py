"""A served model's folder: everything the service needs, written by the ``user_states`` asset.

```
<folder>/model/state_dict.pt, model/config.json   the logged model's two files (as in the MLflow registry)
<folder>/items.parquet                            item_id (the model's dense id), item_raw, train_count
<folder>/states.sqlite                            the per-user state store (``store.StateStore``)
```
The service reads nothing else (no MLflow, no Dagster), so ``recmodels`` stays usable on its own. A folder
is built whole under a temporary name, then published by renaming a link to it (``publish``); it is
never modified afterwards except through the store's transactions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recmodels.models import SequentialRecommender, build_model

SERVING_FOLDER = "data/serving"  # under RECMAMBA_HOME (ProjectPaths.serving): <dataset>/<model> links here
MODEL_FOLDER = "model"
STATE_DICT_FILE = "state_dict.pt"
CONFIG_FILE = "config.json"
ITEMS_FILE = "items.parquet"
STORE_FILE = "states.sqlite"


def load_model(folder: Path) -> SequentialRecommender:
    """The model of ``folder/model`` (weights loaded with ``weights_only``: never unpickles code)."""
    model_dir = Path(folder) / MODEL_FOLDER
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    model = build_model(config["model"], config["num_items"], **config["config"])
    model.load_state_dict(torch.load(model_dir / STATE_DICT_FILE, map_location="cpu", weights_only=True))
    return model.eval()


@dataclass(frozen=True)
class Catalogue:
    """Raw item ids of the model's embedding rows, and the training popularity used as a fallback."""

    item_raw: list[str]  # index i holds the raw id of dense item i + 1
    train_count: np.ndarray  # (num_items + 1,), index 0 (padding) is 0

    @classmethod
    def read(cls, folder: Path) -> Catalogue:
        table = pq.read_table(Path(folder) / ITEMS_FILE)
        ids = table["item_id"].to_numpy()
        if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
            raise ValueError(f"{Path(folder) / ITEMS_FILE}: column item_id must be 1..n in order")
        counts = np.concatenate([[0], table["train_count"].to_numpy()]).astype(np.int64)
        return cls(table["item_raw"].to_pylist(), counts)

    def write(self, folder: Path) -> None:
        table = pa.table(
            {
                "item_id": pa.array(np.arange(1, len(self.item_raw) + 1), pa.int32()),
                "item_raw": pa.array(self.item_raw, pa.string()),
                "train_count": pa.array(self.train_count[1:], pa.int64()),
            }
        )
        pq.write_table(table, Path(folder) / ITEMS_FILE)

    def dense_ids(self) -> dict[str, int]:
        return {raw: dense for dense, raw in enumerate(self.item_raw, start=1)}

    def popular(self) -> np.ndarray:
        """Dense item ids, most trained-on first (ties by id)."""
        return np.lexsort((np.arange(1, len(self.train_count)), -self.train_count[1:])) + 1


def remap_items(items: np.ndarray, source_raw: Sequence[str], target: dict[str, int]) -> np.ndarray:
    """Dense ids of one catalogue (``source_raw``) as dense ids of another; items it lacks become 0."""
    table = np.array([0] + [target.get(raw, 0) for raw in source_raw], dtype=np.int64)
    return table[items]


def publish(link: Path, folder: Path) -> None:
    """Point ``link`` at ``folder`` (a sibling path, relative) with one atomic rename."""
    temporary = link.with_name(f".{link.name}.link")
    temporary.unlink(missing_ok=True)
    os.symlink(os.path.relpath(folder, link.parent), temporary)
    os.replace(temporary, link)
