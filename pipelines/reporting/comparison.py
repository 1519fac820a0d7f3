"""Turns the training runs of one split into a comparison a user reads at a glance: who won and by how much,
at what training and inference cost, whether training had converged, and how far above the popularity floor.

The champion is chosen on validation NDCG@10 (test is reported, never used to choose).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run

from pipelines.metric_names import (
    HEADLINE_METRIC,
    METRICS_AT_10,
    TAG_CONVERGENCE,
    TAG_MODEL,
    baseline_metric,
    buckets_in,
    cost_metric,
    final_metric,
)
from recmodels.baselines import BASELINES

# column -> (MLflow metric, header a person reads)
COLUMNS = {
    "test_ndcg_10": (final_metric("test", "ndcg_10"), "test NDCG@10"),
    "test_hr_10": (final_metric("test", "hr_10"), "test HR@10"),
    "test_mrr_10": (final_metric("test", "mrr_10"), "test MRR@10"),
    "valid_ndcg_10": (final_metric("valid", "ndcg_10"), "valid NDCG@10"),
    "train_s_per_epoch": (cost_metric("train_seconds_per_epoch"), "train s/epoch"),
    "train_s_total": (cost_metric("train_seconds_total"), "train s total"),
    "inference_ms_per_target": (cost_metric("inference_ms_per_target"), "inference ms/target"),
    "peak_memory_mb": (cost_metric("peak_memory_mb"), "peak MB"),
    "train_events_per_s": (cost_metric("train_events_per_second"), "train events/s"),
    "parameters": (cost_metric("num_parameters"), "parameters"),
    "best_epoch": ("best_epoch", "best epoch"),
    "epochs_run": ("epochs_run", "epochs"),
}
TABLE_COLUMNS = (
    "test_ndcg_10",
    "test_hr_10",
    "valid_ndcg_10",
    "train_s_per_epoch",
    "inference_ms_per_target",
    "peak_memory_mb",
    "parameters",
)


@dataclass(frozen=True)
class ModelSummary:
    """One model's headline numbers from its MLflow run (a baseline has quality only)."""

    model: str
    run_id: str
    values: dict[str, float]
    bucket_ndcg_10: dict[str, float] = field(default_factory=dict)
    convergence: str = ""
    is_baseline: bool = False

    @classmethod
    def from_run(cls, run: Run) -> ModelSummary:
        metrics = run.data.metrics
        return cls(
            model=run.data.tags[TAG_MODEL],
            run_id=run.info.run_id,
            values={column: metrics.get(key, math.nan) for column, (key, _) in COLUMNS.items()},
            bucket_ndcg_10={
                bucket: metrics[final_metric("test", HEADLINE_METRIC, bucket)] for bucket in buckets_in(metrics)
            },
            convergence=run.data.tags.get(TAG_CONVERGENCE, ""),
        )

    @property
    def converged(self) -> bool:
        return self.convergence.startswith("converged")


@dataclass(frozen=True)
class Comparison:
    """The models of one split, best validation NDCG@10 first, and the popularity baselines."""

    models: list[ModelSummary]
    baselines: list[ModelSummary]

    @property
    def champion(self) -> ModelSummary:
        return self.models[0]

    @property
    def buckets(self) -> list[str]:
        return sorted({bucket for s in self.models + self.baselines for bucket in s.bucket_ndcg_10})


def compare(runs: list[Run]) -> Comparison:
    """The newest run of each model (runs come newest first), and the baselines those runs measured."""
    newest: dict[str, Run] = {}
    for run in runs:
        newest.setdefault(run.data.tags[TAG_MODEL], run)
    models = sorted(
        (ModelSummary.from_run(run) for run in newest.values()), key=lambda s: -_finite(s.values["valid_ndcg_10"])
    )
    baselines = _baselines(next(iter(newest.values()))) if newest else []
    return Comparison(models, baselines)


