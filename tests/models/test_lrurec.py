"""LRURec: its parallel scan is the recurrence it serves by, step by step; pads leave the state alone; it
starts as the reference does, trains, and runs in float32 under autocast."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from recmodels import build_model
from recmodels.models.lrurec import linear_recurrence
from recmodels.ops.lru_scan import linear_recurrence_cpu
from recmodels.training.config import run_config_class

NUM_ITEMS = 30


def small_lrurec(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lrurec", NUM_ITEMS, **({"d_model": 16, "max_len": 40} | overrides)).eval()


def random_items(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=torch.Generator().manual_seed(seed))


def recurrence_loop(u, lam, real, start):
    """The float64 oracle: h_t = lam * h_{t-1} + u_t at real events, h unchanged at pads."""
    h, out = start, []
    for t in range(u.shape[1]):
        h = torch.where(real[:, t, None], lam * h + u[:, t], h)
        out.append(h)
    return torch.stack(out, dim=1), h


def complex_normal(*shape, generator) -> torch.Tensor:
    parts = torch.randn(*shape, 2, generator=generator, dtype=torch.float64)
    return torch.view_as_complex(parts)


def test_the_parallel_forward_equals_the_one_step_recurrence_in_float64():
    model = small_lrurec().double()
    items = random_items(3, 70)  # more than two chunks of the scan
    items[0, :20] = 0
    items[2, :69] = 0  # a single event
    with torch.no_grad():
        whole = model(items)
        state = model.init_state(3)
        for t in range(items.shape[1]):
            hidden, state = model.step(items[:, t], state)
            real = items[:, t] != 0
            torch.testing.assert_close(hidden[real], whole[real, t], rtol=1e-10, atol=1e-12)
        _, parallel_state = model.forward_with_state(items, model.init_state(3))
    torch.testing.assert_close(state, parallel_state, rtol=1e-10, atol=1e-12)


def test_the_float32_scan_stays_within_float_rounding_over_thousands_of_events():
    generator = torch.Generator().manual_seed(0)
    batch, length, width = 2, 3000, 8
    real = torch.ones(batch, length, dtype=torch.bool)
    real[1, :1234] = False
    u = complex_normal(batch, length, width, generator=generator) * real[..., None]
    start = complex_normal(batch, width, generator=generator)
    modulus = torch.linspace(0.9, 0.9999, width, dtype=torch.float64)  # memories up to ~10,000 events
    log_lambda = torch.complex(modulus.log(), torch.linspace(0.01, 3.1, width, dtype=torch.float64))
    log_lambda = log_lambda.to(torch.complex64)  # the oracle gets the same rounded lambda
    expected, expected_last = recurrence_loop(u, log_lambda.to(torch.complex128).exp(), real, start)
    h, last = linear_recurrence(u.to(torch.complex64), log_lambda, real, start.to(torch.complex64))
    scale = expected.abs().max()
    assert (h.to(torch.complex128) - expected).abs().max() / scale < 2e-5  # measured 4e-6; a float32 loop: 7e-5
    assert (last.to(torch.complex128) - expected_last).abs().max() / scale < 2e-5


def test_the_scan_has_the_gradients_of_its_formula():
    generator = torch.Generator().manual_seed(0)
    real = torch.tensor([[False, False, True, True, True, True, True], [True] * 7])
    u = (complex_normal(2, 7, 3, generator=generator) * real[..., None]).requires_grad_()
    log_lambda = torch.complex(-torch.rand(3, dtype=torch.float64) - 0.05, torch.rand(3, dtype=torch.float64) * 3)
    log_lambda.requires_grad_()
    start = complex_normal(2, 3, generator=generator).requires_grad_()
    # Chunks of 3 over 7 steps: padding added on the left, a state carried across two chunk boundaries.
    assert torch.autograd.gradcheck(lambda *a: linear_recurrence(*a[:2], real, a[2], chunk=3), (u, log_lambda, start))


def halves(z: torch.Tensor) -> torch.Tensor:
    """A complex (..., H) tensor as the CPU kernel's real [Re | Im] halves (..., 2H)."""
    return torch.cat([z.real, z.imag], dim=-1)


def test_the_cpu_kernel_is_the_recurrence_with_pads_and_a_carried_state():
    generator = torch.Generator().manual_seed(0)
    real = torch.ones(3, 50, dtype=torch.bool)
    real[0, :17] = False
    real[2, :49] = False  # a single event
    u = complex_normal(3, 50, 4, generator=generator) * real[..., None]
    start = complex_normal(3, 4, generator=generator)
    lam = torch.complex(torch.tensor([0.5, 0.9, 0.99, 0.999]), torch.tensor([0.1, -0.3, 0.02, 0.0])).to(
        torch.complex128
    )
    expected, expected_last = recurrence_loop(u, lam, real, start)
    h, last = linear_recurrence_cpu(halves(u), lam.real, lam.imag, real, halves(start))
    torch.testing.assert_close(h, halves(expected), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, halves(expected_last), rtol=1e-12, atol=1e-12)
    h, _ = linear_recurrence_cpu(halves(u), lam.real, lam.imag, real)  # no state: zeros
    torch.testing.assert_close(h, halves(recurrence_loop(u, lam, real, torch.zeros_like(start))[0]))


