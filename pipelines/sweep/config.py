"""Launchpad configuration of ``length_sweep``: which models, which windows, one training budget for all.

Run config YAML::

    ops:
      length_sweep:
        config:
          models: [recmamba, sasrec]
          max_lens: [128, 256, 512, 1024, 2048]
          d_model: 64
          train: {epochs: 3, batch_size: 16, seed: 42}
          timeout_seconds: 3600
"""

import hashlib
import json

import dagster as dg
from pydantic import BaseModel, Field, field_validator

from pipelines.model_names import MODEL_NAMES, check_names
from pipelines.training.config import as_dagster_config
from recmodels.config import TrainConfig, run_config_class

TrainSection = as_dagster_config(TrainConfig)


class LengthSweepConfig(dg.Config):
    """Every model in ``models`` trains at every ``max_lens`` on the same split, budget and seed."""

    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES), description="Models to sweep.")
    max_lens: list[int] = Field(
        default_factory=lambda: [128, 256, 512, 1024, 2048],
        description="Training windows (model.max_len) to train at; on a GPU up to 8192.",
    )
    d_model: int = Field(64, ge=1, description="Width of every model (the same for all, for a fair comparison).")
    n_layers: int | None = Field(None, ge=1, description="Layers of every model; null: each architecture's default.")
    train: TrainSection = Field(TrainSection(), description=TrainConfig.__doc__)  # type: ignore[valid-type]
    timeout_seconds: float = Field(
        3600.0, gt=0, description="Wall-clock limit of one (model, max_len) point; a point over it is marked timed_out."
    )

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        return check_names(models, MODEL_NAMES, "models")

    @field_validator("max_lens")
    @classmethod
    def _positive_distinct_lengths(cls, max_lens: list[int]) -> list[int]:
        if not max_lens or min(max_lens) < 1 or len(set(max_lens)) != len(max_lens):
            raise ValueError(f"max_lens must be distinct positive window lengths, got {max_lens}")
        return sorted(max_lens)

    def run_config(self, model_name: str, max_len: int) -> BaseModel:
        """The recmodels run config of one point (validated by recmodels before anything trains)."""
        model = {"d_model": self.d_model, "max_len": max_len}
        if self.n_layers is not None:
            model["n_layers"] = self.n_layers
        return run_config_class(model_name).model_validate({"model": model, "train": self.train.model_dump()})

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]
