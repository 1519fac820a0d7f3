"""Run configuration of the ``walk_forward`` asset (its windows are cut by the location's settings).

Each model trains from its own run config, the one the training assets embed (``model`` and ``train``,
their defaults and help), so the walk-forward has no defaults of its own::

    ops:
      walk_forward:
        config:
          models: [gru4rec, sasrec]
          gru4rec: {model: {max_len: 50, d_model: 32}, train: {epochs: 3, eval_max_targets: 500}}
          fine_tune_epochs: 1

A training from scratch (retrain, frozen, and fine_tune's first) is that run config as given; a fine_tune
update is the same with ``train.epochs`` replaced by ``fine_tune_epochs`` full passes over the window's events.
Validation is each user's last event before the window, up to ``train.eval_max_targets`` of them.
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from pipelines.model_names import MODEL_NAMES, check_names
from pipelines.paths import check_dataset_name
from pipelines.training.config import refuse_moved_or_unknown, run_sections_class

Strategy = Literal["frozen", "fine_tune", "retrain"]
STRATEGIES: tuple[Strategy, ...] = ("frozen", "fine_tune", "retrain")
# Fields of the flat config, which had defaults of its own, and where each lives in a model's section now.
MOVED_FIELDS = {
    **{name: f"model.{name}" for name in ("max_len", "d_model", "n_layers")},
    **{name: f"train.{name}" for name in ("batch_size", "lr", "device", "seed")},
    "retrain_epochs": "train.epochs",
}


class WalkForwardOptions(dg.Config):
    """Which models and strategies walk forward and what a fine_tune update trains; ``WalkForwardConfig`` adds
    one run section per model."""

    model_config = ConfigDict(extra="allow")  # so that a field of the old flat config gets its own message

    dataset: str = Field("lifelong", description="The dataset whose daily_events are evaluated.")
    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES), description="Architectures to evaluate.")
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES), description="Update strategies.")
    fine_tune_epochs: int = Field(
        1,
        ge=1,
        description="Epochs of a fine_tune update on one window's events, each a full pass: replaces the model's "
        "train.epochs (and its max_steps_per_epoch) there, which are for trainings from scratch; every other field "
        "of its run config applies as given.",
    )
    fine_tune_context: int = Field(
        50, ge=0, description="Events before the new ones each active user replays with them in a fine_tune update."
    )
    report_last_windows: int = Field(7, ge=1, description="The report's table averages over this many latest windows.")
    promote_champion: bool = Field(
        True,
        description="After the latest window, point <dataset>-best@champion at the best model and strategy of the "
        "report's table (mean NDCG@10 over report_last_windows).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_flat_fields(cls, values: Any) -> Any:
        moved = {
            name: f"into each model's run section: <model>.{to}, e.g. gru4rec.{to}" for name, to in MOVED_FIELDS.items()
        }
        return refuse_moved_or_unknown(values, cls.model_fields, moved)

    @field_validator("dataset")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_dataset_name(value)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        return check_names(value, MODEL_NAMES, "models")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: list[str]) -> list[str]:
        return check_names(value, STRATEGIES, "strategies")

    def run_config(self, model_name: str) -> BaseModel:
        """The run config of ``model_name``'s trainings from scratch (its section as given)."""
        return getattr(self, model_name).run_config(model_name)

    def fine_tune_run_config(self, model_name: str) -> BaseModel:
        """The run config of ``model_name``'s fine_tune updates: ``train.epochs`` is ``fine_tune_epochs``, each a
        full pass over the window's events (``train.max_steps_per_epoch`` is for trainings from scratch)."""
        run_config = self.run_config(model_name)
        update = {"epochs": self.fine_tune_epochs, "max_steps_per_epoch": None}
        train = run_config.train.model_copy(update=update)  # type: ignore[attr-defined]
        return run_config.model_copy(update={"train": train})


def _run_section(model_name: str) -> tuple[type, Any]:
    section = run_sections_class(model_name)
    return section, Field(section(), description=f"How {model_name} trains: {section.__doc__}")


WalkForwardConfig = create_model(
    "WalkForwardConfig",
    __base__=WalkForwardOptions,
    __doc__="Which models and strategies walk forward, and each model's run config (model and train).",
    **{name: _run_section(name) for name in MODEL_NAMES},
)
