"""Full-ranking metrics against hand-computed values, and the efficient evaluation against brute force."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.evaluate import (
    TargetRanks,
    bucket_metrics,
    evaluate,
    full_ranks,
    history_buckets,
    ranking_metrics,
    select_targets,
)
from recmodels.ops import use_backend
from recmodels.training.progress import ProgressLog


def test_metrics_match_hand_computed_values():
    metrics = ranking_metrics(np.array([1, 2, 6, 30]), ks=(5, 10, 20))
    assert metrics["hr_5"] == pytest.approx(2 / 4)
    assert metrics["ndcg_5"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert metrics["mrr_5"] == pytest.approx((1 + 1 / 2) / 4)
    assert metrics["hr_10"] == pytest.approx(3 / 4)
    assert metrics["ndcg_10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)
    assert metrics["mrr_10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4)
    assert metrics["hr_20"] == metrics["hr_10"]


def test_buckets_split_targets_by_prior_history_length_and_leave_empty_ones_out():
    ranks = np.array([1, 1, 50, 50, 1, 1])
    lengths = np.array([0, 127, 128, 255, 2048, 40_000])
    buckets = bucket_metrics(ranks, lengths, ks=(10,))
    assert list(buckets) == ["len_00000_00128", "len_00128_00256", "len_02048_03072", "len_32768_up"]
    assert buckets["len_00000_00128"] == {"num_targets": 2.0, "hr_10": 1.0, "ndcg_10": 1.0, "mrr_10": 1.0}
    assert buckets["len_00128_00256"]["num_targets"] == 2.0 and buckets["len_00128_00256"]["hr_10"] == 0.0
    assert buckets["len_32768_up"]["hr_10"] == 1.0


def test_bucket_names_sort_as_text_in_length_order():
    names = [name for name, _, _ in history_buckets()]
    assert sorted(names) == names and len(set(names)) == len(names)


@pytest.fixture
def hand_scored(tmp_path):
    """Items 1..4 with 2-d embeddings set by hand; one user whose history is [3] then target 1."""
    data = SplitData.load(write_split_export(tmp_path / "export", [[3, 1]], [[0, 1]], num_items=4))
    model = build_model("gru4rec", num_items=4, d_model=2)
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1, 0], [0, 1], [1, 1], [-1, 0]]))
    return model, data, select_targets(data, "valid")


def test_full_ranking_scores_the_whole_catalogue(hand_scored):
    model, data, targets = hand_scored
    # scores: item1 1.0, item2 0.5, item3 1.5, item4 -1.0 -> item 1 ranks second
    ranks = full_ranks(model, torch.tensor([[1.0, 0.5]]), data, targets, exclude_seen=False)
    assert ranks.tolist() == [2]


def test_ties_are_ranked_pessimistically(hand_scored):
    model, data, targets = hand_scored
    # scores: item1 1, item2 1, item3 2, item4 -1 -> item 3 above, item 2 tied: rank 3, not 2
    assert full_ranks(model, torch.tensor([[1.0, 1.0]]), data, targets, exclude_seen=False).tolist() == [3]
    assert full_ranks(model, torch.tensor([[0.0, 0.0]]), data, targets, exclude_seen=False).tolist() == [4]


def test_exclude_seen_removes_history_items_but_not_the_target(hand_scored):
    model, data, targets = hand_scored
    ranks = full_ranks(model, torch.tensor([[1.0, 0.5]]), data, targets, exclude_seen=True)
    assert ranks.tolist() == [1]  # item 3 was seen, so it no longer outranks the target


def cyclic_export(tmp_path, num_users=6, num_items=25, seed=0, paired_moments=False, split_mode="global_time"):
    """Random histories with six targets each in their second half; with ``paired_moments`` events come in
    pairs that share a timestamp."""
    rng = np.random.default_rng(seed)
    histories, splits = [], []
    for _ in range(num_users):
        length = int(rng.integers(15, 45))
        histories.append(rng.integers(1, num_items + 1, length).tolist())
        split = [0] * length
        for position in rng.choice(np.arange(length // 2, length), size=6, replace=False):
            split[position] = int(rng.integers(1, 3))
        splits.append(split)
    gaps = np.random.default_rng(seed + 1)  # ms between events, a second to a few days
    times = [1_700_000_000_000 + (10 ** gaps.uniform(3, 8.5, len(h))).astype(np.int64).cumsum() for h in histories]
    if paired_moments:
        times = [moments[np.arange(len(moments)) // 2 * 2] for moments in times]
    export = write_split_export(
        tmp_path / "export", histories, splits, times, num_items=num_items, split_mode=split_mode
    )
    return SplitData.load(export)


def prior_history(data, row, position):
    """The events a target is predicted from: those before its position, and under the global time split
    only those strictly earlier than its timestamp."""
    moments = data.timestamps[data.offsets[row] : data.offsets[row + 1]]
    end = np.searchsorted(moments, moments[position]) if data.metadata["split_mode"] == "global_time" else position
    return data.history(int(row))[:end], moments[:end]


def brute_force_ranks(model, data, split, max_len=None):
    """Each target encoded on its own: its prior history (with its times, for a model that reads them), cut
    to the last max_len events if given."""
    targets = select_targets(data, split)
    ranks = []
    for row, position, item in zip(targets.rows, targets.positions, targets.items, strict=True):
        items, moments = prior_history(data, row, position)
        history, times = torch.from_numpy(items.astype(np.int64))[None], torch.tensor(moments)[None]
        if max_len is not None:
            history, times = history[:, -max_len:], times[:, -max_len:]
        with torch.no_grad():
            hidden = model(history, times) if model.uses_timestamps else model(history)
            scores = model.scores(hidden[0, -1])[1:]
        target_score = scores[item - 1]
        ranks.append(int((scores > target_score).sum() + (scores == target_score).sum()))
    return np.array(ranks)


@pytest.mark.parametrize(
    ("name", "stream_chunk"),
    [
        ("sasrec", None),
        ("linrec", None),
        ("hstu", None),
        ("recmamba", 8192),
        ("recmamba", 7),
        ("gru4rec", 8192),
        ("gru4rec", 7),
        ("lrurec", 8192),
        ("lrurec", 7),
    ],
)
def test_evaluation_equals_scoring_each_target_alone(tmp_path, name, stream_chunk):
    data = cyclic_export(tmp_path)
    torch.manual_seed(0)
    model = build_model(name, data.num_items, d_model=16, max_len=12).eval()
    with use_backend("chunked"):
        result = evaluate(model, data, "test", stream_chunk=stream_chunk or 8192)
        expected = ranking_metrics(
            brute_force_ranks(model, data, "test", None if model.supports_streaming else 12), (5, 10, 20)
        )
    assert result.num_targets == len(select_targets(data, "test").items)
    for key, value in expected.items():
        assert result.overall[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("split_mode", ["global_time", "leave_one_out"])
@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_under_the_global_time_split_no_target_is_predicted_from_an_event_at_its_own_timestamp(
    tmp_path, name, split_mode
):
    """Events come in pairs at one moment: under the global time split the second of a pair is predicted
    from the events before the pair, as is the first; leave-one-out keeps the stable order (the first of the
    pair is in the second's history), as the published protocol does."""
    data = cyclic_export(tmp_path, paired_moments=True, split_mode=split_mode)
    torch.manual_seed(0)
    model = build_model(name, data.num_items, d_model=16, max_len=12).eval()
    result = evaluate(model, data, "test")
    expected = ranking_metrics(brute_force_ranks(model, data, "test", None if model.supports_streaming else 12), (10,))
    for key, value in expected.items():
        assert result.overall[key] == pytest.approx(value, abs=1e-9), key
    targets = select_targets(data, "test")
    shortened = targets.history_lengths < targets.positions
    assert shortened.any() if split_mode == "global_time" else not shortened.any()


def test_max_targets_takes_a_fixed_subset_and_sampled_metrics_are_labelled(tmp_path):
    data = cyclic_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, d_model=16)
    first = evaluate(model, data, "valid", max_targets=5, sampled_negatives=10)
    second = evaluate(model, data, "valid", max_targets=5, sampled_negatives=10)
    assert first.num_targets == 5 and first.overall == second.overall
    assert {"sampled_hr_10", "sampled_ndcg_10", "hr_10"} <= set(first.overall)
    assert first.overall["sampled_hr_10"] >= first.overall["hr_10"]


