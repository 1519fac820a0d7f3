"""The refresh job: ingest what has landed, rebuild sequences and splits, retrain, compare."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from pipelines.paths import PROJECT_DIR

REFRESH_CONFIG_ENV = "RECMAMBA_REFRESH_CONFIG"
DEFAULT_REFRESH_CONFIG = PROJECT_DIR / "configs" / "refresh.yaml"

refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.all(),
    description="Re-ingest the landing folder, rebuild the split and retrain every model (see configs/).",
)


def refresh_run_config() -> dict:
    """Run config of scheduled and sensor-started refreshes: the YAML named by ``RECMAMBA_REFRESH_CONFIG``,
    else ``configs/refresh.yaml``. Read at each tick, so edits apply without restarting Dagster."""
    path = Path(os.environ.get(REFRESH_CONFIG_ENV, DEFAULT_REFRESH_CONFIG))
    if not path.is_file():
        raise FileNotFoundError(f"refresh run config {path} does not exist (set {REFRESH_CONFIG_ENV})")
    return yaml.safe_load(path.read_text()) or {}
