"""A training run's per-target test results and the uncertainty they carry.

Every training run keeps each test target's rank (``recmodels.evaluation.evaluate.TargetRanks`` plus a ``seed``
column: the run's ``train.seed``, -1 for a popularity baseline) as a Parquet artifact, so that intervals and
paired tests can be recomputed without the model. From the same table come the run's 95% user-bootstrap
intervals and its paired test against popularity; a table of several seeds is first averaged per target
(``pipelines/target_results.py``), so that the intervals measure the targets' sampling noise, not the seeds'.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.metric_names import HEADLINE_METRIC, METRICS_AT_10, interval_metric
from pipelines.target_results import SEED_COLUMN, PerTarget, from_table, paired
from recmodels.evaluation.evaluate import TargetRanks
from recmodels.evaluation.stats import PairedDifference

BASELINE_SEED = -1  # the seed column of a popularity baseline (nothing random in it)
BUCKET_INTERVAL_METRICS = ("ndcg_10", "hr_10")
POPULARITY = "most_popular"  # the floor a model must be told apart from


def ranks_table(ranks: TargetRanks, seed: int) -> pa.Table:
    """``ranks`` as the artifact's table: TargetRanks' columns and bucket, plus ``seed`` (int64)."""
    table = ranks.to_table()
    return table.append_column(SEED_COLUMN, pa.array(np.full(table.num_rows, seed, dtype=np.int64)))


def log_table(table: pa.Table, artifact: str) -> None:
    """Write ``table`` as Parquet to the active MLflow run at ``artifact`` (e.g. ``per_target/test_ranks.parquet``)."""
    artifact_path = Path(artifact)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / artifact_path.name
        pq.write_table(table, local)
        mlflow.log_artifact(str(local), artifact_path.parent.as_posix())


def read_table(client: mlflow.MlflowClient, run_id: str, artifact: str, folder: Path) -> pa.Table:
    """A run's per-target table, downloaded under ``folder`` (read into memory before it goes)."""
    return pq.read_table(client.download_artifacts(run_id, artifact, str(folder)))


def uncertainty(model: pa.Table, popularity: pa.Table) -> tuple[dict[str, float], PairedDifference]:
    """The run's interval metrics and its paired test of NDCG@10 against the popularity floor, both from one
    per-target average over the model's seeds."""
    results = from_table(model, METRICS_AT_10)
    return interval_metrics(results), paired(results, from_table(popularity), HEADLINE_METRIC)


def interval_metrics(results: PerTarget, split: str = "test") -> dict[str, float]:
    """95% user-bootstrap bounds of NDCG/HR/MRR@10 overall and of NDCG/HR@10 per non-empty history bucket."""
    metrics: dict[str, float] = {}
    for metric in METRICS_AT_10:
        intervals = {None: results.interval(metric)}
        if metric in BUCKET_INTERVAL_METRICS:
            intervals.update(results.bucket_intervals(metric))
        for bucket, interval in intervals.items():
            metrics[interval_metric(split, metric, "low", bucket)] = interval.low
            metrics[interval_metric(split, metric, "high", bucket)] = interval.high
    return metrics
