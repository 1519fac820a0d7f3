"""Launchpad configuration of the sweeps: what each point trains, and one training budget for all of them.

Run config YAML of the length sweep (every model at every window length)::

    ops:
      length_sweep:
        config:
          models: [recmamba, sasrec]
          max_lens: [128, 256, 512, 1024, 2048]
          d_model: 64
          train: {epochs: 3, batch_size: 16, seed: 42}
          timeout_seconds: 3600

and of the ablation (named variants, any model-config field overridden, every one at every seed)::

    ops:
      ablation:
        config:
          variants:
            recmamba: {model: recmamba}
            recmamba_d_state_4: {model: recmamba, overrides: {d_state: 4}}
            sasrec: {model: sasrec}
          reference: recmamba   # the variant the others are paired against; default the first
          seeds: [42, 43, 44]
          d_model: 64
          max_len: 512
          train: {epochs: 3, batch_size: 16}
"""

import hashlib
import json
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pipelines.model_names import MODEL_NAMES, check_names
from pipelines.paths import DATASET_NAME
from pipelines.training.config import as_dagster_config
from recmodels.models import MODELS, build_model
from recmodels.training.config import TrainConfig, model_section, run_config_class

TrainSection = as_dagster_config(TrainConfig)
BASELINE_NAMES = ("most_popular", "recent_popular")  # rows of every result table: no variant may take them


class SweepBudget(dg.Config):
    """What every point of a sweep shares: model width and depth, the training budget and a time limit."""

    d_model: int = Field(64, ge=1, description="Width of every model (the same for all, for a fair comparison).")
    n_layers: int | None = Field(None, ge=1, description="Layers of every model; null: each architecture's default.")
    train: TrainSection = Field(TrainSection(), description=TrainConfig.__doc__)  # type: ignore[valid-type]
    timeout_seconds: float = Field(
        3600.0, gt=0, description="Wall-clock limit of one point's training; a point over it is marked timed_out."
    )

    def shared_model_fields(self) -> dict[str, Any]:
        """The ``model`` section fields every point gets."""
        return {"d_model": self.d_model} | ({"n_layers": self.n_layers} if self.n_layers is not None else {})

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


class LengthSweepConfig(SweepBudget):
    """Every model in ``models`` trains at every ``max_lens`` on the same split, budget and seed."""

    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES), description="Models to sweep.")
    max_lens: list[int] = Field(
        default_factory=lambda: [128, 256, 512, 1024, 2048],
        description="Training windows (model.max_len) to train at; on a GPU up to 8192.",
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
        model = self.shared_model_fields() | {"max_len": max_len}
        return run_config_class(model_name).model_validate({"model": model, "train": self.train.model_dump()})


class Variant(dg.Config):
    """One architecture with some of its model-config fields changed."""

    model: str = Field(description=f"The architecture: one of {', '.join(MODELS)}.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the architecture's model section and their values for this variant, e.g. "
        "{d_state: 4}; they win over the shared d_model, n_layers and max_len. Any field of the model config.",
    )


class AblationConfig(SweepBudget):
    """Every variant trains once per seed on the same split, with the same training budget and seeds."""

    variants: dict[str, Variant] = Field(
        default_factory=lambda: {
            "recmamba": Variant(model="recmamba"),
            "recmamba_lti": Variant(model="recmamba", overrides={"selective": False}),
            "recmamba_noconv": Variant(model="recmamba", overrides={"d_conv": 0}),
            "sasrec": Variant(model="sasrec"),
            "hstu": Variant(model="hstu"),
        },
        description="Named variants, e.g. recmamba_lti: {model: recmamba, overrides: {selective: false}}. A name "
        "(1-64 letters, digits, '_', '.', '-') heads its row of the results and its runs.",
    )
    reference: str | None = Field(
        None, description="The variant every other one is paired against (reference minus variant); null: the first."
    )
    seeds: list[int] = Field(
        default_factory=lambda: [42, 43, 44],
        description="Every variant trains once per seed (each replaces train.seed); results pool the seeds.",
    )
    max_len: int = Field(512, ge=1, description="Training window (model.max_len) of every variant, unless overridden.")

    @model_validator(mode="after")
    def _every_point_is_valid(self) -> "AblationConfig":
        """Fails on the first bad variant, naming it, before anything trains."""
        if not self.variants:
            raise ValueError("variants must name at least one variant")
        for name in self.variants:
            if not DATASET_NAME.fullmatch(name) or name in BASELINE_NAMES:
                raise ValueError(
                    f"variant name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', starting "
                    f"with a letter or digit, and none of {list(BASELINE_NAMES)}"
                )
        if self.reference is not None and self.reference not in self.variants:
            raise ValueError(f"reference {self.reference!r} is not a variant; the variants are {list(self.variants)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct seeds, got {self.seeds}")
        for name in self.variants:
            self._check_variant(name)
        return self

    def _check_variant(self, name: str) -> None:
        variant = self.variants[name]
        if variant.model not in MODELS:
            raise ValueError(f"variant {name!r}: unknown model {variant.model!r}; expected one of {list(MODELS)}")
        fields = model_section(variant.model).model_fields
        unknown = [field for field in variant.overrides if field not in fields]
        if unknown:
            raise ValueError(
                f"variant {name!r}: {variant.model} has no model field {unknown[0]!r} to override; "
                f"its fields are {sorted(fields)}"
            )
        try:
            run_config = self.run_config(name, self.seeds[0])
            build_model(variant.model, 1, **run_config.model.model_dump())  # type: ignore[attr-defined]
        except (ValidationError, ValueError, TypeError, RuntimeError) as error:  # a wrong type, shape or combination
            raise ValueError(f"variant {name!r} ({variant.model} with {variant.overrides}): {error}") from error

    @property
    def reference_variant(self) -> str:
        return self.reference or next(iter(self.variants))

    def run_config(self, name: str, seed: int) -> BaseModel:
        """The recmodels run config of one (variant, seed) point."""
        variant = self.variants[name]
        model = self.shared_model_fields() | {"max_len": self.max_len} | variant.overrides
        train = self.train.model_dump() | {"seed": seed}
        return run_config_class(variant.model).model_validate({"model": model, "train": train})
