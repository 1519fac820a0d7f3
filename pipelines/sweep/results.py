"""One row per (model, max_len) of a length sweep, and the table and plots made from the rows.

Rows of points that ran out of memory or time stay in the table and on the plots (a cross at the bottom of
the axis with the reason), so that "RecMamba trains at 8192 where SASRec runs out of memory" is visible
rather than a gap.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the pipeline never opens a window
import matplotlib.pyplot as plt

from pipelines.metric_names import cost_metric, final_metric
from pipelines.sweep.points import OK, PointResult

VALUES = {
    "test_ndcg_10": final_metric("test", "ndcg_10"),
    "test_hr_10": final_metric("test", "hr_10"),
    "valid_ndcg_10": final_metric("valid", "ndcg_10"),
    "s_per_epoch": cost_metric("train_seconds_per_epoch"),
    "peak_memory_mb": cost_metric("peak_memory_mb"),
    "events_per_s": cost_metric("train_events_per_second"),
}


@dataclass(frozen=True)
class SweepRow:
    model: str
    max_len: int
    status: str
    run_id: str
    values: dict[str, float] = field(default_factory=dict)  # VALUES' columns; empty unless status is ok
    bucket_ndcg_10: dict[str, float] = field(default_factory=dict)  # test NDCG@10 per history bucket
    error: str = ""  # the last line of a failed point's traceback

    @classmethod
    def from_metrics(cls, model: str, max_len: int, run_id: str, metrics: dict[str, float]) -> SweepRow:
        values = {column: metrics.get(key, math.nan) for column, key in VALUES.items()}
        buckets = {
            key.split("/")[1]: value
            for key, value in metrics.items()
            if key.startswith("test/len_") and key.endswith("/ndcg_10")
        }
        return cls(model, max_len, OK, run_id, values, dict(sorted(buckets.items())))

    @classmethod
    def of(cls, result: PointResult) -> SweepRow:
        """The row of one point of the length sweep (its window is its run config's ``model.max_len``)."""
        model, max_len = result.point.model_name, int(result.point.run_config["model"]["max_len"])
        if result.ok:
            return cls.from_metrics(model, max_len, result.run_id, result.metrics)
        return cls(model, max_len, result.status, result.run_id, error=result.error)


def markdown_table(rows: list[SweepRow]) -> str:
    header = ["model", "max_len", "status", *VALUES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_format(row.values[column]) if row.status == OK else "-" for column in VALUES]
        lines.append("| " + " | ".join([row.model, str(row.max_len), row.status, *cells]) + " |")
    return "\n".join(lines)


def write_csv(rows: list[SweepRow], path: Path) -> Path:
    buckets = sorted({name for row in rows for name in row.bucket_ndcg_10})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["model", "max_len", "status", "run_id", *VALUES, *(f"test_ndcg_10_{b}" for b in buckets), "error"]
        )
        for row in rows:
            values = [row.values.get(column, "") for column in VALUES]
            writer.writerow(
                [
                    row.model,
                    row.max_len,
                    row.status,
                    row.run_id,
                    *values,
                    *(row.bucket_ndcg_10.get(b, "") for b in buckets),
                    row.error,
                ]
            )
    return path


def plot_against_length(rows: list[SweepRow], columns: dict[str, str], title: str, path: Path) -> Path:
    """One panel per column (label -> VALUES key), one line per model against max_len on a log2 axis."""
    figure, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4), squeeze=False)
    for axis, (label, column) in zip(axes[0], columns.items(), strict=True):
        for model in dict.fromkeys(row.model for row in rows):
            mine = [row for row in rows if row.model == model]
            done = [row for row in mine if row.status == OK]
            line = axis.plot([r.max_len for r in done], [r.values[column] for r in done], marker="o", label=model)
            for row in mine:
                if row.status != OK:  # marked at the bottom of the axis, not left out
                    axis.plot(row.max_len, 0.0, marker="x", markersize=10, color=line[0].get_color())
                    axis.annotate(
                        row.status.replace("_", " "),
                        (row.max_len, 0.0),
                        textcoords="offset points",
                        xytext=(0, 8),
                        ha="center",
                        fontsize=8,
                    )
        axis.set_xscale("log", base=2)
        axis.set_xlabel("max_len (training window, events)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0.0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _format(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}"
