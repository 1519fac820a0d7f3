"""The main job's training budget on the embedded default: does every model stop by its patience, and when?

    .venv/bin/python benchmarks/default_budget.py [--models recmamba sasrec ...] [--scale default]
        [--extra --train.lr 1e-2 ...]

Builds the synthetic log's export through the real data assets (a ``RECMAMBA_HOME`` of its own under
``--home``), then trains each model, one at a time, with the command line (``python -m recmodels.train``)
under the training assets' defaults (``pipelines/training/config.py``: ``ASSET_MODEL_DEFAULTS`` and
``ASSET_TRAIN_DEFAULTS``, which ``--extra`` may override), so the curves are the main job's. Prints per model
the validations run, the best one, whether patience stopped it, seconds of training and of evaluation,
and test NDCG@10; writes ``benchmarks/results/default_budget.json`` with the learning curves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
RESULTS = PROJECT / "benchmarks" / "results"


def budget_arguments() -> list[str]:
    """The training assets' defaults as command-line flags."""
    from pipelines.training.config import ASSET_MODEL_DEFAULTS, ASSET_TRAIN_DEFAULTS

    flags = [(f"--model.{name}", value) for name, value in ASSET_MODEL_DEFAULTS.items()]
    flags += [(f"--train.{name}", value) for name, value in ASSET_TRAIN_DEFAULTS.items()]
    return [part for flag, value in flags for part in (flag, str(value))]


def build_export(home: Path, scale: str) -> Path:
    """The synthetic log at ``scale`` through raw_events ... splits; the export version's folder."""
    os.environ["RECMAMBA_HOME"] = str(home)
    import dagster as dg

    from pipelines.data.assets import DATA_ASSETS
    from pipelines.data.resources import Warehouse

    config = {"ops": {"raw_events": {"config": {"source": "synthetic", "synthetic_scale": scale}}}}
    result = dg.materialize(
        DATA_ASSETS, resources={"warehouse": Warehouse()}, run_config=config, instance=dg.DagsterInstance.ephemeral()
    )
    return Path(str(result.asset_materializations_for_node("splits")[0].metadata["export_path"].value))


def train(model: str, export: Path, out: Path, extra: list[str]) -> dict:
    """One model's command-line run under the budget; its row."""
    command = [sys.executable, "-m", "recmodels.train", model, "--export", str(export), "--out", str(out)]
    began = time.perf_counter()
    subprocess.run([*command, *budget_arguments(), *extra], check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    result = json.loads((out / "result.json").read_text())
    epochs = result["epochs"]
    return {
        "validations": len(epochs),
        "best": result["best_epoch"],
        "stopped_by_patience": result["stopped_early"],
        "train_seconds": sum(epoch["epoch_seconds"] for epoch in epochs),
        "eval_seconds": result["cost"]["eval_seconds"],
        "wall_seconds": wall,
        "test_ndcg_10": result["test"]["overall"]["ndcg_10"],
        "curve": [epoch["valid"]["ndcg_10"] for epoch in epochs],
    }


def main(argv: list[str] | None = None) -> None:
    from pipelines.model_names import MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    parser.add_argument("--scale", default="default", choices=["default", "tiny"])
    parser.add_argument("--home", type=Path, default=None, help="RECMAMBA_HOME for the run (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=RESULTS / "default_budget.json")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more run-config flags for every model")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        home = args.home or Path(scratch)
        export = build_export(home, args.scale)
        rows = {model: train(model, export, home / f"train-{model}", args.extra) for model in args.models}
    print("\n| model | validations | best | stopped by patience | train s | eval s | wall s | test NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for model, row in rows.items():
        print(
            f"| {model} | {row['validations']} | {row['best']} | {'yes' if row['stopped_by_patience'] else 'no'} "
            f"| {row['train_seconds']:.1f} | {row['eval_seconds']:.1f} | {row['wall_seconds']:.0f} "
            f"| {row['test_ndcg_10']:.4f} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"budget": budget_arguments() + args.extra, "models": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
