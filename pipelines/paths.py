"""Every file the project writes lives under one root, so a user can move or wipe all state at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SQL_DIR = PROJECT_DIR / "sql"


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
    def warehouse(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def exports(self) -> Path:
        return self.data / "exports"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow / "artifacts"
