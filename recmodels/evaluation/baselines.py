"""Popularity baselines, ranked with the same protocol as the models (same targets, full ranking, pessimistic
ties, same history-length buckets): the floor a trained sequential model has to clear to be worth its cost.

``most_popular`` scores each item by its number of training events; ``recent_popular`` only counts the
training events of the last ``RECENT_FRACTION`` of the training period, which wins when interests drift.
Neither sees a validation or test event, exactly as the models' weights do not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from recmodels.data.split_data import TRAIN, SplitData
from recmodels.evaluation.evaluate import EvalResult, TargetRanks, bucket_metrics, ranking_metrics, select_targets

RECENT_FRACTION = 0.1  # the last tenth of the training period's time span
BASELINES = ("most_popular", "recent_popular")


def training_counts(data: SplitData, since_ms: int | None = None) -> np.ndarray:
    """(num_items + 1,) training events per item id (index 0, padding, stays 0), from ``since_ms`` on."""
    train = data.split == TRAIN
    if since_ms is not None:
        train &= data.timestamps >= since_ms
    return np.bincount(data.items[train], minlength=data.num_items + 1).astype(np.int64)


def recent_start(data: SplitData, fraction: float = RECENT_FRACTION) -> int:
    """First timestamp (ms) of the last ``fraction`` of the training period."""
    times = data.timestamps[data.split == TRAIN]
    if not len(times):
        raise ValueError("the split has no training events: popularity needs some")
    first, last = int(times.min()), int(times.max())
    return last - int((last - first) * fraction)


def popularity_ranks(counts: np.ndarray, target_items: np.ndarray) -> np.ndarray:
    """Rank of each target among items 1..N by count, pessimistic on ties: 1 + #higher + #other equal."""
    ordered = np.sort(counts[1:])
    return len(ordered) - np.searchsorted(ordered, counts[target_items], side="left")


def evaluate_baseline(
    name: str, data: SplitData, split: str, ks: Sequence[int] = (5, 10, 20), max_targets: int | None = None
) -> EvalResult:
    """``name`` (one of ``BASELINES``) on ``split``, overall and per history-length bucket."""
    began = time.perf_counter()
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    counts = training_counts(data, recent_start(data) if name == "recent_popular" else None)
    targets = select_targets(data, split, max_targets)
    ranks = popularity_ranks(counts, targets.items)
    return EvalResult(
        ranking_metrics(ranks, ks),
        bucket_metrics(ranks, targets.positions, ks),
        len(targets.items),
        time.perf_counter() - began,
        TargetRanks.of(data, targets, ranks),
    )
