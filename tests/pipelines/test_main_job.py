"""The main job's terminal: Dagster's INFO lines, warnings and errors, never its DEBUG event log, which stays in
the run's log (the UI, DAGSTER_HOME)."""

from __future__ import annotations

import logging
import os
import subprocess

import dagster as dg
import yaml

from pipelines.main import dagster_home, materialize_command
from pipelines.paths import PROJECT_DIR, ProjectPaths


def test_the_terminal_shows_dagsters_info_lines_and_the_run_log_keeps_its_debug_events(project_home, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({"ops": {"raw_events": {"config": {"source": "synthetic", "synthetic_scale": "tiny"}}}})
    )
    home = dagster_home(ProjectPaths.from_env())
    command = materialize_command(config, selection="*splits")  # the main job's command, on the data assets only
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    finished = subprocess.run(command, env=env, cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    terminal = finished.stdout + finished.stderr
    assert " - INFO - " in terminal and "splits" in terminal
    assert " - DEBUG - " not in terminal
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME is the home the command ran in
        [run] = instance.get_run_records()
        levels = {event.level for event in instance.all_logs(run.dagster_run.run_id)}
    assert logging.DEBUG in levels and logging.INFO in levels
