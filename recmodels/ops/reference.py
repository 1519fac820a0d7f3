"""Sequential float64 selective scan: slow, plainly correct, the yardstick for every fast path."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_input_matrix(matrix: Tensor, batch: int, channels: int, length: int) -> Tensor:
    """Broadcast ``B`` or ``C`` from any of mamba-ssm's layouts to (batch, channels, d_state, length).

    Layouts: (channels, d_state) constant; (batch, d_state, length) shared by all channels;
    (batch, groups, d_state, length) with channels split evenly over the groups.
    """
    if matrix.dim() == 2:
        return matrix[None, :, :, None].expand(batch, channels, matrix.shape[1], length)
    if matrix.dim() == 3:
        return matrix[:, None, :, :].expand(batch, channels, matrix.shape[1], length)
    if matrix.dim() == 4:
        groups = matrix.shape[1]
        if channels % groups:
            raise ValueError(f"{channels} channels cannot be split into {groups} groups of B/C")
        return matrix.repeat_interleave(channels // groups, dim=1)
    raise ValueError(f"B/C must have 2, 3 or 4 dimensions, got shape {tuple(matrix.shape)}")


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The recurrence h_t = exp(delta_t * A) h_{t-1} + delta_t * B_t * u_t, y_t = C_t h_t + D u_t, in float64.

    Shapes follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``: u, delta, z (batch,
    channels, length); A (channels, d_state); D and delta_bias (channels,). The output has u's dtype;
    the last state (batch, channels, d_state) is float64.
    """
    out_dtype = u.dtype
    batch, channels, length = u.shape
    u, delta, A = u.double(), delta.double(), A.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B_full = expand_input_matrix(B.double(), batch, channels, length)  # (batch, channels, d_state, length)
    C_full = expand_input_matrix(C.double(), batch, channels, length)
    state = u.new_zeros(batch, channels, A.shape[1])
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, channels, d_state)
        state = decay * state + (delta[:, :, t] * u[:, :, t])[..., None] * B_full[..., t]
        outputs.append((state * C_full[..., t]).sum(-1))
    out = torch.stack(outputs, dim=-1) if outputs else u.new_zeros(batch, channels, 0)
    if D is not None:
        out = out + u * D.double()[None, :, None]
    if z is not None:
        out = out * F.silu(z.double())
    out = out.to(out_dtype)
    return (out, state) if return_last_state else out


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
) -> Tensor:
    """One step of the recurrence in float64; ``state`` (batch, channels, d_state) is updated in place."""
    dt = dt.double() + (dt_bias.double() if dt_bias is not None else 0.0)
    if dt_softplus:
        dt = F.softplus(dt)
    x64 = x.double()
    new_state = torch.exp(dt[..., None] * A.double()) * state.double()
    new_state = new_state + (dt * x64)[..., None] * B.double()[:, None, :]
    state.copy_(new_state)
    out = (new_state * C.double()[:, None, :]).sum(-1)
    if D is not None:
        out = out + x64 * D.double()
    if z is not None:
        out = out * F.silu(z.double())
    return out.to(x.dtype)


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """SiLU(causal depthwise conv1d): x (batch, channels, length), weight (channels, 1, width)."""
    width = weight.shape[-1]
    out = F.conv1d(x, weight, bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out)


def mamba_inner_with(
    scan: Callable[..., Tensor],
    conv: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    xz: Tensor,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    x_proj_weight: Tensor,
    delta_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    mask: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """The Mamba mixer after ``in_proj`` built from a scan and a conv, so every backend masks the same way.

    xz (batch, 2 * d_inner, length) as in mamba-ssm; returns (batch, length, d_model).
    Padding (``mask`` False) is masked outside the kernels, which then need no mask support: the conv
    input is zeroed there (a real event's window sees zeros, exactly like the conv's own left padding),
    and delta = softplus(dt + bias) is computed here and zeroed there, so exp(delta * A) = 1 and
    delta * B * u = 0: a padded step leaves the state untouched whatever it holds. u is zeroed too, so
    padded outputs carry no D * u term.
    """
    x, z = xz.chunk(2, dim=1)  # (batch, d_inner, length) each
    keep = None if mask is None else mask[:, None, :].to(x.dtype)  # (batch, 1, length)
    if keep is not None:
        x = x * keep
    u = conv(x, conv1d_weight, conv1d_bias)  # (batch, d_inner, length)
    if keep is not None:
        u = u * keep
    dt_rank, d_state = delta_proj_weight.shape[1], A.shape[-1]
    x_dbl = F.linear(u.transpose(1, 2), x_proj_weight)  # (batch, length, dt_rank + 2 * d_state)
    dt, B, C = x_dbl.split([dt_rank, d_state, d_state], dim=-1)
    delta = F.linear(dt, delta_proj_weight).transpose(1, 2).float()  # (batch, d_inner, length)
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if keep is not None:
        delta = delta * keep
    # Kernels such as mamba-ssm's want delta in u's dtype (bf16 under autocast).
    delta = delta.to(u.dtype)
    y = scan(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), D, z, None, False)
    return F.linear(y.transpose(1, 2).to(out_proj_weight.dtype), out_proj_weight, out_proj_bias)


def mamba_mixer_with(
    inner: Callable[..., Tensor],
    x: Tensor,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    x_proj_weight: Tensor,
    delta_proj_weight: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    delta_bias: Tensor | None,
    mask: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """The whole mixer, x (batch, length, d_model) -> (batch, length, d_model), as in_proj followed by a
    backend's ``mamba_inner_fn``: for backends without a fused one."""
    xz = F.linear(x, in_proj_weight, in_proj_bias).transpose(1, 2)  # (batch, 2 * d_inner, length)
    return inner(
        xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight, out_proj_bias, A, D,
        delta_bias, mask, delta_softplus,
    )  # fmt: skip


# The Mamba mixer after ``in_proj`` on the float64 sequential scan.
mamba_inner_fn = partial(mamba_inner_with, selective_scan_reference, causal_depthwise_conv)
mamba_mixer_fn = partial(mamba_mixer_with, mamba_inner_fn)


def is_available() -> bool:
    return True


selective_scan_fn = selective_scan_reference
