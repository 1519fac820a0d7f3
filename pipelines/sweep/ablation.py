"""The ablation's result: each variant's seeds read as one result, as a multi-seed training run reads them
(``pipelines/training/seeds.py``: every metric the mean over seeds, every seed's per-target ranks pooled so
that intervals come from each target's metric averaged over seeds), then compared as the model comparison
compares models (``pipelines/reporting/``): 95% user-bootstrap intervals, the reference variant paired with
every other one on the same test targets, NDCG@10 and HR@10 per history-length bucket, and the cost of each.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pyarrow as pa

from pipelines.metric_names import TAG_CONVERGENCE, TARGET_RANKS_ARTIFACT, baseline_ranks_artifact
from pipelines.reporting.comparison import (
    Comparison,
    ModelSummary,
    PerTargetResults,
    baseline_summaries,
    with_per_target,
)
from pipelines.reporting.plots import bucket_label, markdown_image, plot_bucket_ndcg, plot_quality_vs_cost
from pipelines.reporting.tables import comparison_metrics, paired_columns, paired_markdown, table_columns
from pipelines.sweep.config import Variant
from pipelines.sweep.points import PointResult
from pipelines.target_results import PAIRED_METRICS, PerTarget, from_table
from pipelines.training.per_target import read_table
from pipelines.training.seeds import SeedRun, mean_metrics
from recmodels.evaluation.baselines import BASELINES
from recmodels.evaluation.stats import Interval

PLOTS = {
    "ndcg_10_by_history_length": ("ndcg_10_by_history_length.png", plot_bucket_ndcg),
    "quality_vs_cost": ("quality_vs_cost.png", plot_quality_vs_cost),
}
COST_COLUMNS = {  # ModelSummary column -> its table header, and its words in the summary
    "train_s_per_epoch": ("train s/epoch", "training time per epoch"),
    "inference_ms_per_target": ("inference ms/target", "inference time"),
    "peak_memory_mb": ("peak MB", "peak memory"),
    "parameters": ("parameters", "parameters"),
}


@dataclass(frozen=True)
class VariantPoints:
    """One variant and how each of its seeds' points ended."""

    name: str
    variant: Variant
    points: list[PointResult]  # one per seed, in the config's order

    @property
    def trained(self) -> list[PointResult]:
        return [point for point in self.points if point.ok]

    @property
    def status(self) -> str:
        """``ok``, or which seeds did not train and how they ended."""
        failed = [f"seed {seed_of(point)} {point.status}" for point in self.points if not point.ok]
        return "ok" if not failed else f"{len(self.trained)} of {len(self.points)} seeds trained ({', '.join(failed)})"


@dataclass(frozen=True)
class BucketResult:
    """One variant's (or baseline's) test targets with ``bucket`` events of history before them."""

    name: str
    bucket: str
    num_targets: int
    num_users: int
    intervals: dict[str, Interval]  # PAIRED_METRICS -> estimate and 95% user-bootstrap interval


@dataclass(frozen=True)
class AblationResult:
    """Every variant (reference first) and, over those that trained, the comparison and the buckets."""

    variants: list[VariantPoints]
    comparison: Comparison  # the trained variants (reference first) and the popularity baselines
    buckets: list[BucketResult]

    @property
    def reference(self) -> VariantPoints:
        return self.variants[0]


def seed_of(point: PointResult) -> int:
    return int(point.point.run_config["train"]["seed"])


def fold(client: mlflow.MlflowClient, variants: list[VariantPoints], folder: Path) -> AblationResult:
    """Each trained variant's seeds into one row, the baselines from the first trained point (every point
    ranks the same targets), and the reference paired with every other variant. ``variants``: reference
    first; at least one trained."""
    trained = [variant for variant in variants if variant.trained]
    found: dict[str, PerTarget] = {}
    for variant in trained:
        tables = [read_table(client, p.run_id, TARGET_RANKS_ARTIFACT, folder / p.point.name) for p in variant.trained]
        found[variant.name] = from_table(pa.concat_tables(tables))
    holder = trained[0].trained[0].run
    for name in BASELINES:
        found[name] = from_table(read_table(client, holder.info.run_id, baseline_ranks_artifact(name), folder))
    summaries = [_summary(variant) for variant in trained]
    comparison = with_per_target(Comparison(summaries, baseline_summaries(holder)), PerTargetResults(found))
    if not variants[0].trained:  # with_per_target paired the first variant that did train: not the reference
        note = f"The reference {variants[0].name} trained in no seed, so no variant is paired with it."
        comparison = replace(comparison, pairings=[], notes=[*comparison.notes, note])
    buckets = [bucket for name, data in found.items() for bucket in _buckets(name, data)]
    return AblationResult(variants, comparison, buckets)


