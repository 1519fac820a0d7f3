"""The refresh job: ingest what has landed, rebuild sequences and splits, retrain, compare."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from pipelines.paths import PROJECT_DIR

REFRESH_CONFIG_ENV = "RECMAMBA_REFRESH_CONFIG"
DEFAULT_REFRESH_CONFIG = PROJECT_DIR / "configs" / "refresh.yaml"


def refresh_run_config() -> dict:
    """Run config of scheduled and sensor-started refreshes: the YAML named by ``RECMAMBA_REFRESH_CONFIG``,
    else ``configs/refresh.yaml``. Read at each tick, so edits apply without restarting Dagster."""
    path = Path(os.environ.get(REFRESH_CONFIG_ENV, DEFAULT_REFRESH_CONFIG))
    if not path.is_file():
        raise FileNotFoundError(f"refresh run config {path} does not exist (set {REFRESH_CONFIG_ENV})")
    return yaml.safe_load(path.read_text()) or {}


def launchpad_config() -> dict | None:
    """The refresh config as the job's default, so a refresh launched from the UI starts from the same
    config as a scheduled one; None (an empty launchpad) when the file is missing, which the schedule and
    sensor then report, rather than failing the whole code location at load."""
    try:
        return refresh_run_config()
    except FileNotFoundError:
        return None


refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.all(),
    config=launchpad_config(),
    description="Re-ingest the landing folder, rebuild the split and retrain every model (see configs/).",
)
