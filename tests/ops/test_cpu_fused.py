"""The compiled CPU backend held to the float64 reference: outputs, every input gradient, padding."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.ops import reference
from recmodels.ops.dispatch import load_backend

cpu_fused = load_backend("cpu_fused")
pytestmark = pytest.mark.skipif(cpu_fused is None, reason="numba is not importable here")

SCAN_INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scan_inputs(batch, channels, d_state, length, groups=0, *, seed=0):
    """Random inputs in float64 with mamba's typical ranges (A < 0, delta around softplus's knee)."""
    g = torch.Generator().manual_seed(seed)
    bc_shape = (batch, groups, d_state, length) if groups else (batch, d_state, length)
    return {
        "u": torch.randn(batch, channels, length, generator=g, dtype=torch.float64),
        "delta": 0.5 * torch.randn(batch, channels, length, generator=g, dtype=torch.float64) - 1.0,
        "A": -torch.rand(channels, d_state, generator=g, dtype=torch.float64) * 2 - 0.05,
        "B": torch.randn(bc_shape, generator=g, dtype=torch.float64),
        "C": torch.randn(bc_shape, generator=g, dtype=torch.float64),
        "D": torch.randn(channels, generator=g, dtype=torch.float64),
        "z": torch.randn(batch, channels, length, generator=g, dtype=torch.float64),
        "delta_bias": 0.5 * torch.randn(channels, generator=g, dtype=torch.float64),
    }


def assert_close_scaled(actual, expected, rtol=1e-5, name=""):
    """Relative to the tensor's scale: float32 rounding of a sum is relative to its terms, not its value."""
    expected = expected.double()
    scale = expected.abs().max().clamp_min(1e-12)
    error = (actual.double() - expected).abs().max() / scale
    assert error <= rtol, f"{name}: max error {error:.2e} of scale {scale:.2e} exceeds {rtol:.0e}"


def run_scan(scan, inputs, dtype, options, grad_seed=1):
    """Output, last state and all input gradients of ``scan`` (None-valued inputs are left out)."""
    leaves = {k: (v.to(dtype).requires_grad_() if v is not None else None) for k, v in inputs.items()}
    out, last = scan(**leaves, **options, return_last_state=True)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    (out.double() * grad_out).sum().backward()
    grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return out, last, grads


SHAPES = [
    pytest.param(1, 4, 1, 37, 0, id="batch1-dstate1"),
    pytest.param(2, 40, 16, 150, 0, id="L-not-multiple-of-chunk"),
    pytest.param(2, 12, 64, 70, 0, id="dstate64"),
    pytest.param(2, 8, 4, 129, 2, id="groups2"),
    pytest.param(3, 200, 16, 64, 0, id="several-channel-blocks"),
]


@pytest.mark.parametrize(("batch", "channels", "d_state", "length", "groups"), SHAPES)
def test_scan_matches_float64_reference_in_float32(batch, channels, d_state, length, groups):
    inputs = scan_inputs(batch, channels, d_state, length, groups)
    options = {"delta_softplus": True}
    out, last, grads = run_scan(cpu_fused.selective_scan_fn, inputs, torch.float32, options)
    ref_out, ref_last, ref_grads = run_scan(reference.selective_scan_reference, inputs, torch.float64, options)
    assert out.dtype == torch.float32 and out.shape == ref_out.shape
    assert_close_scaled(out, ref_out, name="out")
    assert_close_scaled(last, ref_last, name="last_state")
    for name in SCAN_INPUTS:
        assert_close_scaled(grads[name], ref_grads[name], name=f"grad {name}")


