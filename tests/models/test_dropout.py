"""The hashed dropout drops like nn.Dropout: the same rate and scale, the same mask in backward, seeded."""

from __future__ import annotations

import pytest
import torch

from recmodels.models.dropout import Dropout, dropout


def test_drops_at_rate_p_and_scales_the_rest():
    torch.manual_seed(0)
    values = torch.randn(200_000) + 3.0  # never 0, so a 0 in the output is a dropped element
    out = dropout(values, 0.2, training=True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.005
    torch.testing.assert_close(out[kept], values[kept] / 0.8)


def test_backward_reuses_the_forward_mask():
    torch.manual_seed(0)
    values = (torch.randn(3, 50, 64) + 3.0).requires_grad_()
    out = dropout(values, 0.3, training=True)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    expected = torch.where(out != 0, weights / 0.7, torch.zeros_like(weights))
    torch.testing.assert_close(values.grad, expected)


def test_masks_follow_the_global_seed_and_differ_between_calls():
    values = torch.ones(10_000)
    torch.manual_seed(7)
    first, second = dropout(values, 0.5, True), dropout(values, 0.5, True)
    torch.manual_seed(7)
    assert torch.equal(dropout(values, 0.5, True), first)
    assert not torch.equal(first, second)


def test_eval_mode_and_zero_rate_are_the_identity():
    layer = Dropout(0.4).eval()
    values = torch.randn(5, 7)
    assert layer(values) is values
    assert dropout(values, 0.0, training=True) is values


def test_other_dtypes_fall_back_to_torch_dropout():
    torch.manual_seed(0)
    values = torch.randn(10_000, dtype=torch.float64) + 3.0
    out = dropout(values, 0.25, training=True)
    assert out.dtype == torch.float64
    assert abs((out != 0).double().mean().item() - 0.75) < 0.02


def test_refuses_a_rate_outside_zero_to_one():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Dropout(1.5)
