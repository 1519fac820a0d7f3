"""Run configuration of the ``walk_forward`` asset (its windows are cut by the location's settings)."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from pipelines.model_names import MODEL_NAMES, check_names
from pipelines.paths import check_dataset_name

Strategy = Literal["frozen", "fine_tune", "retrain"]
STRATEGIES: tuple[Strategy, ...] = ("frozen", "fine_tune", "retrain")


class WalkForwardConfig(dg.Config):
    """Which models and strategies walk forward, at what size, trained how."""

    dataset: str = Field("lifelong", description="The dataset whose daily_events are evaluated.")
    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES), description="Architectures to evaluate.")
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES), description="Update strategies.")
    max_len: int = Field(50, ge=2, description="Training window and context length of every model.")
    d_model: int = Field(32, ge=4, description="Hidden size of every model.")
    n_layers: int = Field(1, ge=1, description="Layers of every model.")
    retrain_epochs: int = Field(3, ge=1, description="Epochs of a training from scratch (retrain, frozen, bootstrap).")
    fine_tune_epochs: int = Field(1, ge=1, description="Epochs of a fine_tune update on one window's events.")
    fine_tune_context: int = Field(
        50, ge=0, description="Events before the new ones each active user replays with them in a fine_tune update."
    )
    batch_size: int = Field(32, ge=1, description="Training windows per step.")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="Where models train and rank.")
    seed: int = Field(0, description="Seeds every training.")
    report_last_windows: int = Field(7, ge=1, description="The report's table averages over this many latest windows.")
    promote_champion: bool = Field(
        True,
        description="After the latest window, point <dataset>-best@champion at the best model and strategy of the "
        "report's table (mean NDCG@10 over report_last_windows).",
    )

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