@pytest.mark.parametrize("use_z", [True, False])
@pytest.mark.parametrize("use_D", [True, False])
@pytest.mark.parametrize("use_bias_and_softplus", [True, False])
def test_scan_options_match_reference(use_z, use_D, use_bias_and_softplus):
    inputs = scan_inputs(2, 24, 8, 90, seed=3)
    if not use_z:
        inputs["z"] = None
    if not use_D:
        inputs["D"] = None
    if not use_bias_and_softplus:
        inputs["delta_bias"] = None
        inputs["delta"] = inputs["delta"].abs() * 0.3  # a plausible positive step without softplus
    options = {"delta_softplus": use_bias_and_softplus}
    out, last, grads = run_scan(cpu_fused.selective_scan_fn, inputs, torch.float32, options)
    ref_out, ref_last, ref_grads = run_scan(reference.selective_scan_reference, inputs, torch.float64, options)
    assert_close_scaled(out, ref_out, name="out")
    assert_close_scaled(last, ref_last, name="last_state")
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():
        assert_close_scaled(grad, ref_grads[name], name=f"grad {name}")


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 70),
    d_state=st.sampled_from([1, 3, 16, 64]),
    length=st.integers(1, 200),
    seed=st.integers(0, 2**16),
)
def test_scan_forward_matches_reference_on_random_shapes(batch, channels, d_state, length, seed):
    inputs = scan_inputs(batch, channels, d_state, length, seed=seed)
    f32 = {k: v.float() for k, v in inputs.items()}
    out, last = cpu_fused.selective_scan_fn(**f32, delta_softplus=True, return_last_state=True)
    ref_out, ref_last = reference.selective_scan_reference(**inputs, delta_softplus=True, return_last_state=True)
    assert_close_scaled(out, ref_out, name="out")
    assert_close_scaled(last, ref_last, name="last_state")


def gradcheck_by_name(fn, inputs, fast_mode=False, **fixed):
    """torch's gradcheck of ``fn(**inputs, **fixed)`` with respect to every tensor in ``inputs`` (float64).
    ``fast_mode`` checks random projections of the Jacobian instead of every entry: a wrong gradient still
    fails, at a few evaluations instead of two per input element."""
    names = list(inputs)
    leaves = [inputs[k].clone().requires_grad_() for k in names]

    def call(*args):
        return fn(**dict(zip(names, args, strict=True)), **fixed)

    return torch.autograd.gradcheck(call, leaves, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast_mode)


def test_scan_gradcheck_in_float64():
    inputs = scan_inputs(1, 3, 2, 66, seed=5)  # 66 > one chunk: the chunk-boundary states are exercised
    assert gradcheck_by_name(cpu_fused.selective_scan_fn, inputs, delta_softplus=True)


def test_low_precision_inputs_are_upcast_and_returned_in_their_dtype():
    inputs = scan_inputs(2, 16, 8, 80, seed=7)
    half = {k: v.to(torch.bfloat16).requires_grad_() for k, v in inputs.items()}
    out = cpu_fused.selective_scan_fn(**half, delta_softplus=True)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16
    assert all(v.grad.dtype == torch.bfloat16 for v in half.values())
    expected = reference.selective_scan_reference(**{k: v.detach().double() for k, v in half.items()},
                                                  delta_softplus=True)  # fmt: skip
    assert_close_scaled(out, expected, rtol=1e-2, name="out")


def test_constant_B_and_C_go_to_the_plain_path():
    inputs = scan_inputs(2, 6, 4, 20, seed=9)
    inputs["B"], inputs["C"] = inputs["B"][0, :, 0].expand(6, 4), inputs["C"][0, :, 0].expand(6, 4)
    out = cpu_fused.selective_scan_fn(**inputs, delta_softplus=True)
    expected = reference.selective_scan_reference(**inputs, delta_softplus=True)
    assert_close_scaled(out, expected, name="out")


def test_scan_matches_the_plain_pytorch_backend():
    chunked = load_backend("chunked")
    if chunked is None:
        pytest.skip("chunked backend not present")
    inputs = scan_inputs(2, 32, 16, 300, seed=11)
    options = {"delta_softplus": True}
    out, last, grads = run_scan(cpu_fused.selective_scan_fn, inputs, torch.float32, options)
    plain_out, plain_last, plain_grads = run_scan(chunked.selective_scan_fn, inputs, torch.float32, options)
    assert_close_scaled(out, plain_out, rtol=2e-5, name="out")
    assert_close_scaled(last, plain_last, rtol=2e-5, name="last_state")
    for name in SCAN_INPUTS:
        assert_close_scaled(grads[name], plain_grads[name], rtol=2e-5, name=f"grad {name}")


