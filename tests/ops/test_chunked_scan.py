"""The chunked plain-PyTorch backend against the float64 sequential reference."""

from __future__ import annotations

import pytest
import torch

from recmodels.ops import mamba_inner_fn, selective_scan_fn, selective_state_update, use_backend


def scan_inputs(batch, channels, d_state, length, layout, with_extras, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    u, delta = randn(batch, channels, length), torch.rand(batch, channels, length, generator=generator, dtype=dtype)
    A = -torch.rand(channels, d_state, generator=generator, dtype=dtype) * 2
    shapes = {"shared": (batch, d_state, length), "grouped": (batch, 2, d_state, length), "fixed": (channels, d_state)}
    B, C = randn(*shapes[layout]), randn(*shapes[layout])
    inputs = {"u": u, "delta": delta * 0.5, "A": A, "B": B, "C": C, "D": randn(channels)}
    if with_extras:
        inputs |= {"z": randn(batch, channels, length), "delta_bias": randn(channels) * 0.3}
    return {name: value.requires_grad_() for name, value in inputs.items()}


def run_scan(backend, inputs, softplus, **kwargs):
    with use_backend(backend):
        return selective_scan_fn(**inputs, delta_softplus=softplus, return_last_state=True, **kwargs)


def outputs_and_grads(backend, inputs, softplus):
    out, state = run_scan(backend, inputs, softplus)
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    loss = (out * weights).sum() + state.double().square().sum()
    grads = torch.autograd.grad(loss, list(inputs.values()))
    return out, state, dict(zip(inputs, grads, strict=True))


@pytest.mark.parametrize(
    ("batch", "channels", "d_state", "length", "layout"),
    [(2, 4, 3, 37, "shared"), (1, 6, 2, 130, "grouped"), (2, 4, 3, 10, "fixed"), (1, 2, 4, 1, "shared")],
)
@pytest.mark.parametrize("with_extras", [False, True])
def test_chunked_scan_equals_reference_outputs_and_gradients(batch, channels, d_state, length, layout, with_extras):
    inputs = scan_inputs(batch, channels, d_state, length, layout, with_extras)
    expected = outputs_and_grads("reference", inputs, softplus=with_extras)
    actual = outputs_and_grads("chunked", inputs, softplus=with_extras)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(actual[1], expected[1], rtol=1e-10, atol=1e-10)
    for name in inputs:
        torch.testing.assert_close(actual[2][name], expected[2][name], rtol=1e-9, atol=1e-9, msg=name)


def test_chunk_size_does_not_change_the_result():
    from recmodels.ops import chunked

    inputs = scan_inputs(2, 4, 3, 50, "shared", with_extras=True)
    whole = chunked.selective_scan_fn(**inputs, delta_softplus=True, chunk_size=64)
    for chunk_size in (1, 7, 16):
        torch.testing.assert_close(
            chunked.selective_scan_fn(**inputs, delta_softplus=True, chunk_size=chunk_size), whole
        )


def test_float32_scan_is_close_to_the_float64_reference():
    inputs = scan_inputs(2, 8, 16, 200, "shared", with_extras=True, dtype=torch.float32)
    expected, _ = run_scan("reference", inputs, softplus=True)
    actual, _ = run_scan("chunked", inputs, softplus=True)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_single_step_update_continues_the_scan():
    torch.manual_seed(0)
    inputs = scan_inputs(2, 4, 3, 6, "shared", with_extras=True)
    with torch.no_grad(), use_backend("chunked"):
        expected, _ = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
        state = torch.zeros(2, 4, 3, dtype=torch.float64)
        for t in range(6):
            out = selective_state_update(
                state,
                inputs["u"][..., t],
                inputs["delta"][..., t],
                inputs["A"],
                inputs["B"][..., t],
                inputs["C"][..., t],
                inputs["D"],
                inputs["z"][..., t],
                inputs["delta_bias"],
                dt_softplus=True,
            )
            torch.testing.assert_close(out, expected[..., t])


def mixer_weights(d_inner=8, d_state=4, dt_rank=2, d_model=6, width=4, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=0.5):
        return (torch.randn(*shape, generator=generator) * scale).requires_grad_()

    return {
        "conv1d_weight": randn(d_inner, 1, width),
        "conv1d_bias": randn(d_inner),
        "x_proj_weight": randn(dt_rank + 2 * d_state, d_inner),
        "delta_proj_weight": randn(d_inner, dt_rank),
        "out_proj_weight": randn(d_model, d_inner),
        "out_proj_bias": None,
        "A": -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1),
        "D": torch.ones(d_inner),
        "delta_bias": randn(d_inner),
    }


def test_mamba_inner_chunked_equals_reference_with_mask():
    torch.manual_seed(0)
    xz = torch.randn(3, 16, 25, requires_grad=True)
    mask = torch.ones(3, 25, dtype=torch.bool)
    mask[0, :9] = False
    weights = mixer_weights()
    results = []
    for backend in ("reference", "chunked"):
        with use_backend(backend):
            out = mamba_inner_fn(xz, **weights, mask=mask)
        grads = torch.autograd.grad(out.square().sum(), [xz, weights["x_proj_weight"], weights["conv1d_weight"]])
        results.append((out, grads))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    for actual, expected in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_left_padding_does_not_reach_the_mixer_output():
    torch.manual_seed(0)
    xz = torch.randn(1, 16, 12)
    padded = torch.cat([torch.randn(1, 16, 5) * 10, xz], dim=-1)  # garbage under the padding
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.bool), torch.ones(1, 12, dtype=torch.bool)], dim=1)
    weights = mixer_weights()
    with torch.no_grad(), use_backend("chunked"):
        plain = mamba_inner_fn(xz, **weights)
        masked = mamba_inner_fn(padded, **weights, mask=mask)
    torch.testing.assert_close(masked[:, 5:], plain, rtol=1e-5, atol=1e-6)
