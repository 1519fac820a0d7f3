"""Per-target test results of one model, averaged over its seeds, and the paired difference of two models.

Shared by the training side (a run's intervals and its paired test against popularity) and the comparison
(the champion against every other model): both read the ``TargetRanks`` table a training run keeps, with a
``seed`` column, and judge each target's metric averaged over the model's seeds, so a paired test compares
models rather than single training runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recmodels.evaluation.evaluate import TargetRanks
from recmodels.evaluation.stats import (
    Interval,
    PairedDifference,
    SeedSpread,
    align,
    paired_difference,
    per_target_metric,
    user_bootstrap,
)

PAIRED_METRICS = ("ndcg_10", "hr_10")  # the headline and its hit rate
SEED_COLUMN = "seed"


@dataclass(frozen=True)
class PerTarget:
    """One model's test result per target (ascending key), each metric averaged over the model's seeds."""

    keys: np.ndarray  # (T,) int64, TargetRanks.keys
    users: np.ndarray  # (T,) int64
    buckets: np.ndarray  # (T,) str, history-length bucket of each target
    values: dict[str, np.ndarray]  # metric -> (T,) float64, mean over seeds
    seed_means: dict[str, tuple[float, ...]]  # metric -> the overall mean of each seed

    @property
    def num_targets(self) -> int:
        return len(self.keys)

    @property
    def num_users(self) -> int:
        return len(np.unique(self.users))

    @property
    def num_seeds(self) -> int:
        return len(next(iter(self.seed_means.values()), ()))

    def interval(self, metric: str) -> Interval:
        return user_bootstrap(self.values[metric], self.users)

    def bucket_intervals(self, metric: str) -> dict[str, Interval]:
        """Per non-empty history-length bucket, shortest first (bucket names sort so)."""
        intervals = {}
        for bucket in np.unique(self.buckets):
            inside = self.buckets == bucket
            intervals[str(bucket)] = user_bootstrap(self.values[metric][inside], self.users[inside])
        return intervals

    def seed_spread(self, metric: str) -> SeedSpread:
        return SeedSpread.of(self.seed_means[metric])


def per_target(
    ranks: TargetRanks, seeds: np.ndarray | None = None, metrics: Sequence[str] = PAIRED_METRICS
) -> PerTarget:
    """Average each target's metrics over the seeds; every seed must rank the same targets exactly once."""
    seeds = np.zeros(len(ranks.rank), np.int64) if seeds is None else np.asarray(seeds)
    if not len(seeds):
        raise ValueError("no targets: per-target results need at least one ranked target")
    keys = ranks.keys
    reference: np.ndarray | None = None
    sums = {metric: np.zeros(0) for metric in metrics}
    seed_means: dict[str, list[float]] = {metric: [] for metric in metrics}
    for seed in np.unique(seeds):
        rows = np.flatnonzero(seeds == seed)
        rows = rows[np.argsort(keys[rows], kind="stable")]
        if np.any(keys[rows][1:] == keys[rows][:-1]):
            raise ValueError(f"seed {seed} ranks a target twice (same user_id and position)")
        if reference is None:
            reference, sums = rows, {metric: np.zeros(len(rows)) for metric in metrics}
        elif not np.array_equal(keys[rows], keys[reference]):
            raise ValueError(
                f"seed {seed} ranks other targets than seed {seeds[reference[0]]} "
                f"({len(rows):,} and {len(reference):,} targets): seeds of one model must rank the same ones"
            )
        for metric in metrics:
            values = per_target_metric(ranks.rank[rows], metric)
            sums[metric] += values
            seed_means[metric].append(float(values.mean()))
    assert reference is not None
    num_seeds = len(np.unique(seeds))
    return PerTarget(
        keys=keys[reference],
        users=ranks.user_id[reference],
        buckets=ranks.bucket()[reference],
        values={metric: sums[metric] / num_seeds for metric in metrics},
        seed_means={metric: tuple(means) for metric, means in seed_means.items()},
    )


def from_table(table: pa.Table, metrics: Sequence[str] = PAIRED_METRICS) -> PerTarget:
    """A ``TargetRanks`` table with an optional ``seed`` column (one row per seed and target)."""
    ranks = TargetRanks(*(table.column(name).to_numpy().astype(np.int64) for name in TargetRanks.COLUMNS))
    has_seed = SEED_COLUMN in table.column_names
    return per_target(ranks, table.column(SEED_COLUMN).to_numpy() if has_seed else None, metrics)


def load_per_target(path: str | Path) -> PerTarget:
    """A training run's per-target artifact, read from ``path``."""
    return from_table(pq.read_table(path))


def same_targets(a: PerTarget, b: PerTarget) -> bool:
    return np.array_equal(a.keys, b.keys)


def targets_in_common(a: PerTarget, b: PerTarget) -> int:
    return len(align(a.keys, b.keys)[0])


def paired(a: PerTarget, b: PerTarget, metric: str) -> PairedDifference:
    """A minus B on ``metric``, target by target, with users as the resampled and permuted unit."""
    if not same_targets(a, b):
        raise ValueError(
            f"paired results need the same targets: {a.num_targets:,} and {b.num_targets:,} targets, "
            f"{targets_in_common(a, b):,} in common"
        )
    return paired_difference(a.values[metric], b.values[metric], a.users)
