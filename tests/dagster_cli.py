"""Start real ``dagster`` command-line runs from tests.

Some behaviour only shows between separate processes: the Dagster home's sqlite files, the DuckDB warehouse,
pool slots. These helpers start ``dagster asset materialize`` exactly as a user would, with a written run
config file and the environment the test chooses, and keep each run's output in a log file beside its config,
so a failing test shows what the run printed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import yaml

from pipelines.paths import PROJECT_DIR

# How much of a failed run's log goes into the assertion message (all of it is printed).
FAILURE_TAIL_LINES = 80


class CliRun(subprocess.Popen):
    """A running ``dagster`` command whose stdout and stderr go, interleaved, to ``log_path``."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            # A session of its own, so that a run that hangs can be killed with its step processes.
            super().__init__(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_materialize(
    selection: str, run_config: dict, env_overrides: dict[str, str], cwd: Path = PROJECT_DIR
) -> CliRun:
    """Start ``dagster asset materialize --select <selection>`` with ``run_config``, without waiting.

    ``env_overrides`` (e.g. ``RECMAMBA_HOME``, ``DAGSTER_HOME``) are laid over this process's environment. The
    run config and the log are written next to the homes named there (else in the system temp folder).
    """
    config_path = write_run_config(run_config, folder=files_folder(env_overrides))
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions"]
    command += ["--select", selection, "-c", str(config_path)]
    return CliRun(command, {**os.environ, **env_overrides}, cwd, config_path.with_suffix(".log"))


def wait_ok(run: CliRun, timeout: float) -> str:
    """Wait for ``run`` to exit, assert it exited 0, and return its output; print the output otherwise."""
    try:
        code = run.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        fail(run, f"did not finish within {timeout:.0f} s")
    if code != 0:
        fail(run, f"exited with code {code}")
    return run.output()


def fail(run: CliRun, what: str) -> NoReturn:
    output = run.output()
    print(output)
    tail = "\n".join(output.splitlines()[-FAILURE_TAIL_LINES:])
    command = " ".join(str(part) for part in run.args)
    raise AssertionError(f"`{command}` {what}; last lines of {run.log_path}:\n{tail}")


def files_folder(env_overrides: dict[str, str]) -> Path:
    """The folder holding the homes this run uses, where its config and log belong."""
    for variable in ("RECMAMBA_HOME", "DAGSTER_HOME"):
        if variable in env_overrides:
            return Path(env_overrides[variable]).parent
    return Path(tempfile.gettempdir())


def write_run_config(run_config: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix="run_config_", suffix=".yaml", dir=folder)
    with os.fdopen(descriptor, "w") as file:
        yaml.safe_dump(run_config, file)
    return Path(name)


def alembic_versions(database: Path) -> list[str]:
    """The migration heads a sqlite storage records (a healthy one has exactly one)."""
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
