"""What the paired tests behind the comparison's verdict find on planted per-target results."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.reporting.significance import REVERSED, TIED, WINNER, judge
from pipelines.target_results import load_per_target, paired, per_target
from recmodels.evaluation.evaluate import TargetRanks
from recmodels.evaluation.stats import PairedDifference

MISS = 100  # a rank outside the top 10: contributes 0 to NDCG@10 and HR@10


def target_ranks(users: np.ndarray, positions: np.ndarray, ranks: np.ndarray) -> TargetRanks:
    zeros = np.zeros(len(users), np.int64)
    return TargetRanks(users.astype(np.int64), positions.astype(np.int64), zeros, zeros, ranks.astype(np.int64))


def planted(num_users: int = 99, targets_per_user: int = 10) -> tuple[TargetRanks, TargetRanks]:
    """B hits ``u % 5`` of user u's targets at rank 1; A hits those and 1, 2 or 3 more (cycling over users):
    A is better for every user, by 0.2 NDCG@10 on average."""
    users = np.repeat(np.arange(1, num_users + 1), targets_per_user)
    positions = np.tile(np.arange(targets_per_user), num_users) + 5
    hits_b = users % 5
    hits_a = hits_b + 1 + users % 3
    slot = positions - 5
    ranks_a = np.where(slot < hits_a, 1, MISS)
    ranks_b = np.where(slot < hits_b, 1, MISS)
    return target_ranks(users, positions, ranks_a), target_ranks(users, positions, ranks_b)


def test_a_planted_difference_is_significant_and_its_interval_covers_the_effect():
    a, b = planted()
    difference = paired(per_target(a), per_target(b), "ndcg_10")
    assert difference.estimate == pytest.approx(0.2)
    assert 0 < difference.low < 0.2 < difference.high
    assert difference.significant and difference.p_value < 0.01
    assert (difference.num_targets, difference.num_users) == (990, 99)


def test_identical_ranks_are_tied_with_p_one_and_a_zero_width_interval_at_zero():
    a, _ = planted()
    difference = paired(per_target(a), per_target(a), "ndcg_10")
    assert (difference.estimate, difference.low, difference.high, difference.p_value) == (0, 0, 0, 1)
    assert not difference.significant and difference.users_needed() is None


def test_several_seeds_are_averaged_per_target_before_pairing():
    """Seed 0 ranks every target first, seed 1 misses every one: each target's NDCG@10 is 0.5, the same as a
    model that ranks every target third, so the paired difference is exactly zero."""
    users = np.repeat(np.arange(1, 21), 4)
    positions = np.tile(np.arange(4), 20)
    order = np.random.default_rng(0).permutation(len(users))  # the seeds' rows in different orders
    seeded = target_ranks(
        np.concatenate([users, users[order]]),
        np.concatenate([positions, positions[order]]),
        np.concatenate([np.ones(len(users)), np.full(len(users), MISS)]),
    )
    seeds = np.repeat([0, 1], len(users))
    model = per_target(seeded, seeds)
    assert model.num_seeds == 2 and model.num_targets == 80
    np.testing.assert_allclose(model.values["ndcg_10"], 0.5)
    assert model.seed_means["ndcg_10"] == (1.0, 0.0)
    assert model.seed_spread("ndcg_10").std == pytest.approx(np.sqrt(0.5))
    third = per_target(target_ranks(users, positions, np.full(len(users), 3)))
    difference = paired(model, third, "ndcg_10")
    assert (difference.estimate, difference.low, difference.high, difference.p_value) == (0, 0, 0, 1)


def test_seeds_that_ranked_other_targets_are_refused():
    users, positions = np.array([1, 1, 2, 1, 1, 3]), np.array([0, 1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="seed 1 ranks other targets than seed 0"):
        per_target(target_ranks(users, positions, np.ones(6)), np.array([0, 0, 0, 1, 1, 1]))


def test_models_that_ranked_other_targets_cannot_be_paired():
    a, _ = planted(num_users=10)
    fewer = target_ranks(a.user_id[:-1], a.position[:-1], a.rank[:-1])
    with pytest.raises(ValueError, match="99 in common"):
        paired(per_target(a), per_target(fewer), "ndcg_10")


def test_per_target_results_load_from_the_training_artifact(tmp_path):
    a, _ = planted(num_users=10)
    table = a.to_table().append_column("seed", pa.array(np.full(len(a.rank), 7), pa.int64()))
    pq.write_table(table, tmp_path / "test_ranks.parquet")
    loaded = load_per_target(tmp_path / "test_ranks.parquet")
    assert loaded.num_targets == 100 and loaded.num_users == 10 and loaded.num_seeds == 1
    assert set(loaded.buckets) == {"len_00000_00128"}
    np.testing.assert_array_equal(loaded.keys, np.sort(a.keys))


def difference(estimate: float, half_width: float) -> PairedDifference:
    """A paired result whose p-value agrees with its interval, as the two tests do with enough users."""
    p_value = 0.001 if abs(estimate) > half_width else 0.5
    return PairedDifference(estimate, estimate - half_width, estimate + half_width, p_value, 1000, 100)


def test_the_verdict_names_a_winner_only_when_every_interval_excludes_zero():
    ahead = judge("recmamba", {"sasrec": difference(0.05, 0.02), "gru4rec": difference(0.09, 0.02)})
    assert (ahead.kind, ahead.closest, ahead.tied) == (WINNER, "sasrec", ())
    tied = judge("recmamba", {"sasrec": difference(0.01, 0.02), "gru4rec": difference(0.09, 0.02)})
    assert (tied.kind, tied.closest, tied.tied) == (TIED, "sasrec", ("sasrec",))
    # ahead of the runner-up, but a noisier model's interval still includes zero: not a win
    noisy = judge("recmamba", {"sasrec": difference(0.05, 0.02), "linrec": difference(0.06, 0.08)})
    assert (noisy.kind, noisy.closest, noisy.tied) == (TIED, "linrec", ("linrec",))
    reversed_ = judge("recmamba", {"sasrec": difference(-0.05, 0.02), "gru4rec": difference(0.0, 0.02)})
    assert (reversed_.kind, reversed_.closest, reversed_.tied) == (REVERSED, "sasrec", ("gru4rec",))


def test_a_model_ahead_of_the_champion_is_named_though_a_noisier_one_scores_higher():
    """linrec has the best point estimate on test but its interval includes zero; sasrec and gru4rec are ahead
    of the champion beyond the noise: the verdict names both, best first, instead of hiding them behind linrec."""
    verdict = judge(
        "recmamba",
        {"linrec": difference(-0.06, 0.08), "sasrec": difference(-0.05, 0.02), "gru4rec": difference(-0.03, 0.01)},
    )
    assert (verdict.kind, verdict.closest) == (REVERSED, "sasrec")
    assert (verdict.ahead, verdict.tied) == (("sasrec", "gru4rec"), ("linrec",))
