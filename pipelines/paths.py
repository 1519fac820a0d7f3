"""Every file the project writes lives under one root, so a user can move or wipe all state at once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_DIR / "sql"

# A dataset name becomes a file and folder name, an MLflow experiment and a registry prefix: keep it plain.
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_dataset_name(name: str) -> str:
    """``name`` if it is a safe dataset name, else a ValueError saying what is allowed."""
    if not DATASET_NAME.fullmatch(name) or name in {".", ".."}:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ValueError(
            f"dataset name {shown!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, if it lies strictly inside ``root``; a ValueError otherwise (never touch what is not ours)."""
    resolved_root, resolved = root.resolve(), path.resolve()
    if resolved == resolved_root or resolved_root not in resolved.parents:
        raise ValueError(f"{path} lies outside {root}: refusing to write or remove it")
    return resolved


@dataclass(frozen=True)
class ProjectPaths:
    """The layout under ``RECMAMBA_HOME`` (the project directory when unset)."""

    home: Path

    @classmethod
    def from_env(cls) -> ProjectPaths:
        return cls(Path(os.environ.get("RECMAMBA_HOME", PROJECT_DIR)).expanduser().resolve())

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def landing(self) -> Path:
        """Raw files arrive here, one sub-folder per source (e.g. ``landing/kuairand/``)."""
        return self.data / "landing"

    @property
    def warehouses(self) -> Path:
        """One DuckDB file per dataset, so runs on different datasets never read each other's tables."""
        return self.data / "warehouse"

    def warehouse(self, dataset: str) -> Path:
        return self.warehouses / f"{check_dataset_name(dataset)}.duckdb"

    @property
    def duckdb_temp(self) -> Path:
        """Where DuckDB spills when a step needs more than its memory limit."""
        return self.data / "duckdb_tmp"

    @property
    def exports(self) -> Path:
        return self.data / "exports"

    def export(self, dataset: str) -> Path:
        """``exports/<dataset>``: a link to the dataset's current export version (Contract 1)."""
        return self.exports / check_dataset_name(dataset)

    def export_versions(self, dataset: str) -> Path:
        """Immutable export versions of ``dataset``; the hidden parent cannot clash with a dataset name."""
        return self.exports / ".versions" / check_dataset_name(dataset)

    def history_store(self, dataset: str) -> Path:
        """Memory-mapped histories of ``dataset``'s exports (one folder per export fingerprint), for training
        out of core (``recmodels.data.history_store``)."""
        return self.data / "history_store" / check_dataset_name(dataset)

    def served_events(self, dataset: str) -> Path:
        """``landing/served/<dataset>``: the events the service acknowledged, as day files of the dataset's log."""
        return self.landing / "served" / check_dataset_name(dataset)

    @property
    def serving(self) -> Path:
        """Served models: ``data/serving/<dataset>/<model>`` links to a built state store (``recmodels.serve``)."""
        return self.data / "serving"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    def walk_forward_states(self, dataset: str) -> Path:
        """Model weights between walk-forward windows (``<model>/<strategy>/<window's first day>.pt``)."""
        return self.checkpoints / check_dataset_name(dataset) / "walk_forward"

    @property
    def kernel_cache_stamp(self) -> Path:
        """Records that Numba's kernel cache was filled for today's kernel sources (``warm_kernel_cache``)."""
        return self.checkpoints / ".kernel_cache_stamp"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow / "artifacts"
