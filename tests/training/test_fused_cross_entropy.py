"""The fused full-softmax loss is the plain cross-entropy over the model's scores, in value and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recmodels import build_model
from recmodels.training.config import TrainConfig
from recmodels.training.fused_cross_entropy import fused_linear_cross_entropy
from recmodels.training.next_item_loss import NextItemLoss


def _plain_and_fused(model, hidden, targets, rows_per_block):
    """(loss, grad of hidden, grad of the item table) of the plain loss and of the fused one."""
    results = []
    for fused in (False, True):
        model.zero_grad()
        hidden.grad = None
        if fused:
            loss = fused_linear_cross_entropy(hidden, model.item_vectors(), targets, rows_per_block)
        else:
            loss = F.cross_entropy(model.scores(hidden), targets)
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), model.item_embedding.weight.grad.clone()))
    return results


@pytest.mark.parametrize("rows_per_block", [1, 7, 64, 1000])  # one row, ragged blocks, one block
@pytest.mark.parametrize("model_name", ["sasrec", "hstu"])  # hstu: item vectors normalised in the graph
def test_fused_loss_equals_plain_cross_entropy(model_name, rows_per_block):
    torch.manual_seed(0)
    overrides = {"l2_normalize": True, "temperature": 0.1} if model_name == "hstu" else {}
    model = build_model(model_name, 50, d_model=8, max_len=8, **overrides)
    hidden = torch.randn(45, 8, requires_grad=True)
    targets = torch.randint(1, 51, (45,))
    plain, fused = _plain_and_fused(model, hidden, targets, rows_per_block)
    for expected, actual in zip(plain, fused, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    assert fused[2][0].abs().sum() == 0  # padding is never a class: its row gets no gradient


def test_ce_objective_skips_positions_without_target():
    """The trainer's ce objective: positions whose target is 0 (padding) neither count nor get gradient."""
    torch.manual_seed(0)
    model = build_model("sasrec", 50, d_model=8, max_len=8)
    hidden = torch.randn(4, 25, 8, requires_grad=True)
    targets = torch.randint(0, 51, (4, 25))
    loss = NextItemLoss(TrainConfig(loss="ce"), np.ones(51), torch.Generator())(model, hidden, targets)
    loss.backward()
    present = targets != 0
    expected = F.cross_entropy(model.scores(hidden[present]), targets[present])
    torch.testing.assert_close(loss, expected.detach())
    assert hidden.grad[~present].abs().sum() == 0


def test_fused_loss_scales_with_the_upstream_gradient():
    """Backward multiplies the gradients formed in forward by the incoming gradient (a weighted loss)."""
    torch.manual_seed(0)
    hidden = torch.randn(10, 4, requires_grad=True)
    table = torch.randn(6, 4, requires_grad=True)
    targets = torch.randint(1, 6, (10,))
    (fused_linear_cross_entropy(hidden, table, targets, 3) * 2.5).backward()
    fused = hidden.grad.clone(), table.grad.clone()
    hidden.grad = table.grad = None
    logits = hidden @ table[1:].T
    (F.cross_entropy(logits, targets - 1) * 2.5).backward()
    torch.testing.assert_close(fused[0], hidden.grad)
    torch.testing.assert_close(fused[1], table.grad)


def test_fused_loss_refuses_no_rows():
    with pytest.raises(ValueError, match="at least one row"):
        fused_linear_cross_entropy(torch.zeros(0, 4), torch.zeros(6, 4), torch.zeros(0, dtype=torch.long))
