"""Uncertainty of ranking metrics: bootstrap intervals over users and paired tests between two models.

A metric is a mean over targets, but targets of one user are not independent (same history, same tastes),
so every resample draws *users* with replacement and keeps all their targets (a cluster bootstrap of the
ratio "sum of the user's values / number of the user's targets"). Two models ranked on the same targets are
compared pairwise: the per-target difference is resampled the same way for the interval, and its p-value
comes from a paired sign-flip permutation test at user level (under "no difference" each user's summed
difference is as likely to have either sign). Both are ``scipy.stats`` procedures with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0
RESAMPLED_VALUES = 20_000_000  # users x resamples held at once: bounds the memory of a resampling batch


def per_target_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each target's contribution to ``metric`` (``ndcg_10``, ``hr_10``, ``mrr_10``, any K) from its rank."""
    kind, _, k = metric.rpartition("_")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= int(k)
    if kind == "hr":
        return hit.astype(np.float64)
    if kind == "ndcg":
        return np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    if kind == "mrr":
        return np.where(hit, 1.0 / ranks, 0.0)
    raise ValueError(f"unknown metric {metric!r}: expected ndcg_K, hr_K or mrr_K")


@dataclass(frozen=True)
class Interval:
    """A metric's estimate (the plain mean over targets) and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the same targets: mean difference, its interval, and a two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float
    num_targets: int
    num_users: int
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        """The interval excludes zero and the permutation test agrees (p below 1 - confidence). With a handful
        of users a percentile bootstrap interval is too narrow, while the sign-flip test stays exact (five
        users cannot give p below 2/32), so both must say so."""
        return (self.low > 0 or self.high < 0) and self.p_value < 1 - self.confidence

    @property
    def ahead(self) -> bool:
        """A is better than B beyond the noise."""
        return self.significant and self.estimate > 0

    @property
    def behind(self) -> bool:
        """B is better than A beyond the noise."""
        return self.significant and self.estimate < 0

    def users_needed(self) -> float | None:
        """Users (at this many targets each) for which the interval would just exclude zero, if the effect
        stayed what it is now: half-widths shrink as 1/sqrt(users). None when the difference is exactly 0."""
        if self.estimate == 0 or not math.isfinite(self.estimate):
            return None
        half_width = (self.high - self.low) / 2
        return self.num_users * (half_width / abs(self.estimate)) ** 2


def _user_totals(values: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user: the sum of ``values`` and the number of targets."""
    _, index = np.unique(users, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    return sums, counts


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def _batch(num_users: int) -> int:
    """Resamples computed at once, so that a million users do not need a (1000, 1M) matrix."""
    return max(1, RESAMPLED_VALUES // max(num_users, 1))


def _check(values: np.ndarray, users: np.ndarray) -> None:
    if values.shape != users.shape or values.ndim != 1:
        raise ValueError(f"values {values.shape} and users {users.shape} must be 1-d arrays of one length")
    if not len(values):
        raise ValueError("no targets: an interval needs at least one")


def user_bootstrap(
    values: np.ndarray,
    users: np.ndarray,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Interval:
    """Percentile interval of the mean of per-target ``values``, resampling users with all their targets."""
    values, users = np.asarray(values, dtype=np.float64), np.asarray(users)
    _check(values, users)
    estimate = float(values.mean())
    sums, counts = _user_totals(values, users)
    if len(sums) < 2 or np.all(values == values[0]):  # nothing to resample: the interval is the point
        return Interval(estimate, estimate, estimate)
    result = scipy_stats.bootstrap(
        (sums, counts),
        _ratio,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        batch=_batch(len(sums)),
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high))


def paired_difference(
    values_a: np.ndarray,
    values_b: np.ndarray,
    users: np.ndarray,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> PairedDifference:
    """A - B over the same targets (aligned arrays): user-bootstrap interval and sign-flip permutation p-value."""
    difference = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    users = np.asarray(users)
    _check(difference, users)
    interval = user_bootstrap(difference, users, resamples, confidence, seed)
    sums, counts = _user_totals(difference, users)
    if not np.any(sums):  # every user's differences cancel: no test can find a difference
        p_value = 1.0
    else:
        total = counts.sum()
        test = scipy_stats.permutation_test(
            (sums,),
            lambda x, axis=-1: np.sum(x, axis=axis) / total,
            permutation_type="samples",  # one sample: the null flips the sign of each user's sum
            vectorized=True,
            n_resamples=resamples,
            alternative="two-sided",
            batch=_batch(len(sums)),
            rng=np.random.default_rng(seed),
        )
        p_value = float(test.pvalue)
    return PairedDifference(
        interval.estimate, interval.low, interval.high, p_value, len(difference), len(sums), confidence
    )


def align(keys_a: np.ndarray, keys_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) such that keys_a[ia] == keys_b[ib]: the targets both evaluations ranked.

    Keys identify a target, e.g. ``user_id * 2**32 + position`` (``TargetRanks.keys``)."""
    common, index_a, index_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    del common
    return index_a, index_b


@dataclass(frozen=True)
class SeedSpread:
    """A metric across independent training seeds: mean, sample standard deviation, and the values."""

    mean: float
    std: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedSpread:
        array = np.asarray(values, dtype=np.float64)
        if not len(array):
            raise ValueError("no seeds: a spread needs at least one value")
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return cls(float(array.mean()), std, tuple(float(v) for v in array))
