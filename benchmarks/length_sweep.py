"""The length sweep on the synthetic data, end to end through Dagster: data assets, then ``length_sweep``.

    .venv/bin/python benchmarks/length_sweep.py [--models recmamba sasrec] [--max-lens 128 512 2048]
        [--epochs 1] [--users 30]

Runs in a fresh RECMAMBA_HOME and DAGSTER_HOME under a temporary folder (nothing of the user's is touched),
prints the sweep's table and copies its CSV and plots to benchmarks/results/length_sweep/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import mlflow  # noqa: E402

from pipelines.data.assets import DATA_ASSETS  # noqa: E402
from pipelines.data.resources import Warehouse  # noqa: E402
from pipelines.metric_names import TAG_KIND  # noqa: E402
from pipelines.paths import ProjectPaths  # noqa: E402
from pipelines.resources import MlflowTracking  # noqa: E402
from pipelines.sweep.assets import KIND_SWEEP, length_sweep  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "length_sweep"
ARTIFACTS = ("length_sweep.csv", "length_sweep.md", "quality_vs_length.png", "cost_vs_length.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["recmamba", "sasrec"])
    parser.add_argument("--max-lens", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--scale", default="default", help="synthetic_scale of the data (default or tiny)")
    parser.add_argument("--users", type=int, default=0, help="synthetic_users override (0: the scale's own)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, max_len) point")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="length-sweep-") as scratch:
        os.environ["RECMAMBA_HOME"], os.environ["DAGSTER_HOME"] = f"{scratch}/home", f"{scratch}/dagster"
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        Path(scratch, "home").mkdir()
        Path(scratch, "dagster").mkdir()
        run_sweep(args)


def run_sweep(args: argparse.Namespace) -> None:
    source = {"source": "synthetic", "synthetic_scale": args.scale, "synthetic_users": args.users}
    data_config = {"raw_events": {"config": source}}
    sweep_config = {
        "models": args.models,
        "max_lens": args.max_lens,
        "d_model": args.d_model,
        "train": {"epochs": args.epochs, "batch_size": 16},
        "timeout_seconds": args.timeout,
    }
    resources = {"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()}
    with dg.DagsterInstance.get() as instance:
        dg.materialize(
            DATA_ASSETS, resources={"warehouse": Warehouse()}, run_config={"ops": data_config}, instance=instance
        )
        result = dg.materialize(
            [length_sweep],
            resources=resources,
            run_config={"ops": {"length_sweep": {"config": sweep_config}}},
            instance=instance,
        )
    metadata = result.asset_materializations_for_node("length_sweep")[0].metadata
    print(metadata["sweep"].value)
    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    [sweep_run] = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_SWEEP}'")
    run_id = sweep_run.info.run_id
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACTS:
        shutil.copy(client.download_artifacts(run_id, name), RESULTS / name)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
