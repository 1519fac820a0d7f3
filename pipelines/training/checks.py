"""Checks on every trained model, from the numbers its worker reported: are the metrics numbers at all, does
the model beat the popularity floor (and by more than the noise of the test targets), and had training
converged. None blocks: the comparison still runs and shows the failure, which is what a user needs to see to
act on it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

from pipelines.training.results import VS_POPULARITY
from recmodels.evaluation.baselines import BASELINES
from recmodels.evaluation.stats import CONFIDENCE

FINITE = "metrics_finite"
BEATS_POPULARITY = "beats_popularity"
CONVERGED = "converged"
DISTINGUISHABLE = "distinguishable_from_popularity"
FINITE_KEYS = ("valid_ndcg_10", "test_ndcg_10", "test_hr_10", "test_mrr_10")


def check_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(FINITE, asset=asset_name, description="Validation and test metrics are finite numbers."),
        dg.AssetCheckSpec(
            BEATS_POPULARITY,
            asset=asset_name,
            description="Test NDCG@10 is above both popularity baselines (most popular, recently popular) ranked "
            "on the same targets.",
        ),
        dg.AssetCheckSpec(
            CONVERGED,
            asset=asset_name,
            description="Validation NDCG@10 peaked before the last epoch (warns when training was still improving).",
        ),
        dg.AssetCheckSpec(
            DISTINGUISHABLE,
            asset=asset_name,
            description="Paired test of per-target test NDCG@10 against most_popular on the same targets: the 95% "
            "user-bootstrap interval of the difference lies above zero (warns when the test set cannot tell the "
            "model from popularity).",
        ),
    ]


def _raw(metadata: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A reported value: Pipes hands back MetadataValues, a direct caller plain values."""
    value = metadata.get(key, default)
    return getattr(value, "value", value)


def _number(metadata: Mapping[str, Any], key: str) -> float:
    value = _raw(metadata, key)
    return float(value) if isinstance(value, int | float) else math.nan


def check_results(metadata: Mapping[str, Any]) -> list[dg.AssetCheckResult]:
    """The four checks' results from the worker's reported metadata."""
    values = {key: _number(metadata, key) for key in FINITE_KEYS}
    not_finite = sorted(key for key, value in values.items() if not math.isfinite(value))
    model = values["test_ndcg_10"]
    floors = {name: _number(metadata, f"{name}_test_ndcg_10") for name in BASELINES}
    best_floor = max(floors, key=lambda name: floors[name] if math.isfinite(floors[name]) else -math.inf)
    margin = model - floors[best_floor]
    converged, verdict = _raw(metadata, "converged"), str(_raw(metadata, "convergence", ""))
    return [
        dg.AssetCheckResult(
            check_name=FINITE,
            passed=not not_finite,
            metadata={"not_finite": ", ".join(not_finite) or "none"},
        ),
        dg.AssetCheckResult(
            check_name=BEATS_POPULARITY,
            passed=bool(math.isfinite(margin) and margin > 0),
            metadata={
                "test_ndcg_10": model,
                **{f"{name}_test_ndcg_10": floor for name, floor in floors.items()},
                "margin_over_best_baseline": round(margin, 4) if math.isfinite(margin) else "n/a",
            },
        ),
        dg.AssetCheckResult(
            check_name=CONVERGED,
            passed=bool(converged),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"convergence": verdict},
        ),
        _distinguishable(metadata),
    ]


def _distinguishable(metadata: Mapping[str, Any]) -> dg.AssetCheckResult:
    """Passes when the model is ahead of the most popular items by more than the test targets' noise: the
    paired interval above zero and the permutation test agreeing
    (``recmodels.evaluation.stats.PairedDifference.ahead``)."""
    paired = {key: _number(metadata, name) for key, name in VS_POPULARITY.items()}
    passed = math.isfinite(paired["low"]) and paired["low"] > 0 and paired["p_value"] < 1 - CONFIDENCE
    return dg.AssetCheckResult(
        check_name=DISTINGUISHABLE,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ndcg_10_difference": paired["difference"],
            "interval_95": f"[{paired['low']:.4g}, {paired['high']:.4g}]",
            "p_value": paired["p_value"],
            "targets": _raw(metadata, VS_POPULARITY["targets"], "n/a"),
            "users": _raw(metadata, VS_POPULARITY["users"], "n/a"),
        },
    )
