"""Small served folders built from real models (random weights), real SQLite stores and real files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from recmodels.models import build_model
from recmodels.serving.build import build_folder
from recmodels.serving.bundle import CONFIG_FILE, STATE_DICT_FILE, Catalogue

NUM_ITEMS = 50
MODEL_SIZE = {"d_model": 16, "n_layers": 2, "max_len": 16}


def item_raw(dense: int) -> str:
    return f"item-{dense}"


def write_model_files(folder: Path, name: str, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, NUM_ITEMS, **MODEL_SIZE, **options).eval()
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / STATE_DICT_FILE)
    config = {"model": name, "num_items": NUM_ITEMS, "config": {**MODEL_SIZE, **options}}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return model


def user_histories(num_users: int = 6, seed: int = 0) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u in range(num_users):
        length = int(rng.integers(1, 40))
        users.append(f"user-{u}")
        items.append(rng.integers(1, NUM_ITEMS + 1, size=length))
        stamps.append(np.sort(rng.integers(1_000, 2_000, size=length)))
    return users, items, stamps


@pytest.fixture
def served_folder(project_home: Path) -> Callable[[str], Path]:
    """``make(model_name, **model_options)``: a built folder under the test's RECMAMBA_HOME for that model."""

    def make(name: str = "recmamba", **options) -> Path:
        work = project_home / "build" / name
        model = write_model_files(work / "files", name, **options)
        catalogue = Catalogue([item_raw(i) for i in range(1, NUM_ITEMS + 1)], np.arange(NUM_ITEMS + 1) % 7)
        users, items, stamps = user_histories()
        meta = {"model": name, "version": "3", "dataset": "handmade", "split_fingerprint": "abc"}
        folder = work / "served"
        build_folder(folder, model, work / "files", catalogue, users, items, stamps, meta)
        return folder

    return make
