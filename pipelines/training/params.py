"""The MLflow params and input dataset of a training run: each setting once, only the settings the run uses,
and dates a person can read."""

from __future__ import annotations

import datetime as dt
import warnings

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from pydantic import BaseModel

from pipelines.split_source import CurrentSplit
from recmodels.data.split_data import target_protocol
from recmodels.training.config import flatten

SAMPLING_FIELDS = ("num_negatives", "negatives")  # read only by the sampled losses


def run_params(run_config: BaseModel, seeds: list[int] | None = None) -> dict[str, object]:
    """``model.*`` and ``train.*`` of the run config, without fields the chosen loss never reads; a run of
    several ``seeds`` has ``seeds`` instead of ``train.seed``."""
    values = run_config.model_dump()
    train = dict(values["train"])
    if train.get("loss") == "ce":
        for name in SAMPLING_FIELDS:
            train.pop(name, None)
    seeds_param = {}
    if seeds:
        train.pop("seed")
        seeds_param["seeds"] = ", ".join(map(str, seeds))
    return flatten({"model": values["model"], "train": train}) | seeds_param


def split_params(metadata: dict[str, object]) -> dict[str, object]:
    """``data.*`` from the split's metadata; epoch-millisecond cut-offs become UTC timestamps, and which events
    are targets one readable ``data.target_protocol`` (also for exports that predate it)."""
    params: dict[str, object] = {"data.target_protocol": target_protocol(metadata)}
    for key, value in metadata.items():
        if key == "target_protocol":
            continue
        if key.endswith("_ms") and isinstance(value, int):
            moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
            params[f"data.{key.removesuffix('_ms')}"] = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        elif key == "fingerprint":
            params["data.fingerprint"] = str(value)[:12]
        else:
            params[f"data.{key}"] = value
    return params


def split_dataset(split: CurrentSplit) -> MetaDataset:
    """The split export as an MLflow dataset (the runs table's Dataset column): name and fingerprint."""
    with warnings.catch_warnings():  # MLflow warns that a local path is resolved as a local source
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(split.export_dir))
    return MetaDataset(source, name=split.dataset, digest=split.fingerprint[:12])
