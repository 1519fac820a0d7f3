"""The chunked plain-PyTorch backend against the float64 sequential reference."""

from __future__ import annotations

import pytest
import torch

from recmodels.ops import MixerState, MixerWeights, mix, reference, use_backend
from recmodels.ops.dispatch import load_backend
from recmodels.ops.mixer import scan_from_zero_state


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
    scan = load_backend(backend).selective_scan_fn
    return scan(**inputs, delta_softplus=softplus, return_last_state=True, **kwargs)


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


def test_scan_from_an_initial_state_continues_the_whole_scan():
    inputs = scan_inputs(2, 4, 3, 50, "shared", with_extras=True)
    whole, whole_last = run_scan("reference", inputs, softplus=True)
    first = {k: (v[..., :20] if v.dim() == 3 else v) for k, v in inputs.items()}
    second = {k: (v[..., 20:] if v.dim() == 3 else v) for k, v in inputs.items()}
    for backend in ("reference", "chunked"):  # mamba-ssm's own scan has no initial state: not dispatched
        scan = load_backend(backend).selective_scan_fn
        first_out, state = scan(**first, delta_softplus=True, return_last_state=True)
        second_out, last = scan(**second, delta_softplus=True, return_last_state=True, initial_state=state)
        torch.testing.assert_close(torch.cat([first_out, second_out], dim=-1), whole, msg=backend)
        torch.testing.assert_close(last, whole_last, msg=backend)


def test_a_scan_without_initial_state_continues_from_one_in_closed_form():
    """mamba-ssm's kernel always starts from zero; ``scan_from_zero_state`` adds a carried state's part."""

    def zero_start_scan(u, delta, A, B, C, D=None, z=None, return_last_state=False):
        return reference.selective_scan_reference(u, delta, A, B, C, D=D, z=z, return_last_state=return_last_state)

    inputs = {k: v.detach() for k, v in scan_inputs(2, 4, 3, 300, "shared", with_extras=True).items()}
    delta = torch.nn.functional.softplus(inputs["delta"] + inputs["delta_bias"][:, None])
    h0 = torch.randn(2, 4, 3, dtype=torch.float64)
    args = (inputs["u"], delta, inputs["A"], inputs["B"], inputs["C"])
    expected = reference.selective_scan_reference(*args, D=inputs["D"], z=inputs["z"], return_last_state=True,
                                                  initial_state=h0)  # fmt: skip
    for state in (h0, torch.zeros_like(h0)):
        actual = scan_from_zero_state(zero_start_scan)(*args, D=inputs["D"], z=inputs["z"], initial_state=state)
        if state is h0:
            torch.testing.assert_close(actual, expected)
        else:
            torch.testing.assert_close(
                actual[0], reference.selective_scan_reference(*args, D=inputs["D"], z=inputs["z"])
            )


def mixer_weights(d_inner=8, d_state=4, dt_rank=2, d_model=6, width=4, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=0.5):
        return (torch.randn(*shape, generator=generator) * scale).requires_grad_()

    return MixerWeights(
        in_proj_weight=randn(2 * d_inner, d_model),
        in_proj_bias=None,
        conv_weight=randn(d_inner, 1, width),
        conv_bias=randn(d_inner),
        x_proj_weight=randn(dt_rank + 2 * d_state, d_inner),
        dt_proj_weight=randn(d_inner, dt_rank),
        dt_bias=randn(d_inner),
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1),
        D=torch.ones(d_inner),
        out_proj_weight=randn(d_model, d_inner),
        out_proj_bias=None,
    )


def test_mix_chunked_equals_reference_with_mask():
    torch.manual_seed(0)
    x = torch.randn(3, 25, 6, requires_grad=True)
    mask = torch.ones(3, 25, dtype=torch.bool)
    mask[0, :9] = False
    weights = mixer_weights()
    results = []
    for backend in ("reference", "chunked"):
        with use_backend(backend):
            out, _ = mix(x, weights, mask)
        grads = torch.autograd.grad(out.square().sum(), [x, weights.x_proj_weight, weights.conv_weight])
        results.append((out, grads))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    for actual, expected in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_left_padding_does_not_reach_the_mixer_output():
    torch.manual_seed(0)
    x = torch.randn(1, 12, 6)
    padded = torch.cat([torch.randn(1, 5, 6) * 10, x], dim=1)  # garbage under the padding
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.bool), torch.ones(1, 12, dtype=torch.bool)], dim=1)
    weights = mixer_weights()
    with torch.no_grad(), use_backend("chunked"):
        plain, _ = mix(x, weights)
        masked, _ = mix(padded, weights, mask)
    torch.testing.assert_close(masked[:, 5:], plain, rtol=1e-5, atol=1e-6)


def test_single_steps_continue_the_mix_and_padded_steps_change_no_state():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 6)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :4] = False
    weights = mixer_weights()
    with torch.no_grad(), use_backend("chunked"):
        whole, whole_state = mix(x, weights, mask)
        state = MixerState.zeros(weights, 2)
        for t in range(9):
            before = MixerState(*(part.clone() for part in state))
            out, state = mix(x[:, t : t + 1], weights, mask[:, t : t + 1], state)
            torch.testing.assert_close(out[mask[:, t], 0], whole[mask[:, t], t])
            if not mask[1, t]:
                torch.testing.assert_close(state.conv[1], before.conv[1], rtol=0, atol=0)
                torch.testing.assert_close(state.ssm[1], before.ssm[1], rtol=0, atol=0)
    torch.testing.assert_close(state.ssm, whole_state.ssm)
    torch.testing.assert_close(state.conv, whole_state.conv)
