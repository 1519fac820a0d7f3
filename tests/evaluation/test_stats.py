"""Intervals over users and paired tests: they cover planted effects, and find nothing between equals."""

from __future__ import annotations

import numpy as np
import pytest

from recmodels.evaluation.stats import SeedSpread, align, paired_difference, per_target_metric, user_bootstrap


def planted_ranks(num_users=200, per_user=5, seed=0):
    """Ranks of model B; model A ranks every target of every user 1 place better (never below rank 1)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    ranks_b = rng.integers(1, 30, size=len(users))
    ranks_a = np.maximum(ranks_b - 1, 1)
    return users, ranks_a, ranks_b


def test_per_target_metrics_average_to_the_ranking_metrics():
    ranks = np.array([1, 2, 6, 30])
    assert per_target_metric(ranks, "hr_10").tolist() == [1, 1, 1, 0]
    assert per_target_metric(ranks, "ndcg_10") == pytest.approx([1, 1 / np.log2(3), 1 / np.log2(7), 0])
    assert per_target_metric(ranks, "mrr_5") == pytest.approx([1, 0.5, 0, 0])
    with pytest.raises(ValueError, match="unknown metric"):
        per_target_metric(ranks, "auc_10")


def test_user_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    users, ranks, _ = planted_ranks()
    values = per_target_metric(ranks, "ndcg_10")
    interval = user_bootstrap(values, users)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low < interval.estimate < interval.high
    assert user_bootstrap(values, users) == interval  # fixed seed


def test_resampling_users_widens_the_interval_when_a_users_targets_move_together():
    """Ten identical targets per user carry one user's worth of information, not ten."""
    rng = np.random.default_rng(3)
    per_user = rng.random(100)
    users = np.repeat(np.arange(100), 10)
    clustered = user_bootstrap(np.repeat(per_user, 10), users)
    independent = user_bootstrap(np.repeat(per_user, 10), np.arange(1000))
    assert clustered.half_width > 2 * independent.half_width


def test_paired_interval_covers_a_planted_difference_and_excludes_zero():
    users, ranks_a, ranks_b = planted_ranks()
    a, b = per_target_metric(ranks_a, "ndcg_10"), per_target_metric(ranks_b, "ndcg_10")
    difference = paired_difference(a, b, users)
    assert difference.estimate == pytest.approx((a - b).mean())
    assert difference.low <= (a - b).mean() <= difference.high
    assert difference.significant and difference.low > 0
    assert difference.p_value < 0.01
    assert (difference.num_targets, difference.num_users) == (1000, 200)


def test_intervals_cover_a_known_population_effect_about_95_times_in_100():
    """Per-target differences = a planted effect of 0.05 + a per-user shift + noise; over 60 independent
    logs the 95% interval should hold 0.05 in about 57 (a binomial 99.9% bound is 51)."""
    effect, covered = 0.05, 0
    for replicate in range(60):
        rng = np.random.default_rng(100 + replicate)
        users = np.repeat(np.arange(80), 6)
        shift = rng.normal(0.0, 0.05, size=80)[users]
        differences = effect + shift + rng.normal(0.0, 0.1, size=len(users))
        covered += user_bootstrap(differences, users, resamples=500, seed=replicate).contains(effect)
    assert covered >= 51


def test_paired_test_on_identical_models_finds_no_difference():
    users, ranks, _ = planted_ranks()
    values = per_target_metric(ranks, "ndcg_10")
    difference = paired_difference(values, values.copy(), users)
    assert (difference.estimate, difference.low, difference.high, difference.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not difference.significant and difference.users_needed() is None


def test_noise_without_effect_is_not_significant_and_says_how_many_users_would_be_needed():
    rng = np.random.default_rng(7)
    users = np.repeat(np.arange(50), 4)
    a = rng.random(200)
    b = a + rng.normal(0.0, 0.3, size=200) - 0.01
    difference = paired_difference(a, b, users)
    assert not difference.significant and difference.p_value > 0.05
    assert difference.users_needed() > 50


def test_a_sign_flip_test_over_three_users_is_exact():
    """Three users all +1: two of the 2**3 sign patterns are as extreme, so p = 2/8."""
    difference = paired_difference(np.ones(3), np.zeros(3), np.arange(3))
    assert difference.p_value == pytest.approx(0.25)


def test_too_few_users_are_never_significant_however_consistent_the_difference():
    """Five users all ahead: the interval excludes zero, but the exact sign-flip p cannot go below 2/32."""
    difference = paired_difference(np.ones(5), np.zeros(5), np.arange(5))
    assert difference.low > 0 and difference.p_value == pytest.approx(2 / 32)
    assert not difference.significant


def test_align_pairs_the_targets_both_evaluations_ranked():
    index_a, index_b = align(np.array([5, 1, 9, 3]), np.array([3, 4, 5]))
    assert np.array_equal(np.array([5, 1, 9, 3])[index_a], np.array([3, 4, 5])[index_b])
    assert sorted(np.array([5, 1, 9, 3])[index_a].tolist()) == [3, 5]


def test_seed_spread_is_mean_and_sample_standard_deviation():
    spread = SeedSpread.of([0.10, 0.12, 0.14])
    assert spread.mean == pytest.approx(0.12) and spread.std == pytest.approx(0.02)
    assert SeedSpread.of([0.3]).std == 0.0


def test_mismatched_or_empty_inputs_fail_clearly():
    with pytest.raises(ValueError, match="one length"):
        user_bootstrap(np.ones(3), np.arange(4))
    with pytest.raises(ValueError, match="no targets"):
        user_bootstrap(np.ones(0), np.arange(0))