def test_a_validation_subset_takes_whole_users_and_a_test_subset_single_targets(tmp_path):
    """Validation pays per user for a stateful model, so its subset is users; the test's is targets."""
    data = cyclic_export(tmp_path, num_users=40)
    per_user = np.bincount(select_targets(data, "valid").rows, minlength=data.num_users)
    chosen = select_targets(data, "valid", max_targets=12)
    counts = np.bincount(chosen.rows, minlength=data.num_users)
    assert len(chosen.items) == 12 and chosen.rows.tolist() == sorted(chosen.rows.tolist())
    assert np.count_nonzero((counts > 0) & (counts < per_user)) <= 1  # at most the last user is cut short
    test = select_targets(data, "test", max_targets=12)
    assert len(test.items) == 12
    assert np.count_nonzero(np.bincount(test.rows)) > np.count_nonzero(counts)  # spread over more users


def test_per_target_ranks_recompute_every_metric_and_survive_parquet(tmp_path):
    data = cyclic_export(tmp_path)
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, d_model=16)
    result = evaluate(model, data, "test")
    ranks = result.ranks
    assert len(ranks.rank) == result.num_targets
    assert ranking_metrics(ranks.rank, (5, 10, 20)) == result.overall
    targets = select_targets(data, "test")
    assert np.array_equal(ranks.user_id, data.user_ids[targets.rows]) and np.array_equal(ranks.item, targets.items)
    events = data.offsets[targets.rows] + targets.positions
    assert np.array_equal(ranks.timestamp, data.timestamps[events])
    assert set(ranks.bucket()) == set(result.by_bucket)
    again = TargetRanks.read(ranks.write(tmp_path / "ranks.parquet"))
    for column in TargetRanks.COLUMNS:
        assert np.array_equal(getattr(again, column), getattr(ranks, column)), column
    assert len(np.unique(ranks.keys)) == len(ranks.keys)  # a key names one target


def test_long_loops_log_where_they_stand(caplog):
    progress = ProgressLog("epoch 1/3", total=400, unit="events", every_seconds=0.0)
    with caplog.at_level(logging.INFO, logger="recmodels.training.progress"):
        progress.advance(100)
    assert "epoch 1/3: 100/400 events (25%)" in caplog.text and "events/s" in caplog.text and "s to go" in caplog.text
    quiet = ProgressLog("test: ranking", total=10, unit="targets")  # a loop shorter than 30 s says nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recmodels.training.progress"):
        quiet.advance(10)
    assert caplog.text == ""
