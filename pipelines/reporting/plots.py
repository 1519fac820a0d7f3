"""The comparison's plots: quality against training and inference cost, peak memory, quality by history length.

Written as PNG files (MLflow artifacts) and embedded in the Dagster asset page as Markdown images.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: the pipeline never opens a window
import matplotlib.pyplot as plt

from pipelines.reporting.comparison import Comparison, ModelSummary

COST_AXES = (("train_s_per_epoch", "training time (s/epoch)"), ("inference_ms_per_target", "inference (ms/target)"))


def plot_quality_vs_cost(comparison: Comparison, path: Path) -> Path:
    """Test NDCG@10 with its 95% interval against training and inference cost, one panel each; baselines as
    dashed floors with their interval shaded. Overlapping bars warn that a gap may be noise (the paired
    table says whether it is)."""
    figure, panels = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axes, (column, label) in zip(panels, COST_AXES, strict=True):
        for s in comparison.models:
            x, y = s.values[column], s.values["test_ndcg_10"]
            if math.isfinite(x) and math.isfinite(y):
                axes.errorbar(x, y, yerr=_error(y, s.interval("test_ndcg_10")), fmt="o", markersize=7, capsize=4)
                axes.annotate(s.model, (x, y), xytext=(5, 5), textcoords="offset points")
        for s in comparison.baselines:
            axes.axhline(s.values["test_ndcg_10"], linestyle="--", color="grey", linewidth=1)
            interval = s.interval("test_ndcg_10")
            if interval is not None:
                axes.axhspan(*interval, color="grey", alpha=0.15, linewidth=0)
            axes.annotate(s.model, (0.01, s.values["test_ndcg_10"]), xycoords=("axes fraction", "data"), fontsize=8)
        axes.set(xlabel=label, title=f"Quality against {label.split(' (')[0]}")
    panels[0].set_ylabel("test NDCG@10 (bars: 95% interval)")
    return _save(figure, path)


def plot_peak_memory(comparison: Comparison, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.bar([s.model for s in comparison.models], [s.values["peak_memory_mb"] for s in comparison.models])
    axes.set(ylabel="peak training memory (MB)", title="Peak memory")
    return _save(figure, path)


def plot_bucket_ndcg(comparison: Comparison, path: Path) -> Path:
    """Grouped bars per history-length bucket, shortest histories left, with 95% intervals (buckets hold
    fewer targets than the whole, so their intervals are wider); only buckets with test targets."""
    buckets, rows = comparison.buckets, comparison.models + comparison.baselines
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(buckets) + 3), 4))
    width = 0.8 / max(len(rows), 1)
    for index, s in enumerate(rows):
        positions = [b + index * width for b in range(len(buckets))]
        values = [s.bucket_ndcg_10.get(bucket, math.nan) for bucket in buckets]
        axes.bar(
            positions,
            values,
            width,
            yerr=_bucket_errors(s, buckets),
            capsize=2,
            label=s.model,
            hatch="//" if s.is_baseline else None,
        )
    labels = [bucket_label(bucket) for bucket in buckets]
    axes.set_xticks([b + 0.4 - width / 2 for b in range(len(buckets))], labels)
    axes.set(xlabel="events before the target", ylabel="test NDCG@10 (95% interval)", title="NDCG@10 by history length")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(figure, path)


def markdown_image(path: Path, title: str) -> str:
    """The PNG inline in Markdown, which the Dagster UI renders on the asset page."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{title}](data:image/png;base64,{encoded})"


def _error(value: float, interval: tuple[float, float] | None) -> np.ndarray | None:
    """Matplotlib's asymmetric ``yerr`` (2, 1) from an interval around ``value``; None draws no bar."""
    if interval is None:
        return None
    low, high = interval
    return np.array([[max(value - low, 0.0)], [max(high - value, 0.0)]])


def _bucket_errors(summary: ModelSummary, buckets: list[str]) -> np.ndarray:
    """``yerr`` (2, buckets) for one model's bars; NaN where a bucket has no interval (no bar is drawn)."""
    errors = np.full((2, len(buckets)), np.nan)
    for index, bucket in enumerate(buckets):
        value = summary.bucket_ndcg_10.get(bucket, math.nan)
        interval = summary.bucket_ci.get(bucket)
        if interval is not None and math.isfinite(value):
            errors[:, index] = _error(value, interval)[:, 0]
    return errors


def bucket_label(bucket: str) -> str:
    """``len_02048_03072`` -> ``2048-3071``; ``len_32768_up`` -> ``32768+``."""
    _, low, high = bucket.split("_")
    return f"{int(low)}+" if high == "up" else f"{int(low)}-{int(high) - 1}"


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
