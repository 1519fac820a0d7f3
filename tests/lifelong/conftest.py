"""Every lifelong test gets its own RECMAMBA_HOME (tests/conftest.py) and the layout under it."""

from pathlib import Path

import pytest

from pipelines.paths import ProjectPaths


@pytest.fixture
def paths(project_home: Path) -> ProjectPaths:
    return ProjectPaths.from_env()