def test_the_cpu_kernel_has_the_gradients_of_its_formula():
    generator = torch.Generator().manual_seed(0)
    real = torch.tensor([[False, False, True, True, True, True, True], [True] * 7])
    u = (torch.randn(2, 7, 6, generator=generator, dtype=torch.float64) * real[..., None]).requires_grad_()
    lam_r = torch.tensor([0.5, 0.9, -0.3], dtype=torch.float64, requires_grad=True)
    lam_i = torch.tensor([0.4, -0.2, 0.8], dtype=torch.float64, requires_grad=True)
    start = torch.randn(2, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: linear_recurrence_cpu(a[0], a[1], a[2], real, a[3]), (u, lam_r, lam_i, start)
    )


def test_a_pad_leaves_a_carried_state_as_it_was():
    model = small_lrurec()
    with torch.no_grad():
        _, state = model.forward_with_state(random_items(2, 9), model.init_state(2))
        items = random_items(2, 5, seed=2)
        items[1] = 0
        _, after = model.forward_with_state(items, state)
        _, stepped = model.step(torch.tensor([3, 0]), state)
    assert torch.equal(after[:, 1], state[:, 1]) and torch.equal(stepped[:, 1], state[:, 1])
    assert not torch.allclose(after[:, 0], state[:, 0])


def test_it_starts_as_the_reference_does():
    torch.manual_seed(0)
    model = build_model("lrurec", 500)
    assert [block.recurrence.d_state for block in model.blocks] == [128, 128]  # 2 * d_model, complex
    for block in model.blocks:
        unit = block.recurrence
        modulus = unit.log_lambda().exp().abs()
        assert modulus.min() >= 0.8 - 1e-6 and modulus.max() <= 0.99 + 1e-6
        phase = unit.params_log[1].exp()
        assert phase.min() > 0.0 and phase.max() < 2 * math.pi
        torch.testing.assert_close(unit.params_log[2].detach().exp(), torch.sqrt(1 - modulus.detach() ** 2))
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.float32, name  # real parameters only: AdamW, clipping, DDP as usual
        if "norm" not in name and "params_log" not in name:
            assert parameter.abs().max() <= 0.04, name  # N(0, 0.02) cut at two standard deviations
    assert not model.item_embedding.weight[0].any()


def test_the_run_config_builds_it_and_its_state_dict_reloads():
    config = run_config_class("lrurec").model_validate({"model": {"d_model": 16, "expand": 1, "r_min": 0.5}})
    model = build_model("lrurec", NUM_ITEMS, **config.model.model_dump()).eval()
    assert model.blocks[0].recurrence.d_state == 16 and model.config.r_min == 0.5
    reloaded = build_model("lrurec", NUM_ITEMS, **config.model.model_dump()).eval()
    reloaded.load_state_dict(model.state_dict())
    items = random_items(2, 9)
    with torch.no_grad():
        assert torch.equal(reloaded(items), model(items))
    with pytest.raises(ValueError, match="r_min"):
        build_model("lrurec", NUM_ITEMS, r_min=0.99, r_max=0.9)


def test_a_few_adamw_steps_lower_the_next_item_loss_with_a_gradient_for_every_weight():
    model = small_lrurec(dropout=0.0).train()
    items = random_items(4, 25)
    inputs, targets = items[:, :-1].clone(), items[:, 1:].clone()
    inputs[0, :6], targets[0, :6] = 0, 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    losses = []
    for _ in range(20):
        logits = model.scores(model(inputs))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and parameter.grad.isfinite().all(), name
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_under_bfloat16_autocast_the_recurrence_still_runs_in_float32():
    model = small_lrurec()
    items = random_items(2, 50)
    with torch.no_grad():
        plain = model(items)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(items)
    assert mixed.isfinite().all()
    torch.testing.assert_close(mixed.float(), plain, rtol=0.1, atol=0.1)  # only the feed-forward in bfloat16


def test_without_numba_it_runs_on_the_chunked_scan():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from recmodels import build_model\n"
        "from recmodels.models import lrurec\n"
        "assert lrurec.linear_recurrence_cpu is None\n"
        "model = build_model('lrurec', 30, d_model=16, max_len=40)\n"
        "model(torch.randint(1, 31, (2, 50))).sum().backward()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