def _summary(variant: VariantPoints) -> ModelSummary:
    """The variant's metrics averaged over its trained seeds; converged only if every seed converged."""
    seeds = [SeedRun(seed_of(point), point.run, {}) for point in variant.trained]
    unconverged = [s.seed for s in seeds if not s.run.data.tags.get(TAG_CONVERGENCE, "").startswith("converged")]
    convergence = (
        f"not converged in seed {', '.join(map(str, unconverged))}: raise train.epochs"
        if unconverged
        else f"converged in every seed ({len(seeds)})"
    )
    run_ids = ",".join(point.run_id for point in variant.trained)
    return ModelSummary.from_metrics(variant.name, run_ids, mean_metrics(seeds), convergence)


def _buckets(name: str, data: PerTarget) -> list[BucketResult]:
    intervals = {metric: data.bucket_intervals(metric) for metric in PAIRED_METRICS}
    results = []
    for bucket in intervals[PAIRED_METRICS[0]]:
        inside = data.buckets == bucket
        per_metric = {metric: intervals[metric][bucket] for metric in PAIRED_METRICS}
        results.append(BucketResult(name, bucket, int(inside.sum()), len(set(data.users[inside])), per_metric))
    return results


def summary_text(result: AblationResult) -> str:
    """The reference's score, then each variant against it: the paired difference of NDCG@10 with its
    interval and p-value, who is ahead beyond the noise, and the variant's cost relative to the reference."""
    comparison, reference = result.comparison, result.reference.name
    lines = []
    if result.reference.trained:
        first = comparison.models[0]
        score = _with_interval(first.values["test_ndcg_10"], first.interval("test_ndcg_10"))
        lines.append(
            f"Reference **{reference}**: test NDCG@10 {score} (mean of {first.num_seeds} seeds) over "
            f"{comparison.num_targets:,} test targets of {comparison.num_users:,} users."
        )
    summaries = {s.model: s for s in comparison.models}
    for pairing in (p for p in comparison.pairings if not p.is_baseline):
        d = pairing.headline
        side = f"{reference} ahead" if d.ahead else f"{pairing.model} ahead" if d.behind else "tied"
        lines.append(
            f"- {pairing.model}: {reference} minus {pairing.model} on NDCG@10 {d.estimate:+.4f} "
            f"[{d.low:+.4f}, {d.high:+.4f}], p = {d.p_value:.2g}, **{side}**; "
            f"{_relative_cost(summaries[pairing.model], summaries[reference])}."
        )
    lines.extend(f"- {variant.name}: {variant.status}." for variant in result.variants if variant.status != "ok")
    return "\n".join(lines + comparison.notes)


def _relative_cost(variant: ModelSummary, reference: ModelSummary) -> str:
    """``1.3x the training time per epoch, ... of <reference>``."""
    parts = []
    for column, (_, words) in COST_COLUMNS.items():
        value, base = variant.values[column], reference.values[column]
        if math.isfinite(value) and math.isfinite(base) and base > 0:
            parts.append(f"{value / base:.2f}x the {words}")
    return f"{', '.join(parts)} of {reference.model}" if parts else "cost unknown"


