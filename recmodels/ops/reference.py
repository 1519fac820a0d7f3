"""Sequential float64 selective scan: slow, plainly correct, the yardstick for every fast path.

The test oracle (and the benchmarks' baseline): production code never imports it. Its mixer is composed
by ``mixer.mix_with``, like every backend's without a fused mixer.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.ops.mixer import causal_depthwise_conv, mix_with, scan_with_state


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
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False, return_last_state: bool = False,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """The recurrence h_t = exp(delta_t * A) h_{t-1} + delta_t * B_t * u_t, y_t = C_t h_t + D u_t, in float64.

    Shapes follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``: u, delta, z (batch,
    channels, length); A (channels, d_state); D and delta_bias (channels,); ``initial_state`` (batch,
    channels, d_state) is h_0 (zeros when None). The output has u's dtype; the last state is float64.
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
    state = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state.double()
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


def is_available() -> bool:
    return True


selective_scan_fn = selective_scan_reference
# The Mamba mixer on the float64 sequential scan.
mix = partial(mix_with, scan_with_state(selective_scan_reference), causal_depthwise_conv)