def _baselines(run: Run) -> list[ModelSummary]:
    metrics = run.data.metrics
    found = []
    for name in BASELINES:
        values = {column: math.nan for column in COLUMNS}
        for metric in METRICS_AT_10:
            values[f"test_{metric}"] = metrics.get(baseline_metric(name, metric), math.nan)
        if math.isfinite(values["test_ndcg_10"]):
            found.append(ModelSummary(name, "", values, is_baseline=True))
    return found


def headline(comparison: Comparison) -> str:
    """Who won, by how much, at what cost, and whether the comparison can be trusted (convergence)."""
    champion, others = comparison.champion, comparison.models[1:]
    ndcg = champion.values["test_ndcg_10"]
    lines = [f"**{champion.model}** wins on validation NDCG@10; test NDCG@10 {ndcg:.4f}"]
    if others:
        runner_up = max(others, key=lambda s: _finite(s.values["test_ndcg_10"]))
        lines[0] += f", {_relative(ndcg, runner_up.values['test_ndcg_10'])} vs {runner_up.model}"
    if comparison.baselines:
        floor = max(comparison.baselines, key=lambda s: _finite(s.values["test_ndcg_10"]))
        lines[0] += f", {_relative(ndcg, floor.values['test_ndcg_10'])} vs {floor.model}"
    lines[0] += "."
    values = champion.values
    cost = (
        f"Cost: {values['train_s_per_epoch']:.3g} s/epoch to train, {values['inference_ms_per_target']:.3g} ms/target "
        f"to rank, peak {values['peak_memory_mb']:.0f} MB"
    )
    if others:
        cheapest = min(comparison.models, key=lambda s: _finite(s.values["train_s_per_epoch"], math.inf))
        if cheapest is champion:
            cost += " (the fastest to train)"
        else:
            cost += f" (fastest to train: {cheapest.model}, {cheapest.values['train_s_per_epoch']:.3g} s/epoch)"
    lines.append(cost + ".")
    unconverged = [s.model for s in comparison.models if not s.converged]
    if unconverged:
        lines.append(
            f"Not converged: {', '.join(unconverged)} (best epoch = last epoch): the ranking may change with more "
            "epochs; raise train.epochs."
        )
    else:
        lines.append("Every model converged (validation NDCG@10 peaked before its last epoch).")
    return "\n\n".join(lines)


def markdown_table(comparison: Comparison) -> str:
    header = ["model", *(COLUMNS[column][1] for column in TABLE_COLUMNS), "converged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in comparison.models + comparison.baselines:
        converged = "baseline" if summary.is_baseline else ("yes" if summary.converged else "**no**")
        cells = [summary.model, *(_format(summary.values[column]) for column in TABLE_COLUMNS), converged]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_columns(comparison: Comparison) -> dict[str, list]:
    """The comparison as columns (for ``mlflow.log_table`` and the CSV): empty cells, never NaN."""
    rows = comparison.models + comparison.baselines
    columns: dict[str, list] = {"model": [s.model for s in rows], "run_id": [s.run_id for s in rows]}
    for column in COLUMNS:
        columns[column] = [_cell(s.values[column]) for s in rows]
    columns["convergence"] = [s.convergence or ("baseline" if s.is_baseline else "") for s in rows]
    for bucket in comparison.buckets:
        columns[f"test_ndcg_10_{bucket}"] = [_cell(s.bucket_ndcg_10.get(bucket, math.nan)) for s in rows]
    return columns


def write_csv(comparison: Comparison, path: Path) -> Path:
    columns = table_columns(comparison)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def comparison_metrics(comparison: Comparison) -> dict[str, float]:
    """``<model>/<column>`` for every finite number: the comparison run can be charted and searched."""
    metrics = {}
    for summary in comparison.models + comparison.baselines:
        for column, value in summary.values.items():
            if math.isfinite(value):
                metrics[f"{summary.model}/{column}"] = value
    return metrics


def _relative(value: float, other: float) -> str:
    if not (math.isfinite(value) and math.isfinite(other)) or other == 0:
        return "n/a"
    return f"{(value - other) / other:+.1%}"


def _cell(value: float) -> float | str:
    return value if math.isfinite(value) else ""


def _finite(value: float, default: float = -math.inf) -> float:
    return value if math.isfinite(value) else default


def _format(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