def markdown_table(result: AblationResult) -> str:
    """One row per variant (reference first) and popularity baseline: what it changes, how many seeds
    trained, NDCG@10 and HR@10 with their 95% intervals, the spread over seeds, cost and convergence."""
    header = ["variant", "model", "changes", "seeds", "test NDCG@10 [95% CI]", "test HR@10 [95% CI]", "seed std"]
    header += [*(title for title, _ in COST_COLUMNS.values()), "converged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summaries = {s.model: s for s in result.comparison.models}
    for v in result.variants:
        described = [v.name, v.variant.model, _changes(v.variant), _seeds_cell(v)]
        lines.append("| " + " | ".join(described + _number_cells(summaries.get(v.name))) + " |")
    for baseline in result.comparison.baselines:
        lines.append("| " + " | ".join([baseline.model, "baseline", "–", "–", *_number_cells(baseline)]) + " |")
    return "\n".join(lines)


def _number_cells(summary: ModelSummary | None) -> list[str]:
    if summary is None:  # a variant that trained in no seed
        return ["–"] * (3 + len(COST_COLUMNS) + 1)
    quality = [_with_interval(summary.values[f"test_{m}"], summary.interval(f"test_{m}")) for m in PAIRED_METRICS]
    std = summary.values["test_ndcg_10_seed_std"]
    spread = f"± {std:.4f}" if summary.num_seeds > 1 and math.isfinite(std) else "–"
    cost = [_number(summary.values[column]) for column in COST_COLUMNS]
    converged = "baseline" if summary.is_baseline else "yes" if summary.converged else "**no**"
    return [*quality, spread, *cost, converged]


def _changes(variant: Variant) -> str:
    return ", ".join(f"{field}={json.dumps(value)}" for field, value in variant.overrides.items()) or "–"


def _seeds_cell(variant: VariantPoints) -> str:
    trained, seeds = len(variant.trained), len(variant.points)
    return str(seeds) if trained == seeds else f"{trained} of {seeds}"


def bucket_markdown(result: AblationResult) -> str:
    """Test NDCG@10 [95% CI] per history-length bucket (rows, shortest first) and variant (columns)."""
    cells = {(b.name, b.bucket): b for b in result.buckets}
    names = list(dict.fromkeys(b.name for b in result.buckets))
    header = ["events before the target", "targets", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bucket in sorted({b.bucket for b in result.buckets}):
        found = [cells.get((name, bucket)) for name in names]
        targets = next(b.num_targets for b in found if b is not None)
        values = ["–" if b is None else _interval_text(b.intervals["ndcg_10"]) for b in found]
        lines.append("| " + " | ".join([bucket_label(bucket), f"{targets:,}", *values]) + " |")
    return "\n".join(lines)


def bucket_columns(result: AblationResult) -> dict[str, list]:
    """One row per (variant or baseline, history-length bucket): NDCG@10 and HR@10 with 95% intervals."""
    rows = []
    for b in result.buckets:
        row: dict[str, Any] = {"variant": b.name, "bucket": b.bucket, "num_targets": b.num_targets}
        row["num_users"] = b.num_users
        for metric, interval in b.intervals.items():
            row |= {f"test_{metric}": interval.estimate, f"test_{metric}_ci_low": interval.low}
            row[f"test_{metric}_ci_high"] = interval.high
        rows.append(row)
    return _as_columns(rows)


def variant_columns(result: AblationResult) -> dict[str, list]:
    """The comparison's columns (``table_columns``: every number, intervals, buckets), one row per variant
    (those that trained in no seed with their status only) and baseline, with what each variant is."""
    numbers = table_columns(result.comparison)
    by_name = {row.pop("model"): row for row in _as_rows(numbers)}
    rows = [
        {
            "variant": v.name,
            "model": v.variant.model,
            "overrides": json.dumps(v.variant.overrides),
            "status": v.status,
            **by_name.get(v.name, {}),
        }
        for v in result.variants
    ]
    rows += [{"variant": b.model, "model": "baseline", **by_name[b.model]} for b in result.comparison.baselines]
    return _as_columns(rows)


def log_result(result: AblationResult, folder: Path) -> dict[str, Any]:
    """Metrics, tables (JSON and CSV), plots and the description on the active (ablation) run; returns the
    asset's metadata."""
    comparison = result.comparison
    summary, table, buckets = summary_text(result), markdown_table(result), bucket_markdown(result)
    paired = paired_markdown(comparison)
    mlflow.log_metrics(comparison_metrics(comparison))
    tables = {
        "ablation": variant_columns(result),
        "ablation_by_history_length": bucket_columns(result),
        "paired_vs_reference": {
            ("reference" if name == "champion" else name): values for name, values in paired_columns(comparison).items()
        },
    }
    for name, columns in tables.items():
        if next(iter(columns.values()), []):
            mlflow.log_table(columns, artifact_file=f"{name}.json")
            _write_csv(columns, folder / f"{name}.csv")
    images = {}
    for key, (file_name, plot) in PLOTS.items():
        path = plot(comparison, folder / file_name)
        images[f"plot_{key}"] = dg.MetadataValue.md(markdown_image(path, key.replace("_", " ")))
    mlflow.log_artifacts(str(folder))
    report = [summary, table, "Test NDCG@10 by history length:", buckets, paired]
    mlflow.set_tag("mlflow.note.content", "\n\n".join(part for part in report if part))
    return {
        "summary": dg.MetadataValue.md(summary),
        "ablation": dg.MetadataValue.md(table),
        "ndcg_10_by_history_length": dg.MetadataValue.md(buckets),
        **({"paired_vs_reference": dg.MetadataValue.md(paired)} if paired else {}),
        **images,
        "reference": result.reference.name,
    }


def _as_rows(columns: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _as_columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Rows as columns; a row without a column gets an empty cell (as in ``table_columns``, never NaN)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: [row.get(name, "") for row in rows] for name in names}


def _write_csv(columns: dict[str, list], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))


def _interval_text(interval: Interval) -> str:
    return _with_interval(interval.estimate, (interval.low, interval.high))


def _with_interval(value: float, bounds: tuple[float, float] | None) -> str:
    """``0.1643 [0.1510, 0.1780]``, or the point alone without an interval."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.4f}" if bounds is None else f"{value:.4f} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
