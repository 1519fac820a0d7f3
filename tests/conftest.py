"""Every test gets its own project root and Dagster home, so no test reads or writes the user's state."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "recmamba_home"
    dagster_home = tmp_path / "dagster_home"
    home.mkdir()
    dagster_home.mkdir()
    monkeypatch.setenv("RECMAMBA_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return home
