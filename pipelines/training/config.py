"""Launchpad configuration of a training asset: one typed class, mapped field by field onto recmodels' configs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Literal

import dagster as dg

from recmodels.models import config_fields
from recmodels.train import TrainConfig

# Fields that configure the network itself; the rest configure recmodels.train.TrainConfig.
MODEL_FIELDS = ("max_len", "n_layers", "d_model", "dropout", "n_heads", "d_state", "d_conv", "expand")


class TrainModelConfig(dg.Config):
    """The same defaults for every model, so that a comparison gives each the same data, length and budget.

    Sized for the embedded synthetic dataset on a 2-core CPU; raise ``max_len``, ``epochs`` and ``d_model``
    on real data and a GPU. Fields a model does not have (``d_state`` for SASRec, say) are ignored by it.
    """

    max_len: int = 512
    n_layers: int = 2
    d_model: int = 64
    dropout: float = 0.2
    n_heads: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: Literal["ce", "sampled_softmax", "bce"] = "ce"
    num_negatives: int = 256
    grad_clip: float = 1.0
    patience: int = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    eval_max_targets: int | None = 2000
    warm_start: bool = False

    def fingerprint(self) -> str:
        """Short hash of every field: a checkpoint resumes only the run that had exactly this config."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    def model_overrides(self, model_name: str) -> dict[str, object]:
        """The architecture fields that this model's config has."""
        accepted = config_fields(model_name)
        return {name: getattr(self, name) for name in MODEL_FIELDS if name in accepted}

    def train_config(self, checkpoint_dir: Path) -> TrainConfig:
        values = self.model_dump()
        names = {f.name for f in dataclasses.fields(TrainConfig)} - {"checkpoint_dir"}
        return TrainConfig(**{name: values[name] for name in names}, checkpoint_dir=checkpoint_dir)
