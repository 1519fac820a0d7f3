"""Launchpad configuration of a training asset: the recmodels run config (``recmodels/training/config.py``) embedded
field for field, with its defaults and help, plus how the asset launches it.

Run config YAML of one model asset::

    ops:
      model_recmamba:
        config:
          model: {max_len: 512, d_model: 64}
          train: {epochs: 3, batch_size: 16}
          warm_start: false
          nproc_per_node: 1
          seeds: [1, 2, 3]   # optional: one child MLflow run per seed under one parent
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from recmodels.training.config import TrainConfig, model_section, run_config_class

# Fields of the flat config before the run config was nested, and where each lives now.
OLD_MODEL_FIELDS = ("max_len", "n_layers", "d_model", "dropout", "n_heads", "d_state", "d_conv", "expand")
MOVED_FIELDS = {
    **{name: f"model.{name}" for name in OLD_MODEL_FIELDS},
    **{name: f"train.{name}" for name in TrainConfig.model_fields},
}


# The main job's training budget: where the training assets' defaults differ from recmodels' own (which the
# command line keeps). Chosen on the embedded synthetic log so that every model stops by its patience, not by
# the cap, within the main job's 8 minutes on 2 cores (ARCHITECTURE.md, "The main job's budget"): windows of 256
# events, 16 per step, a validation on 500 targets every 20 steps, a stop after 3 validations without a 1% gain,
# at most 60 validations; the same for every model, so the comparison stays fair.
ASSET_MODEL_DEFAULTS = {"max_len": 256}
ASSET_TRAIN_DEFAULTS = {
    "epochs": 60,
    "max_steps_per_epoch": 20,
    "patience": 3,
    "min_improvement": 0.01,
    "lr": 5e-3,
    "eval_max_targets": 500,
}


def as_dagster_config(model: type[BaseModel], defaults: Mapping[str, Any] | None = None) -> type[dg.Config]:
    """``model`` as a Dagster config class with the same fields and descriptions, and its defaults except those
    ``defaults`` replaces."""
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        default = (defaults or {}).get(name, field.get_default(call_default_factory=True))
        fields[name] = (field.annotation, Field(default, description=field.description))
    return create_model(model.__name__, __base__=dg.Config, __doc__=model.__doc__, **fields)


class RunSections(dg.Config):
    """The run config as launchpad config; subclasses add its ``model`` and ``train`` sections."""

    def run_config(self, model_name: str) -> BaseModel:
        """The recmodels run config these sections describe (validated again by recmodels)."""
        sections = {"model": self.model.model_dump(), "train": self.train.model_dump()}  # type: ignore[attr-defined]
        return run_config_class(model_name).model_validate(sections)


def _section_fields(model_name: str) -> dict[str, Any]:
    """The ``model`` and ``train`` fields of ``model_name``'s launchpad config, with defaults and help."""
    section = as_dagster_config(model_section(model_name), ASSET_MODEL_DEFAULTS)
    train = as_dagster_config(TrainConfig, ASSET_TRAIN_DEFAULTS)
    return {
        "model": (section, Field(section(), description=section.__doc__)),
        "train": (train, Field(train(), description=TrainConfig.__doc__)),
    }


@cache
def run_sections_class(model_name: str) -> type[RunSections]:
    """``model_name``'s run config as one launchpad section (the walk-forward has one per model)."""
    return create_model(
        f"{model_name}_run",
        __base__=RunSections,
        __doc__=f"Run config of {model_name}: architecture (model) and optimisation (train).",
        **_section_fields(model_name),
    )


class TrainingAssetConfig(RunSections):
    """How the asset launches training; subclasses add the ``model`` and ``train`` sections."""

    model_config = ConfigDict(extra="allow")  # so that a field of the old flat config gets its own message

    warm_start: bool = Field(
        False,
        description="Start from this architecture's registered version <dataset>-<model>@current (embedding rows "
        "matched by raw item id; new items start fresh).",
    )
    out_of_core: bool = Field(
        False,
        description="Train from memory-mapped histories (converted once per export under "
        "data/history_store/<dataset>) instead of loading the export into memory: for exports bigger than RAM.",
    )
    nproc_per_node: int = Field(
        1, ge=1, description="Training processes; above 1 the asset launches torchrun (DDP: gloo on CPU, NCCL on CUDA)."
    )
    seeds: list[int] = Field(
        [],
        description="Train once per seed (train.seed is replaced by each): with two or more, one parent MLflow run "
        "holds the mean, the spread across seeds and the per-target results of all; empty = one run with "
        "train.seed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_moved_fields(cls, values: Any) -> Any:
        return refuse_moved_or_unknown(values, cls.model_fields, {k: f"to {v!r}" for k, v in MOVED_FIELDS.items()})

    @model_validator(mode="after")
    def _distinct_seeds(self) -> TrainingAssetConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    def run_configs(self, model_name: str) -> list[BaseModel]:
        """One run config per training run: ``seeds`` each replacing ``train.seed``, or the one as given."""
        run_config = self.run_config(model_name)
        return [
            run_config.model_copy(update={"train": run_config.train.model_copy(update={"seed": seed})})
            for seed in self.seeds
        ] or [run_config]

    def fingerprint(self) -> str:
        """Short hash of every field: a checkpoint resumes only the run that had exactly this config."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


@cache
def training_config_class(model_name: str) -> type[TrainingAssetConfig]:
    """The launchpad config of ``model_<model_name>``: its ``model`` section, ``train`` and the launch fields."""
    return create_model(
        f"{model_name}_training",
        __base__=TrainingAssetConfig,
        __doc__=f"Run config of {model_name}: architecture (model), optimisation (train) and launch.",
        **_section_fields(model_name),
    )


def refuse_moved_or_unknown(values: Any, known: Mapping[str, Any], moved: Mapping[str, str]) -> Any:
    """A ``mode="before"`` validator's body: a field that moved fails naming where it went (``moved``: old
    name -> "to <where>"), any other unknown field naming the known ones; the values pass unchanged otherwise."""
    if isinstance(values, dict):
        for name in values:
            if name in moved:
                raise ValueError(f"config field {name!r} has moved {moved[name]}")
            if name not in known:
                raise ValueError(f"unknown config field {name!r}; the fields are {sorted(known)}")
    return values
