"""The comparison as tables: Markdown for the run's description and the asset's page, columns for
``mlflow.log_table`` and the CSVs, and ``<model>/<column>`` metrics to chart and search."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from pipelines.metric_names import COLD_START
from pipelines.reporting.comparison import COLUMNS, Comparison
from pipelines.reporting.numbers import MINUS, cell, difference_text, number_text, p_text, with_interval
from pipelines.reporting.significance import Pairing

TABLE_COLUMNS = (
    "test_ndcg_10",
    "test_hr_10",
    "valid_ndcg_10",
    "train_s_per_epoch",
    "inference_ms_per_target",
    "peak_memory_mb",
    "parameters",
)


def markdown_table(comparison: Comparison) -> str:
    """One row per model and baseline; test NDCG@10 with its 95% interval, the seed spread when a model was
    trained with several seeds, and where each model's weights started when any was warm-started."""
    rows = comparison.models + comparison.baselines
    with_seeds = any(s.num_seeds > 1 for s in rows)
    with_warm = any(s.warm_start not in ("", COLD_START) for s in comparison.models)
    headers = [COLUMNS[column][1] for column in TABLE_COLUMNS]
    headers[0] += " [95% CI]"
    optional = [*(["seed std (seeds)"] if with_seeds else []), *(["warm start"] if with_warm else [])]
    header = ["model", *headers, *optional, "converged"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in rows:
        converged = "baseline" if s.is_baseline else ("yes" if s.converged else "**no**")
        cells = [
            s.model,
            with_interval(s.values["test_ndcg_10"], s.interval("test_ndcg_10")),
            *(number_text(s.values[column]) for column in TABLE_COLUMNS[1:]),
        ]
        if with_seeds:
            std = s.values["test_ndcg_10_seed_std"]
            cells.append(f"± {std:.4f} ({s.num_seeds})" if s.num_seeds > 1 and math.isfinite(std) else "–")
        if with_warm:
            cells.append(s.warm_start or "–")
        lines.append("| " + " | ".join([*cells, converged]) + " |")
    return "\n".join(lines)


def paired_markdown(comparison: Comparison) -> str:
    """The champion minus each model on the same targets, with intervals and p-values; empty without pairs."""
    if not comparison.pairings:
        return ""
    champion = comparison.champion.model
    header = [f"{champion} {MINUS}", "test NDCG@10 [95% CI]", "p", "test HR@10 [95% CI]", "p", "on test NDCG@10"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in comparison.pairings:
        ndcg, hr = p.differences["ndcg_10"], p.differences["hr_10"]
        name = f"{p.model} (baseline)" if p.is_baseline else p.model
        cells = [
            name,
            difference_text(ndcg),
            p_text(ndcg, bare=True),
            difference_text(hr),
            p_text(hr, bare=True),
            _side(p, champion),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{champion} minus each model on the same {comparison.num_targets:,} test targets of "
        f"{comparison.num_users:,} users (each target's metric averaged over a model's seeds); 95% user-bootstrap "
        "intervals; p from a paired sign-flip permutation test over users."
    )
    return "\n".join(lines)


def _side(pairing: Pairing, champion: str) -> str:
    difference = pairing.headline
    if difference.ahead:
        return f"{champion} ahead"
    if difference.behind:
        return f"**{pairing.model} ahead**"
    return "tied"


def table_columns(comparison: Comparison) -> dict[str, list]:
    """The comparison as columns (for ``mlflow.log_table`` and the CSV): empty cells, never NaN."""
    rows = comparison.models + comparison.baselines
    columns: dict[str, list] = {"model": [s.model for s in rows], "run_id": [s.run_id for s in rows]}
    for column in COLUMNS:
        columns[column] = [cell(s.values[column]) for s in rows]
    columns["convergence"] = [s.convergence or ("baseline" if s.is_baseline else "") for s in rows]
    if any(s.warm_start for s in rows):  # recorded by training runs, not by an ablation's variants
        columns["warm_start"] = [s.warm_start for s in rows]
    for bucket in comparison.buckets:
        columns[f"test_ndcg_10_{bucket}"] = [cell(s.bucket_ndcg_10.get(bucket, math.nan)) for s in rows]
        for index, bound in enumerate(("low", "high")):
            cis = [s.bucket_ci.get(bucket, (math.nan, math.nan))[index] for s in rows]
            columns[f"test_ndcg_10_{bucket}_ci_{bound}"] = [cell(value) for value in cis]
    return columns


def paired_columns(comparison: Comparison) -> dict[str, list]:
    """One row per (model, metric): the champion minus that model, for ``mlflow.log_table`` and the CSV."""
    columns: dict[str, list] = {
        name: []
        for name in ("champion", "model", "is_baseline", "metric", "difference", "ci_low", "ci_high", "p_value")
    }
    columns |= {"num_targets": [], "num_users": [], "significant": []}
    for p in comparison.pairings:
        for metric, d in p.differences.items():
            row = [comparison.champion.model, p.model, p.is_baseline, f"test_{metric}", d.estimate, d.low, d.high]
            row += [d.p_value, d.num_targets, d.num_users, d.significant]
            for name, value in zip(columns, row, strict=True):
                columns[name].append(value)
    return columns


def write_csv(comparison: Comparison, path: Path) -> Path:
    return _write_columns(table_columns(comparison), path)


def write_paired_csv(comparison: Comparison, path: Path) -> Path:
    return _write_columns(paired_columns(comparison), path)


def _write_columns(columns: dict[str, list], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def comparison_metrics(comparison: Comparison) -> dict[str, float]:
    """``<model>/<column>`` for every finite number and ``paired/<model>/<metric>_diff...`` for every pair:
    the comparison run can be charted and searched."""
    metrics = {}
    for summary in comparison.models + comparison.baselines:
        for column, value in summary.values.items():
            if math.isfinite(value):
                metrics[f"{summary.model}/{column}"] = value
    for p in comparison.pairings:
        for metric, d in p.differences.items():
            prefix = f"paired/{p.model}/{metric}"
            values = {"_diff": d.estimate, "_diff_ci_low": d.low, "_diff_ci_high": d.high, "_p_value": d.p_value}
            metrics |= {f"{prefix}{suffix}": value for suffix, value in values.items() if math.isfinite(value)}
    return metrics
