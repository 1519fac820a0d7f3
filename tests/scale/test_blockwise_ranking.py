"""Blockwise ranking and top-K equal the full score matrix, ties, NaN scores and seen-item filtering included,
on both paths: the torch one (CUDA, other dtypes) and the Numba kernels (CPU float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.evaluation.evaluate import evaluate
from recmodels.evaluation.topk import SeenItems, blockwise_ranks, blockwise_topk

BACKENDS = ["torch", "numba"]


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


@pytest.fixture(params=[3, 1024], ids=["row_chunks_of_3", "one_row_chunk"])
def row_chunk(request, monkeypatch):
    """The Numba path scores rows a chunk at a time; chunks of 3 rows split the 7 rows of ``tied_scores``."""
    monkeypatch.setattr("recmodels.evaluation.topk.ROW_CHUNK", request.param)
    return request.param


@pytest.mark.parametrize("block_items", [1, 5, 16, 53, 1000])
@pytest.mark.parametrize("with_seen", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_blockwise_topk_equals_topk_over_full_scores(block_items, with_seen, backend, row_chunk):
    hidden, weight = tied_scores()
    seen = seen_per_row(len(hidden), 53) if with_seen else None
    k = 10
    seen_items = SeenItems(seen, hidden.device) if seen else None
    values, items = blockwise_topk(hidden, weight, k, seen_items, block_items, backend)
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
@pytest.mark.parametrize("backend", BACKENDS)
def test_blockwise_ranks_equal_pessimistic_ranks_over_full_scores(block_items, with_seen, backend, row_chunk):
    hidden, weight = tied_scores()
    targets = torch.tensor([1, 2, 53, 17, 17, 30, 8])
    seen = seen_per_row(len(hidden), 53) if with_seen else None
    if seen:
        seen = [np.setdiff1d(items, [target]) for items, target in zip(seen, targets.tolist(), strict=True)]
    seen_items = SeenItems(seen, hidden.device) if seen else None
    ranks = blockwise_ranks(hidden, weight, targets, seen_items, block_items, backend)
    scores = full_scores(hidden, weight, seen)
    target_scores = scores.gather(1, targets[:, None] - 1)
    expected = (scores > target_scores).sum(1) + (scores == target_scores).sum(1)  # the latter counts itself
    assert torch.equal(ranks, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nan_score_is_never_a_hit(backend):
    hidden, weight = tied_scores(rows=2)
    weight[5] = float("nan")
    ranks = blockwise_ranks(hidden, weight, torch.tensor([5, 6]), block_items=4, backend=backend)
    assert ranks[0] == 53  # the worst possible


@pytest.mark.parametrize("block_items", [4, 53])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_rivals_are_never_above_a_target_and_a_nan_or_minus_inf_target_ranks_last(block_items, backend):
    hidden, weight = tied_scores(rows=6)
    weight[[3, 20, 41]] = float("nan")  # NaN scores for every row
    hidden[4, 0] = float("nan")  # row 4: every score NaN, its target's too
    weight[7] = torch.tensor([-1e38, 0.0, 0.0])
    hidden[5] = torch.tensor([1e38, 0.0, 0.0])  # row 5: its target (7) scores -inf, others tie or beat it
    targets = torch.tensor([1, 20, 12, 53, 9, 7])
    seen = [np.array([2, 3, 12]), np.array([]), np.array([20, 30]), np.array([41]), np.array([]), np.array([8])]
    ranks = blockwise_ranks(hidden, weight, targets, SeenItems(seen, hidden.device), block_items, backend)
    scores = full_scores(hidden, weight, seen).nan_to_num(nan=float("-inf"))  # NaN rivals: never above
    target_scores = (hidden * weight[targets]).sum(1, keepdim=True)
    expected = (scores >= target_scores).sum(1)  # the target counts itself: that is the 1 of rank = 1 + #others
    assert torch.equal(ranks[[0, 2, 3]], expected[[0, 2, 3]])
    assert ranks[1] == 53 and ranks[4] == 53 and ranks[5] == 53  # NaN targets (1, 4) and a -inf one: the worst


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_scores_count_as_minus_inf_in_top_k(backend):
    hidden, weight = tied_scores(rows=3, num_items=12)
    weight[[2, 5]] = float("nan")
    values, items = blockwise_topk(hidden, weight, 12, block_items=5, backend=backend)
    scores = full_scores(hidden, weight).nan_to_num(nan=float("-inf"))
    expected = scores.argsort(dim=1, descending=True, stable=True)
    assert torch.equal(items, expected + 1)
    assert torch.equal(values, scores.gather(1, expected))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_target_listed_among_its_seen_items_is_still_ranked_by_its_score(backend):
    hidden, weight = tied_scores(rows=1)
    targets = torch.tensor([17])
    listed = blockwise_ranks(hidden, weight, targets, SeenItems([np.array([17, 4])], hidden.device), 8, backend)
    unlisted = blockwise_ranks(hidden, weight, targets, SeenItems([np.array([4])], hidden.device), 8, backend)
    assert torch.equal(listed, unlisted)


def test_the_numba_kernels_and_the_torch_path_agree_on_random_scores(monkeypatch):
    """Float scores with NaNs and seen items over several row chunks and item blocks: the same ranks and top-K."""
    monkeypatch.setattr("recmodels.evaluation.topk.ROW_CHUNK", 48)
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(5001, 16, generator=generator)
    weight[torch.randint(1, 5001, (20,), generator=generator)] = float("nan")
    hidden = torch.randn(100, 16, generator=generator)
    targets = torch.randint(1, 5001, (100,), generator=generator)
    seen = SeenItems(seen_per_row(100, 5000, seed=4), hidden.device)
    for block_items in (0, 777):
        torch_ranks = blockwise_ranks(hidden, weight, targets, seen, block_items, backend="torch")
        kernel_ranks = blockwise_ranks(hidden, weight, targets, seen, block_items, backend="numba")
        assert torch.equal(kernel_ranks, torch_ranks)
        torch_top = blockwise_topk(hidden, weight, 20, seen, block_items, backend="torch")
        kernel_top = blockwise_topk(hidden, weight, 20, seen, block_items, backend="numba")
        assert torch.equal(kernel_top[1], torch_top[1]) and torch.equal(kernel_top[0], torch_top[0])


def test_the_numba_backend_refuses_what_it_cannot_serve():
    hidden, weight = tied_scores()
    with pytest.raises(ValueError, match="float32 or bfloat16 weights on the CPU"):
        blockwise_ranks(hidden.double(), weight.double(), torch.tensor([1] * 7), backend="numba")


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_evaluate_metrics_do_not_depend_on_the_block_size(tmp_path, monkeypatch, exclude_seen):
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 301, int(rng.integers(10, 40))).tolist() for _ in range(12)]
    splits = [[0] * (len(h) - 4) + [1, 1, 2, 2] for h in histories]
    data = SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=300))
    torch.manual_seed(0)
    model = build_model("gru4rec", data.num_items, d_model=16)
    whole = evaluate(model, data, "test", exclude_seen=exclude_seen)
    monkeypatch.setattr("recmodels.evaluation.topk.block_items_for", lambda rows: 7)
    blocks = evaluate(model, data, "test", exclude_seen=exclude_seen)
    assert blocks.overall == whole.overall and blocks.by_bucket == whole.by_bucket
