"""Several training seeds of one model, read as one result: a parent MLflow run holds what a single run holds
(same metric names, so the comparison cannot tell them apart), with each metric the mean over seeds, plus the
spread across seeds, every seed's per-target ranks, and the model of the seed that validated best.

Each seed trains in a child run (``TAG_KIND=training_seed``, ``mlflow.parentRunId``) exactly as a single run
trains; this module opens those children and folds them into the parent afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import numpy as np
import pyarrow as pa
from mlflow.entities import Param, Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.metric_names import (
    HEADLINE_METRIC,
    KIND_TRAINING_SEED,
    METRICS_AT_10,
    TAG_CONVERGENCE,
    TAG_KIND,
    TAG_MODEL_URI,
    TARGET_RANKS_ARTIFACT,
    baseline_ranks_artifact,
    final_metric,
    seed_std_metric,
)
from pipelines.training.per_target import POPULARITY, log_table, read_table, uncertainty
from pipelines.training.results import rounded, uncertainty_metadata
from recmodels.evaluation.baselines import BASELINES
from recmodels.evaluation.stats import SeedSpread

SEEDS_ARTIFACT = "seeds.json"  # one row per seed: its run and headline numbers
PER_RUN_PREFIXES = ("epoch/", "system/")  # histories of one run: nothing to average
# Numbers that describe one trained model, not a measurement: the parent takes the kept (best) seed's.
BEST_SEED_METRICS = ("best_epoch", "epochs_run", "converged")
BEST_SEED_METADATA = ("best_epoch", "epochs_run", "converged", "convergence", "num_parameters", "processes")
VALID_HEADLINE = final_metric("valid", HEADLINE_METRIC)


@dataclass(frozen=True)
class SeedRun:
    """One seed's finished child run and the metadata its worker reported (plain values)."""

    seed: int
    run: Run
    metadata: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.run.data.metrics


def open_seed_run(client: mlflow.MlflowClient, parent: Run, seed: int, params: dict[str, object]) -> str:
    """A child of ``parent`` for one seed. It carries the parent's tags (so a re-execution that deletes the
    parent's stale run deletes its children too), with its own kind."""
    tags = {key: value for key, value in parent.data.tags.items() if not key.startswith("mlflow.")}
    tags |= {MLFLOW_PARENT_RUN_ID: parent.info.run_id, TAG_KIND: KIND_TRAINING_SEED}
    run_name = f"{parent.info.run_name}-seed{seed}"
    run = client.create_run(parent.info.experiment_id, run_name=run_name, tags=tags)
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()])
    return run.info.run_id


def best_seed(runs: list[SeedRun]) -> SeedRun:
    """The seed whose model the parent keeps: the best validation NDCG@10 (the first on a tie)."""
    return max(runs, key=lambda run: run.metrics.get(VALID_HEADLINE, -np.inf))


def mean_metrics(runs: list[SeedRun]) -> dict[str, float]:
    """Every final metric the seeds share, averaged; the kept seed's own numbers where averaging means nothing."""
    shared = set.intersection(*(set(run.metrics) for run in runs))
    keys = sorted(key for key in shared if not key.startswith(PER_RUN_PREFIXES))
    metrics = {key: float(np.mean([run.metrics[key] for run in runs])) for key in keys}
    best = best_seed(runs)
    return metrics | {key: best.metrics[key] for key in BEST_SEED_METRICS if key in best.metrics}


def spreads(runs: list[SeedRun]) -> dict[str, SeedSpread]:
    """Test metrics at K=10 across seeds."""
    return {name: SeedSpread.of([run.metrics[final_metric("test", name)] for run in runs]) for name in METRICS_AT_10}


def log_parent(client: mlflow.MlflowClient, runs: list[SeedRun], scratch: Path) -> dict[str, Any]:
    """Fold the seeds' runs into the active (parent) run; returns the asset's materialization metadata."""
    best, spread = best_seed(runs), spreads(runs)
    tables = [read_table(client, r.run.info.run_id, TARGET_RANKS_ARTIFACT, scratch / f"seed-{r.seed}") for r in runs]
    ranked = pa.concat_tables(tables)
    floors = {  # identical in every seed (nothing random): copied once, from the kept seed
        name: read_table(client, best.run.info.run_id, baseline_ranks_artifact(name), scratch / "baselines")
        for name in BASELINES
    }
    intervals, difference = uncertainty(ranked, floors[POPULARITY])
    metrics = mean_metrics(runs) | intervals | {seed_std_metric("test", name): s.std for name, s in spread.items()}
    mlflow.log_metrics({key: rounded(value) for key, value in metrics.items()} | {"num_seeds": len(runs)})
    log_table(ranked, TARGET_RANKS_ARTIFACT)
    for name, floor in floors.items():
        log_table(floor, baseline_ranks_artifact(name))
    mlflow.log_table(per_seed_columns(runs), SEEDS_ARTIFACT)
    best_tags = best.run.data.tags
    mlflow.set_tags({TAG_MODEL_URI: best_tags[TAG_MODEL_URI], TAG_CONVERGENCE: best_tags.get(TAG_CONVERGENCE, "")})
    return seed_metadata(runs, spread) | uncertainty_metadata(intervals, difference)


def per_seed_columns(runs: list[SeedRun]) -> dict[str, list]:
    """The seeds' table: one row per seed."""
    columns: dict[str, list] = {"seed": [r.seed for r in runs], "run_id": [r.run.info.run_id for r in runs]}
    for split, name in [("valid", HEADLINE_METRIC), *(("test", name) for name in METRICS_AT_10)]:
        columns[f"{split}_{name}"] = [r.metrics.get(final_metric(split, name), np.nan) for r in runs]
    columns["best_epoch"] = [r.metrics.get("best_epoch", np.nan) for r in runs]
    return columns


def seed_metadata(runs: list[SeedRun], spread: dict[str, SeedSpread]) -> dict[str, Any]:
    """The workers' metadata averaged over seeds (the kept seed's where a mean means nothing), the spread,
    and each seed's numbers."""
    best = best_seed(runs)
    metadata: dict[str, Any] = {}
    for key, value in best.metadata.items():
        numbers = [run.metadata.get(key) for run in runs]
        averaged = key not in BEST_SEED_METADATA and all(_is_number(v) for v in numbers)
        metadata[key] = rounded(float(np.mean(numbers))) if averaged else value
    over = f"over {len(runs)} seeds"
    metadata |= {f"test_{name}_seeds": f"{s.mean:.4f} ± {s.std:.4f} {over}" for name, s in spread.items()}
    metadata |= {"num_seeds": len(runs), "best_seed": best.seed, "per_seed": dg.MetadataValue.md(seeds_table(runs))}
    return metadata


def seeds_table(runs: list[SeedRun]) -> str:
    """Each seed's numbers as a Markdown table."""
    columns = per_seed_columns(runs)
    del columns["run_id"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in zip(*columns.values(), strict=True):
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
