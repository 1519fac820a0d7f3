"""Blockwise ranking and top-K equal the full score matrix, ties and seen-item filtering included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data import SplitData, write_split_export
from recmodels.evaluate import evaluate
from recmodels.topk import SeenItems, blockwise_ranks, blockwise_topk


def tied_scores(rows=7, num_items=53, d=3, seed=0):
    """Small integer embeddings and hidden states: every dot product is exact, and ties are everywhere."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randint(-2, 3, (num_items + 1, d), generator=generator).float()
    hidden = torch.randint(-2, 3, (rows, d), generator=generator).float()
    return hidden, weight


def seen_per_row(rows, num_items, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, num_items + 1), size=int(rng.integers(0, 9)), replace=False) for _ in range(rows)]


def full_scores(hidden, weight, seen=None):
    scores = hidden @ weight[1:].T  # items 1..num_items
    for row, items in enumerate(seen or []):
        scores[row, torch.from_numpy(np.asarray(items, np.int64)) - 1] = float("-inf")
    return scores


@pytest.mark.parametrize("block_items", [1, 5, 16, 53, 1000])
@pytest.mark.parametrize("with_seen", [False, True])
def test_blockwise_topk_equals_topk_over_full_scores(block_items, with_seen):
    hidden, weight = tied_scores()
    seen = seen_per_row(len(hidden), 53) if with_seen else None
    k = 10
    values, items = blockwise_topk(hidden, weight, k, SeenItems(seen, hidden.device) if seen else None, block_items)
    scores = full_scores(hidden, weight, seen)
    expected_values = scores.topk(k, dim=1).values
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]  # ties: ascending item id
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0)
    assert torch.equal(items, order + 1)
    if seen:
        for row, row_seen in enumerate(seen):
            assert not set(items[row].tolist()) & set(row_seen.tolist())


@pytest.mark.parametrize("block_items", [1, 4, 16, 53])
@pytest.mark.parametrize("with_seen", [False, True])
def test_blockwise_ranks_equal_pessimistic_ranks_over_full_scores(block_items, with_seen):
    hidden, weight = tied_scores()
    targets = torch.tensor([1, 2, 53, 17, 17, 30, 8])
    seen = seen_per_row(len(hidden), 53) if with_seen else None
    if seen:
        seen = [np.setdiff1d(items, [target]) for items, target in zip(seen, targets.tolist(), strict=True)]
    ranks = blockwise_ranks(hidden, weight, targets, SeenItems(seen, hidden.device) if seen else None, block_items)
    scores = full_scores(hidden, weight, seen)
    target_scores = scores.gather(1, targets[:, None] - 1)
    expected = (scores > target_scores).sum(1) + (scores == target_scores).sum(1)  # the latter counts itself
    assert torch.equal(ranks, expected)


def test_a_nan_score_is_never_a_hit():
    hidden, weight = tied_scores(rows=2)
    weight[5] = float("nan")
    ranks = blockwise_ranks(hidden, weight, torch.tensor([5, 6]), block_items=4)
    assert ranks[0] == 53  # the worst possible


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_evaluate_metrics_do_not_depend_on_the_block_size(tmp_path, monkeypatch, exclude_seen):
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 301, int(rng.integers(10, 40))).tolist() for _ in range(12)]
    splits = [[0] * (len(h) - 4) + [1, 1, 2, 2] for h in histories]
    data = SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=300))
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, d_model=16)
    whole = evaluate(model, data, "test", exclude_seen=exclude_seen)
    monkeypatch.setattr("recmodels.topk.block_items_for", lambda rows: 7)
    blocks = evaluate(model, data, "test", exclude_seen=exclude_seen)
    assert blocks.overall == whole.overall and blocks.by_bucket == whole.by_bucket
