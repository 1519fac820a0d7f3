import pytest
import torch

from recmodels.ops import available_backends, use_backend
from recmodels.ops.dispatch import load_backend


def test_reference_backend_is_always_available():
    assert "reference" in available_backends()


def test_forced_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown scan backend"), use_backend("nope"):
        pass


def test_reference_scan_with_zero_delta_keeps_state_at_zero():
    u = torch.randn(2, 3, 5)
    A = -torch.rand(3, 4)
    B, C = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    out, state = load_backend("reference").selective_scan_fn(u, torch.zeros_like(u), A, B, C, return_last_state=True)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(state, torch.zeros_like(state))
