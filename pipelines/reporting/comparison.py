"""Turns the training runs of one split into a comparison: table, CSV and plots of quality against cost."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the pipeline never opens a window
import matplotlib.pyplot as plt
from mlflow.entities import Run

from pipelines.metric_names import BUCKETS, HEADLINE_METRIC, TAG_MODEL, cost_metric, final_metric

COLUMNS = {
    "valid_ndcg_10": final_metric("valid", "ndcg_10"),
    "test_ndcg_10": final_metric("test", "ndcg_10"),
    "test_hr_10": final_metric("test", "hr_10"),
    "test_mrr_10": final_metric("test", "mrr_10"),
    "train_s_per_epoch": cost_metric("train_seconds_per_epoch"),
    "train_s_total": cost_metric("train_seconds_total"),
    "peak_memory_mb": cost_metric("peak_memory_mb"),
    "train_events_per_s": cost_metric("train_events_per_second"),
    "parameters": cost_metric("num_parameters"),
}


@dataclass(frozen=True)
class ModelSummary:
    """One model's headline numbers from its MLflow run."""

    model: str
    run_id: str
    values: dict[str, float]
    bucket_ndcg_10: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_run(cls, run: Run) -> ModelSummary:
        metrics = run.data.metrics
        return cls(
            model=run.data.tags[TAG_MODEL],
            run_id=run.info.run_id,
            values={column: metrics.get(key, float("nan")) for column, key in COLUMNS.items()},
            bucket_ndcg_10={
                bucket: metrics[final_metric("test", HEADLINE_METRIC, bucket)]
                for bucket in BUCKETS
                if final_metric("test", HEADLINE_METRIC, bucket) in metrics
            },
        )


def latest_per_model(runs: list[Run]) -> list[ModelSummary]:
    """The newest run of each model (runs come newest first), best validation NDCG@10 first."""
    newest: dict[str, Run] = {}
    for run in runs:
        newest.setdefault(run.data.tags[TAG_MODEL], run)
    summaries = [ModelSummary.from_run(run) for run in newest.values()]
    return sorted(summaries, key=lambda s: -_finite(s.values["valid_ndcg_10"]))


def markdown_table(summaries: list[ModelSummary]) -> str:
    header = ["model", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in summaries:
        cells = [summary.model, *(_format(summary.values[column]) for column in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(summaries: list[ModelSummary], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "run_id", *COLUMNS, *(f"test_ndcg_10_{bucket}" for bucket in BUCKETS)])
        for s in summaries:
            buckets = [s.bucket_ndcg_10.get(bucket, "") for bucket in BUCKETS]
            writer.writerow([s.model, s.run_id, *(s.values[column] for column in COLUMNS), *buckets])
    return path


def plot_quality_vs_cost(summaries: list[ModelSummary], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    for s in summaries:
        axes.scatter(s.values["train_s_total"], s.values["test_ndcg_10"], s=60)
        axes.annotate(s.model, (s.values["train_s_total"], s.values["test_ndcg_10"]), xytext=(5, 5),
                      textcoords="offset points")  # fmt: skip
    axes.set(xlabel="training wall time (s)", ylabel="test NDCG@10", title="Quality against training cost")
    return _save(figure, path)


def plot_peak_memory(summaries: list[ModelSummary], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.bar([s.model for s in summaries], [s.values["peak_memory_mb"] for s in summaries])
    axes.set(ylabel="peak training memory (MB)", title="Peak memory")
    return _save(figure, path)


def plot_bucket_ndcg(summaries: list[ModelSummary], path: Path) -> Path:
    """Grouped bars per history-length bucket; buckets without test targets are left out, not drawn as 0."""
    buckets = [bucket for bucket in BUCKETS if any(bucket in s.bucket_ndcg_10 for s in summaries)]
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(summaries), 1)
    for index, s in enumerate(summaries):
        positions = [b + index * width for b in range(len(buckets))]
        values = [s.bucket_ndcg_10.get(bucket, float("nan")) for bucket in buckets]
        axes.bar(positions, values, width, label=s.model)
    axes.set_xticks([b + 0.4 - width / 2 for b in range(len(buckets))], buckets)
    axes.set(xlabel="prior history length", ylabel="test NDCG@10", title="NDCG@10 by history length")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _finite(value: float) -> float:
    return value if value == value else float("-inf")


def _format(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
