"""LinRec's causal linear attention against its quadratic definition."""

from __future__ import annotations

import pytest
import torch

from recmodels.models.linrec import causal_linear_attention


def quadratic_causal_linear_attention(q, k, v):
    """sum_{s<=t} (q_t . k_s) v_s through the explicit (L, L) lower-triangular score matrix."""
    return (q @ k.transpose(-1, -2)).tril() @ v


@pytest.mark.parametrize("length,chunk_size", [(1, 4), (7, 4), (8, 4), (13, 64), (33, 8)])
def test_chunked_form_matches_the_quadratic_one_with_gradients(length: int, chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, 5, generator=generator, dtype=torch.float64) for _ in range(3))
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    expected_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    chunked = causal_linear_attention(*inputs, chunk_size)
    expected = quadratic_causal_linear_attention(*expected_inputs)
    torch.testing.assert_close(chunked, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (chunked * weights).sum().backward()
    (expected * weights).sum().backward()
    for got, want in zip(inputs, expected_inputs, strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)
