"""What a finished training run reports: its MLflow metrics, and the metadata the asset shows in Dagster.

Few columns, each readable: validation only at K=10 (it only picks the epoch), test at every K overall and
per non-empty history-length bucket, cost next to quality (inference included), the convergence verdict, the
popularity baselines every model has to beat, and how sure each number is (95% intervals over users, and a
paired test against the most popular items). Values are rounded to 4 significant digits: the noise of a
timing or of a metric over a few thousand targets is far larger than that.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.metric_names import (
    BUCKET_METRICS,
    HEADLINE_METRIC,
    METRICS_AT_10,
    baseline_metric,
    cost_metric,
    final_metric,
    interval_metric,
)
from recmodels.evaluation.convergence import Convergence
from recmodels.evaluation.evaluate import EvalResult
from recmodels.evaluation.stats import PairedDifference
from recmodels.training.loop import FitResult

# Materialization metadata of the paired test against the most popular items (the check reads them).
VS_POPULARITY = {
    "difference": "vs_most_popular_ndcg_10_difference",
    "low": "vs_most_popular_ndcg_10_ci_low",
    "high": "vs_most_popular_ndcg_10_ci_high",
    "p_value": "vs_most_popular_p_value",
    "targets": "vs_most_popular_targets",
    "users": "vs_most_popular_users",
}

SIGNIFICANT_DIGITS = 4


def rounded(value: float) -> float:
    """``value`` to 4 significant digits (integers and non-finite values unchanged)."""
    if not math.isfinite(value) or value == 0 or float(value).is_integer():
        return float(value)
    return round(value, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value))))


def eval_metrics(split: str, result: EvalResult, total_targets: int) -> dict[str, float]:
    """``split``'s metrics; ``num_targets`` is what was ranked, ``num_targets_total`` what the split holds
    (validation ranks a fixed subset of ``train.eval_max_targets`` after each epoch)."""
    names = METRICS_AT_10 if split == "valid" else tuple(result.overall)
    metrics = {final_metric(split, name): result.overall[name] for name in names}
    if split == "test":
        for bucket, values in result.by_bucket.items():
            metrics.update({final_metric(split, name, bucket): values[name] for name in BUCKET_METRICS})
    metrics[final_metric(split, "num_targets")] = result.num_targets
    metrics[final_metric(split, "num_targets_total")] = total_targets
    return metrics


def inference_ms_per_target(test: EvalResult) -> float:
    """Encoding each test target's full prior history and ranking the whole catalogue, per target."""
    return 1000 * test.seconds / test.num_targets if test.num_targets else math.nan


def baseline_metrics(baselines: dict[str, EvalResult]) -> dict[str, float]:
    """Each baseline's test metrics at K=10."""
    return {
        baseline_metric(name, metric): result.overall[metric]
        for name, result in baselines.items()
        for metric in METRICS_AT_10
    }


def result_metrics(
    result: FitResult,
    convergence: Convergence,
    processes: int,
    totals: dict[str, int],
    baselines: dict[str, EvalResult],
) -> dict[str, float]:
    metrics = {
        **eval_metrics("valid", result.valid, totals["valid"]),
        **eval_metrics("test", result.test, totals["test"]),
        **{cost_metric(name): value for name, value in result.cost.as_metrics().items()},
        cost_metric("inference_ms_per_target"): inference_ms_per_target(result.test),
        cost_metric("processes"): processes,
        "best_epoch": result.best_epoch,
        "epochs_run": convergence.epochs_run,
        "converged": float(convergence.converged),
        **baseline_metrics(baselines),
    }
    return {key: rounded(float(value)) for key, value in metrics.items()}


def materialization_metadata(
    result: FitResult, convergence: Convergence, processes: int, baselines: dict[str, EvalResult]
) -> dict[str, Any]:
    """Headline numbers for the asset page (the checks read them too)."""
    cost = result.cost
    numbers = {
        "valid_ndcg_10": result.valid.overall[HEADLINE_METRIC],
        "test_ndcg_10": result.test.overall[HEADLINE_METRIC],
        "test_hr_10": result.test.overall["hr_10"],
        "test_mrr_10": result.test.overall["mrr_10"],
        **{f"{name}_test_ndcg_10": b.overall[HEADLINE_METRIC] for name, b in baselines.items()},
        "train_seconds_per_epoch": cost.train_seconds_per_epoch,
        "inference_ms_per_target": inference_ms_per_target(result.test),
        "peak_memory_mb": cost.peak_memory_mb,
        "train_events_per_second": cost.train_events_per_second,
    }
    return {
        **{key: rounded(value) for key, value in numbers.items()},
        "num_parameters": cost.num_parameters,
        "best_epoch": result.best_epoch,
        "epochs_run": convergence.epochs_run,
        "converged": convergence.converged,
        "convergence": convergence.verdict(),
        "processes": processes,
    }


def uncertainty_metadata(intervals: dict[str, float], difference: PairedDifference) -> dict[str, Any]:
    """The test intervals at K=10 and the paired test against the most popular items, for the asset page."""
    bounds = {
        f"test_{name}_ci_{bound}": intervals[interval_metric("test", name, bound)]
        for name in METRICS_AT_10
        for bound in ("low", "high")
    }
    paired = {VS_POPULARITY[key]: getattr(difference, key) for key in ("low", "high", "p_value")}
    paired[VS_POPULARITY["difference"]] = difference.estimate
    return {
        **{key: rounded(value) for key, value in (bounds | paired).items()},
        VS_POPULARITY["targets"]: difference.num_targets,
        VS_POPULARITY["users"]: difference.num_users,
    }
