"""Sequential float64 selective scan: slow, plainly correct, the yardstick for every fast path.

The test oracle (and the benchmarks' baseline): production code never imports it. Its mixer is composed
by ``compose``, like every backend's.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.ops.compose import causal_depthwise_conv, mamba_inner_with, mamba_mixer_with


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


# The Mamba mixer after ``in_proj`` on the float64 sequential scan.
mamba_inner_fn = partial(mamba_inner_with, selective_scan_reference, causal_depthwise_conv)
mamba_mixer_fn = partial(mamba_mixer_with, mamba_inner_fn)


def is_available() -> bool:
    return True


selective_scan_fn = selective_scan_reference
