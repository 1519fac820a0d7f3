"""A Dagster home prepared by ``prepare_dagster_home`` is created and migrated once, whoever prepares it at
once; two real CLI runs started at once on one are in tests/data/test_hostile_runs.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml

from pipelines.instance import INSTANCE_SETTINGS, prepare_dagster_home
from tests.dagster_cli import alembic_versions

SQLITE_STORAGES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")

# Imports Dagster, says it is ready, waits for the go file, then prepares the home: the two processes of the
# test below reach the preparation within a few milliseconds of each other.
PREPARE_WHEN_GO = """
import sys, time
from pathlib import Path
from pipelines.instance import prepare_dagster_home
ready, go, home = map(Path, sys.argv[1:])
ready.touch()
while not go.exists():
    time.sleep(0.005)
prepare_dagster_home(home)
"""


def file_states(home: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file (folders' times change when sqlite opens and drops its WAL)."""
    files = (path for path in home.rglob("*") if path.is_file())
    return {str(path.relative_to(home)): (path.stat().st_size, path.stat().st_mtime_ns) for path in files}


def test_homes_prepared_from_two_processes_at_once_have_one_migrated_storage(tmp_path: Path):
    home, go = tmp_path / "dagster_home", tmp_path / "go"
    readies = [tmp_path / f"ready_{index}" for index in range(2)]
    commands = [[sys.executable, "-c", PREPARE_WHEN_GO, str(ready), str(go), str(home)] for ready in readies]
    preparers = [subprocess.Popen(command, stderr=subprocess.PIPE) for command in commands]
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready in readies) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    for preparer in preparers:
        _, stderr = preparer.communicate(timeout=120)
        assert preparer.returncode == 0, stderr.decode()

    head = alembic_versions(home / "history/runs.db")
    assert len(head) == 1
    for storage in SQLITE_STORAGES:
        assert alembic_versions(home / storage) == head, storage


def test_preparing_a_prepared_home_changes_nothing(tmp_path: Path):
    home = prepare_dagster_home(tmp_path / "dagster_home")
    before = file_states(home)
    assert prepare_dagster_home(home) == home
    assert file_states(home) == before


def test_a_home_keeps_its_own_instance_settings(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert not instance.run_monitoring_enabled


def test_project_instance_settings_load_with_run_monitoring_and_one_warehouse_writer(tmp_path: Path):
    home = prepare_dagster_home(tmp_path / "dagster_home")
    assert yaml.safe_load((home / "dagster.yaml").read_text()) == yaml.safe_load(INSTANCE_SETTINGS.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        # The default run launcher cannot resume a run; Dagster refuses resume attempts with it.
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_max_runtime_seconds > 0
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
