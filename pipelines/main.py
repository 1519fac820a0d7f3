"""The main job: materialize the whole graph, print the comparison, and say where to look next.

``python -m pipelines.main [--config configs/smoke.yaml]``. Runs through the ``dagster`` command line, so
that the run, its logs and its materializations appear in the Dagster UI afterwards (same DAGSTER_HOME). The
terminal gets the run's progress lines, warnings and the final table; Dagster's DEBUG events stay in the
run's log (the home's ``python_logs`` setting, ``configs/dagster.yaml``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from pipelines.instance import prepare_dagster_home
from pipelines.paths import PROJECT_DIR, ProjectPaths


def dagster_home(paths: ProjectPaths) -> Path:
    """``DAGSTER_HOME`` if set, else a folder under ``RECMAMBA_HOME``, so runs outlive the process; prepared
    (settings copied, storage created and migrated) before any run opens it, see ``pipelines/instance.py``."""
    return prepare_dagster_home(Path(os.environ.get("DAGSTER_HOME") or paths.home / ".dagster_home"))


def materialize_command(config: Path | None, selection: str = "*") -> list[str]:
    """``dagster asset materialize`` of ``selection``; what its console shows is the home's ``python_logs``
    setting (``configs/dagster.yaml``: INFO and above)."""
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions"]
    command += ["--select", selection]
    return command + (["-c", str(config)] if config is not None else [])


def materialize_everything(config: Path | None, env: dict[str, str]) -> None:
    subprocess.run(materialize_command(config), check=True, env=env, cwd=PROJECT_DIR)


def comparison_report(home: Path) -> tuple[str, str | None]:
    """The comparison's summary and table, and the MLflow URL of its training-runs view."""
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("model_comparison"))
    if event is None or event.asset_materialization is None:
        return "(no comparison was materialized)", None
    metadata = event.asset_materialization.metadata
    summary = metadata["summary"].value.replace("**", "")
    if "data" in metadata:  # what the data is (the embedded synthetic log), after the verdict it qualifies
        summary += f"\n\n{metadata['data'].value}"
    runs_url = metadata["mlflow_training_runs"].value
    return f"{summary}\n\n{metadata['comparison'].value}", runs_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="Dagster run config YAML (default: the embedded defaults)")
    args = parser.parse_args(argv)
    paths = ProjectPaths.from_env()
    home = dagster_home(paths)
    # MLflow's download progress bars would print a dozen lines per served model between the progress lines.
    env = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **os.environ}
    env |= {"DAGSTER_HOME": str(home), "RECMAMBA_HOME": str(paths.home)}
    started = time.perf_counter()
    try:
        materialize_everything(args.config, env)
    except subprocess.CalledProcessError as error:
        print(f"The main job failed (exit {error.returncode}); see the log above.", file=sys.stderr)
        return error.returncode
    elapsed = time.perf_counter() - started
    report, runs_url = comparison_report(home)
    print(f"\nMain job finished in {elapsed:.0f} s. Model comparison:\n\n{report}")
    print(
        f"\nDagster UI:  DAGSTER_HOME={home} RECMAMBA_HOME={paths.home} .venv/bin/dagster dev -w workspace.yaml"
        "\n             then open http://127.0.0.1:3000/assets/model_comparison"
        f"\nMLflow UI:   RECMAMBA_HOME={paths.home} mlflow/ui.sh"
        f"\n             then open {runs_url or 'http://127.0.0.1:5000'}   (training runs, best first)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
