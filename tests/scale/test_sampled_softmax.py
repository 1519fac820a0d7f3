"""Sampled softmax with log-Q against a brute-force reference, and sparse item updates that touch only the
rows a step used."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from recmodels import build_model
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.ops import use_backend
from recmodels.training.config import TrainConfig
from recmodels.training.loop import build_optimizer, fit
from recmodels.training.losses import SampledSoftmax, proposal_distribution, sampled_softmax_loss


def brute_force_loss(hidden, table, targets, negatives, log_q):
    """The same objective written out position by position over the full score matrix, in float64."""
    scores = hidden.double() @ table.double().T  # (n, num_items + 1)
    total = 0.0
    for i, target in enumerate(targets.tolist()):
        positive = scores[i, target] - log_q[target]
        terms = [positive] + [scores[i, j] - log_q[j] for j in negatives.tolist() if j != target]
        total = total - (positive - torch.logsumexp(torch.stack(terms), 0))
    return total / len(targets)


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "in_batch"])
def test_gradient_matches_brute_force_reference(sampler):
    torch.manual_seed(0)
    num_items, d = 30, 8
    counts = np.random.default_rng(0).integers(0, 50, num_items + 1)
    loss = SampledSoftmax(sampler, 12, counts, torch.Generator().manual_seed(1))
    targets = torch.tensor([3, 7, 7, 20, 1, 30])
    negatives = loss.negatives(targets)
    if sampler != "in_batch":  # an accidental hit and a repeated negative, both on purpose
        negatives = torch.cat([negatives, torch.tensor([7, 5, 5])])
    embedding = torch.nn.Embedding(num_items + 1, d, sparse=True)
    hidden = torch.randn(len(targets), d, requires_grad=True)
    table = embedding.weight.detach().clone().requires_grad_(True)

    ours = sampled_softmax_loss(embedding, hidden, targets, negatives, loss.log_q)
    ours.backward()
    hidden_grad, table_grad = hidden.grad.clone(), embedding.weight.grad.to_dense()
    hidden.grad = None
    reference = brute_force_loss(hidden, table, targets, negatives, loss.log_q.double())
    reference.backward()

    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(hidden_grad, hidden.grad.float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(table_grad, table.grad.float(), rtol=1e-4, atol=1e-6)
    touched = set(targets.tolist()) | set(negatives.tolist())
    assert set(embedding.weight.grad.coalesce().indices()[0].tolist()) <= touched


def test_log_q_uses_the_sampling_distribution():
    counts = np.array([0, 9, 0, 1])
    assert proposal_distribution("popularity", counts).tolist() == pytest.approx([0.0, 10 / 13, 1 / 13, 2 / 13])
    assert proposal_distribution("uniform", counts).tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])
    loss = SampledSoftmax("popularity", 4, counts, torch.Generator().manual_seed(0))
    assert loss.log_q[1].item() == pytest.approx(math.log(10 / 13))


def test_sparse_updates_leave_untouched_item_rows_alone():
    torch.manual_seed(0)
    model = build_model("gru4rec", 500, d_model=8, max_len=8, dropout=0.0)
    config = TrainConfig(loss="sampled_softmax", num_negatives=4, sparse_item_updates=True, lr=0.1)
    optimizer = build_optimizer(model, config)
    before = model.item_embedding.weight.detach().clone()
    items = torch.tensor([[1, 2, 3, 4]])
    loss = SampledSoftmax("uniform", 4, np.ones(501), torch.Generator().manual_seed(0))
    hidden = model(items)[0, :-1]
    loss(model.item_embedding, hidden, items[0, 1:]).backward()
    touched = set(model.item_embedding.weight.grad.coalesce().indices()[0].tolist())
    optimizer.step()
    changed = set(torch.nonzero((model.item_embedding.weight != before).any(1))[:, 0].tolist())
    assert changed and changed <= touched and len(touched) <= 4 + 4


def test_sparse_updates_need_a_sampled_loss():
    with pytest.raises(ValidationError, match="sparse_item_updates needs loss sampled_softmax or bce"):
        TrainConfig(loss="ce", sparse_item_updates=True)


@pytest.mark.parametrize("negatives", ["uniform", "in_batch"])
def test_training_with_sparse_updates_learns_and_resumes(tmp_path, negatives):
    histories = [[(user + t) % 12 + 1 for t in range(40)] for user in range(8)]
    splits = [[0] * 34 + [1] * 3 + [2] * 3 for _ in histories]
    data = SplitData.load(write_split_export(tmp_path / "export", histories, splits, num_items=12))
    config = TrainConfig(
        epochs=6, batch_size=8, lr=2e-2, loss="sampled_softmax", negatives=negatives, num_negatives=6,
        sparse_item_updates=True, patience=0, seed=0,
    )  # fmt: skip
    with use_backend("chunked"):
        torch.manual_seed(0)
        model = build_model("gru4rec", data.num_items, d_model=16, max_len=16, dropout=0.0)
        result = fit(model, data, config, checkpoint_dir=tmp_path / "checkpoint")
        resumed = fit(model, data, config, checkpoint_dir=tmp_path / "checkpoint")  # finds the finished run
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.test.overall["hr_10"] > 0.5
    assert resumed.test.overall == result.test.overall
