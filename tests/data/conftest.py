"""Shared helpers: every test gets its own RECMAMBA_HOME with a real DuckDB file, and runs real Dagster."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.data.assets import DATA_ASSETS
from pipelines.data.resources import Warehouse
from pipelines.paths import ProjectPaths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KUAIRAND_SAMPLE = FIXTURES / "kuairand" / "log_random_sample_85rows.csv"
TINY = {"raw_events": {"config": {"source": "synthetic", "synthetic_scale": "tiny"}}}


@pytest.fixture
def paths(project_home: Path) -> ProjectPaths:
    """The layout under this test's own RECMAMBA_HOME (see tests/conftest.py)."""
    return ProjectPaths.from_env()


def materialize(run_config: dict, selection: str = "*splits", raise_on_error: bool = True):
    """Materialize the data assets under the current RECMAMBA_HOME and DAGSTER_HOME, so that one test's runs
    build on each other as a user's do (config of unselected assets dropped)."""
    if not selection.startswith("*"):
        run_config = {k: v for k, v in run_config.items() if k == selection}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            DATA_ASSETS,
            selection=selection,
            resources={"warehouse": Warehouse()},
            run_config={"ops": run_config},
            raise_on_error=raise_on_error,
            instance=instance,
        )


def ops_config(**per_asset: dict) -> dict:
    return {asset: {"config": config} for asset, config in per_asset.items()}


def kuairand_landing(paths: ProjectPaths, name: str = "kuairand") -> Path:
    """A landing folder holding a copy of the real 85-row KuaiRand sample."""
    folder = paths.landing / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(KUAIRAND_SAMPLE, folder / KUAIRAND_SAMPLE.name)
    return folder


def kuairand_config(folder: Path, **events: object) -> dict:
    return ops_config(
        raw_events={"source": "kuairand", "landing_dir": str(folder)},
        events={"min_events_per_user": 2, **events},
    )


def table(paths: ProjectPaths, query: str, dataset: str | None = None) -> list[tuple]:
    """Rows of ``query`` on ``dataset``'s warehouse (default: the only dataset this test has written)."""
    if dataset is None:
        [database] = paths.warehouses.glob("*.duckdb")
    else:
        database = paths.warehouse(dataset)
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(query).fetchall()


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    }
