"""What the lifelong code location is built from: the first day of its partitions, how long a walk-forward
window is, and the run config its sensors and schedule pass to the runs they start.

They live in one YAML file, ``configs/lifelong.yaml``, read when Dagster loads the location (reload it in the
UI after an edit). ``RECMAMBA_LIFELONG_CONFIG`` may name another file; this module is the only place that
reads it. Tests and scripts build the location from a ``LifelongSettings`` of their own instead.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.lifelong.partitions import LifelongPartitions
from pipelines.paths import PROJECT_DIR

SETTINGS_ENV = "RECMAMBA_LIFELONG_CONFIG"
DEFAULT_SETTINGS_FILE = PROJECT_DIR / "configs" / "lifelong.yaml"
# Variables that once set the partitions: a value left in the environment fails loudly rather than being ignored.
RETIRED_ENV = {"RECMAMBA_DAILY_START": "first_day", "RECMAMBA_WALK_FORWARD_WINDOW": "walk_forward_window"}
CONFIGURABLE_ASSETS = ("daily_events", "walk_forward")


class LifelongSettings(BaseModel):
    """The lifelong location's partitions and the run config of the runs its sensors and schedule start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_day: date = Field(
        date(2022, 1, 1), description="The first day partition of daily_events (UTC); the synthetic streams start here."
    )
    walk_forward_window: Literal["day", "week"] = Field(
        "day", description="A walk_forward window: one day, or one week (Sunday to Saturday)."
    )
    ops: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Run config per asset (daily_events, walk_forward), as in a Dagster run config's ops section; "
        "an asset left out runs with its defaults.",
    )

    @field_validator("ops")
    @classmethod
    def _known_assets(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(value) - set(CONFIGURABLE_ASSETS))
        if unknown:
            raise ValueError(f"ops may configure {list(CONFIGURABLE_ASSETS)}; unknown: {unknown}")
        return value

    def partitions(self) -> LifelongPartitions:
        return LifelongPartitions.starting(self.first_day, self.walk_forward_window)

    def asset_config(self, asset: str) -> dict[str, Any]:
        """The ``config`` section of ``asset``'s run config (empty: its defaults)."""
        return self.ops.get(asset, {}).get("config", {})

    def run_config(self, asset: str) -> dict[str, Any]:
        """The run config of a run that materializes ``asset`` (empty: the asset's defaults)."""
        return {"ops": {asset: self.ops[asset]}} if asset in self.ops else {}

    @classmethod
    def from_file(cls, path: Path) -> LifelongSettings:
        if not path.is_file():
            raise FileNotFoundError(f"lifelong settings {path} does not exist (set {SETTINGS_ENV} to another file)")
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()) or {})
        except ValidationError as error:
            found = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors())
            raise ValueError(f"lifelong settings {path}: {found}") from None


def load_settings() -> LifelongSettings:
    """The settings in the file ``RECMAMBA_LIFELONG_CONFIG`` names, else in ``configs/lifelong.yaml``."""
    path = Path(os.environ.get(SETTINGS_ENV, "").strip() or DEFAULT_SETTINGS_FILE)
    for name, key in RETIRED_ENV.items():
        if os.environ.get(name):
            raise ValueError(f"{name} is no longer read: set {key!r} in {path} instead, and unset {name}")
    return LifelongSettings.from_file(path)