@pytest.mark.parametrize("groups", [0, 2])
def test_state_update_equals_stepping_the_scan(groups):
    batch, channels, d_state, length = 3, 10, 16, 12
    inputs = scan_inputs(batch, channels, d_state, length, groups, seed=13)
    ref_out, ref_last = reference.selective_scan_reference(**inputs, delta_softplus=True, return_last_state=True)
    state = torch.zeros(batch, channels, d_state)
    outs = []
    for t in range(length):
        outs.append(
            cpu_fused.selective_state_update(
                state,
                inputs["u"][..., t].float(),
                inputs["delta"][..., t].float(),
                inputs["A"].float(),
                inputs["B"][..., t].float(),
                inputs["C"][..., t].float(),
                inputs["D"].float(),
                inputs["z"][..., t].float(),
                inputs["delta_bias"].float(),
                dt_softplus=True,
            )
        )
    assert_close_scaled(torch.stack(outs, -1), ref_out, name="out")
    assert_close_scaled(state, ref_last, name="state")


# ---------------------------------------------------------------- mamba_inner_fn


def mixer_inputs(batch, length, d_model=12, inner=24, d_state=8, rank=3, taps=4, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    return {
        "xz": rand(batch, 2 * inner, length),
        "conv1d_weight": rand(inner, 1, taps, scale=0.5),
        "conv1d_bias": rand(inner, scale=0.1),
        "x_proj_weight": rand(rank + 2 * d_state, inner, scale=inner**-0.5),
        "delta_proj_weight": rand(inner, rank, scale=rank**-0.5),
        "out_proj_weight": rand(d_model, inner, scale=inner**-0.5),
        "out_proj_bias": rand(d_model, scale=0.1),
        "A": -torch.exp(rand(inner, d_state, scale=0.5)),
        "D": rand(inner),
        "delta_bias": rand(inner, scale=0.5) - 2.0,
    }


def run_inner(inner_fn, inputs, dtype, mask):
    leaves = {k: v.to(dtype).requires_grad_() for k, v in inputs.items()}
    out = inner_fn(**leaves, mask=mask, delta_softplus=True)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (out.double() * grad_out).sum().backward()
    return out, {k: v.grad for k, v in leaves.items()}


@pytest.fixture(params=["one-segment", "segments"])
def segmented(request, monkeypatch):
    """Run the mixer whole, or in segments of one chunk (the state and its gradient carried across)."""
    if request.param == "segments":
        monkeypatch.setattr(cpu_fused, "SEGMENT_TOKENS", cpu_fused.CHUNK)
    return request.param


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("length", [1, 150])
def test_mamba_inner_matches_plain_composition(masked, length, segmented):
    inputs = mixer_inputs(2, length, seed=length)
    mask = None
    if masked:
        mask = torch.ones(2, length, dtype=torch.bool)
        mask[0, : length // 3] = False  # left padding
        mask[1, length // 2 :: 7] = False  # holes too: the kernel must skip any padded step
    out, grads = run_inner(cpu_fused.mamba_inner_fn, inputs, torch.float32, mask)
    ref_out, ref_grads = run_inner(reference.mamba_inner_fn, inputs, torch.float64, mask)
    assert out.shape == ref_out.shape
    assert_close_scaled(out, ref_out, name="out")
    for name, grad in grads.items():
        assert_close_scaled(grad, ref_grads[name], name=f"grad {name}")


def test_mixer_segments_cover_the_sequence_in_whole_chunks(monkeypatch):
    monkeypatch.setattr(cpu_fused, "SEGMENT_TOKENS", 4 * cpu_fused.CHUNK)
    assert cpu_fused._segments(2, 300) == [(0, 128), (128, 256), (256, 300)]
    assert cpu_fused._segments(16, 100) == [(0, 64), (64, 100)]  # never shorter than one chunk
    assert cpu_fused._segments(1, 0) == [(0, 0)]


def test_mamba_inner_gradcheck_in_float64(segmented):
    inputs = mixer_inputs(1, 70, d_model=4, inner=6, d_state=3, rank=2, seed=21)
    mask = torch.ones(1, 70, dtype=torch.bool)
    mask[0, :5] = False
    assert gradcheck_by_name(cpu_fused.mamba_inner_fn, inputs, mask=mask)


def test_left_padding_does_not_change_real_outputs():
    length, pad = 100, 37
    inputs = mixer_inputs(1, length, seed=4)
    out = cpu_fused.mamba_inner_fn(**{k: v.float() for k, v in inputs.items()})
    padded = dict(inputs)
    junk = torch.randn(1, inputs["xz"].shape[1], pad, dtype=torch.float64)  # padding carries garbage
    padded["xz"] = torch.cat([junk, inputs["xz"]], dim=-1)
    mask = torch.ones(1, pad + length, dtype=torch.bool)
    mask[:, :pad] = False
    out_padded = cpu_fused.mamba_inner_fn(**{k: v.float() for k, v in padded.items()}, mask=mask)
    torch.testing.assert_close(out_padded[:, pad:], out, rtol=1e-5, atol=1e-6)


def test_mamba_inner_matches_the_plain_pytorch_backend():
    chunked = load_backend("chunked")
    if chunked is None or not hasattr(chunked, "mamba_inner_fn"):
        pytest.skip("chunked backend not present")
    inputs = mixer_inputs(2, 130, seed=8)
    mask = torch.ones(2, 130, dtype=torch.bool)
    mask[1, :40] = False
    out, grads = run_inner(cpu_fused.mamba_inner_fn, inputs, torch.float32, mask)
    plain_out, plain_grads = run_inner(chunked.mamba_inner_fn, inputs, torch.float32, mask)
    assert_close_scaled(out, plain_out, rtol=2e-5, name="out")
    for name, grad in grads.items():
        assert_close_scaled(grad, plain_grads[name], rtol=2e-5, name=f"grad {name}")


# ---------------------------------------------------------------- mamba_mixer_fn (in_proj inside)


def whole_mixer_inputs(batch, length, d_model=12, inner=24, seed=0):
    """mixer_inputs with in_proj in front: x (batch, length, d_model) instead of xz."""
    g = torch.Generator().manual_seed(seed + 100)
    inputs = mixer_inputs(batch, length, d_model=d_model, inner=inner, seed=seed)
    del inputs["xz"]
    return {
        "x": torch.randn(batch, length, d_model, generator=g, dtype=torch.float64),
        "in_proj_weight": torch.randn(2 * inner, d_model, generator=g, dtype=torch.float64) * d_model**-0.5,
        "in_proj_bias": 0.1 * torch.randn(2 * inner, generator=g, dtype=torch.float64),
        **inputs,
    }


@pytest.mark.parametrize("length", [3, 150])
def test_mamba_mixer_matches_in_proj_then_plain_composition(length, segmented):
    inputs = whole_mixer_inputs(2, length, seed=length)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[0, : length // 3] = False
    mask[1, 1::5] = False
    out, grads = run_inner(cpu_fused.mamba_mixer_fn, inputs, torch.float32, mask)
    ref_out, ref_grads = run_inner(reference.mamba_mixer_fn, inputs, torch.float64, mask)
    assert_close_scaled(out, ref_out, name="out")
    assert set(grads) == set(inputs)
    for name, grad in grads.items():
        assert_close_scaled(grad, ref_grads[name], name=f"grad {name}")


def test_mamba_mixer_gradcheck_in_float64(segmented):
    inputs = whole_mixer_inputs(1, 70, d_model=4, inner=6, seed=5)
    mask = torch.ones(1, 70, dtype=torch.bool)
    mask[0, 60:63] = False
    # Segments run a Python loop per call: the full Jacobian would take ~30 s there, the projections ~1 s.
    assert gradcheck_by_name(cpu_fused.mamba_mixer_fn, inputs, fast_mode=segmented == "segments", mask=mask)


def test_backend_reports_unavailable_without_numba():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from recmodels.ops import cpu_fused, dispatch\n"
        "assert not cpu_fused.is_available()\n"
        "assert dispatch.load_backend('cpu_fused') is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
