"""RecMamba's ablations (``selective: false``, ``d_conv: 0``) keep every contract of the full model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recmodels import build_model
from recmodels.ops import use_backend
from recmodels.serving.engines import engine_for

ABLATIONS = {
    "time-invariant": {"selective": False},
    "no-conv": {"d_conv": 0},
    "both": {"selective": False, "d_conv": 0},
}


def ablated(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("recmamba", 30, d_model=16, max_len=40, **ABLATIONS[name]).eval()


def items_with_padding() -> torch.Tensor:
    items = torch.randint(1, 31, (2, 50), generator=torch.Generator().manual_seed(1))
    items[1, :13] = 0
    return items


def test_without_selection_nothing_projects_the_input_to_delta_b_or_c():
    names = {name for name, _ in ablated("time-invariant").named_parameters()}
    assert not any("x_proj" in name or "dt_proj" in name for name in names)
    assert {"blocks.0.mixer.B", "blocks.0.mixer.C", "blocks.0.mixer.dt_bias"} <= names
    assert not any("conv1d" in name for name, _ in ablated("no-conv").named_parameters())


@pytest.mark.parametrize("name", sorted(ABLATIONS))
@pytest.mark.parametrize("backend", ["chunked", "cpu_fused"])
def test_causal_padding_invariant_and_streamable(name, backend):
    model = ablated(name)
    items = items_with_padding()
    mask = items != 0
    changed = items.clone()
    changed[:, 30] = changed[:, 30] % 30 + 1
    with torch.no_grad(), use_backend(backend):
        whole = model(items)
        torch.testing.assert_close(model(changed)[:, :30], whole[:, :30], rtol=0, atol=1e-6)
        alone = model(items[1:, 13:])
        torch.testing.assert_close(alone[0], whole[1, 13:], rtol=1e-5, atol=1e-5)
        state, parts = model.init_state(2), []
        for start, end in ((0, 7), (7, 8), (8, 31), (31, 45)):
            hidden, state = model.forward_with_state(items[:, start:end], state)
            parts.append(hidden)
        for t in range(45, 50):
            hidden, state = model.step(items[:, t], state)
            parts.append(hidden[:, None])
    torch.testing.assert_close(torch.cat(parts, dim=1)[mask], whole[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_served_state_equals_whole_history_encoding(name):
    model = ablated(name)
    engine = engine_for(model)
    rows = [np.arange(1, n + 1) % 30 + 1 for n in (1, 17, 45)]
    whole_states, whole_hidden = engine.encode(rows)
    states, hidden = engine.initial(len(rows))
    for start in range(0, 45, 4):
        engine.advance(
            np.stack([np.pad(r[start : start + 4], (4 - len(r[start : start + 4]), 0)) for r in rows]), states, hidden
        )
    np.testing.assert_allclose(states, whole_states, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hidden, whole_hidden, rtol=1e-4, atol=1e-5)


def test_ablations_train_from_the_run_config():
    from recmodels.training.config import run_config_class

    config = run_config_class("recmamba").model_validate({"model": {"selective": False, "d_conv": 0}})
    assert config.model.selective is False and config.model.d_conv == 0
    with pytest.raises(ValueError, match="d_conv"):
        build_model("recmamba", 30, d_conv=-1)
