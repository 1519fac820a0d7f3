"""Plain-PyTorch selective scan, chunked over the sequence so memory stays O(chunk), not O(length).

The forward pass walks the sequence chunk by chunk and keeps only the state at each chunk boundary;
the backward pass recomputes one chunk's states from its boundary, runs the adjoint recurrence
backwards through it and moves on. Memory is therefore (length / chunk) boundary states plus one
chunk's (chunk, batch, channels, d_state) buffers, instead of one state per step.

Runs on any device and is the yardstick the compiled kernels are tested against (after ``reference``).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.ops.mixer import causal_depthwise_conv, mix_with, scan_with_state

CHUNK_SIZE = 64


def is_available() -> bool:
    return True


def _chunk_states(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """States of one chunk, time-major so that each step reads and writes contiguous memory.

    u, delta (b, G, Dg, T); A (G, Dg, N); B (b, G, N, T); h0 (b, G, Dg, N).
    Returns states (T, b, G, Dg, N) and decays exp(delta * A) of the same shape.
    """
    delta_t = delta.permute(3, 0, 1, 2)  # (T, b, G, Dg)
    decay = torch.exp(delta_t[..., None] * A)  # (T, b, G, Dg, N)
    states = (delta_t * u.permute(3, 0, 1, 2))[..., None] * B.permute(3, 0, 1, 2)[:, :, :, None, :]
    states[0].addcmul_(decay[0], h0)
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])
    return states, decay


class _ChunkedScan(torch.autograd.Function):
    """y_t = C_t h_t with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t from h_0 = ``h0``; no D, no gate."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, chunk_size: int):  # type: ignore[override]
        batch, groups, per_group, length = u.shape
        state = h0  # (b, G, Dg, N)
        y = u.new_empty(batch, groups, per_group, length)
        boundaries = []
        for start in range(0, length, chunk_size):
            end = min(start + chunk_size, length)
            boundaries.append(state)
            states, _ = _chunk_states(u[..., start:end], delta[..., start:end], A, B[..., start:end], state)
            y[..., start:end] = torch.einsum("tbgdn,bgnt->bgdt", states, C[..., start:end])
            state = states[-1].clone()
        ctx.chunk_size = chunk_size
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(u, delta, A, B, C, *boundaries)
        return y, state

    @staticmethod
    def backward(ctx, grad_y, grad_state):  # type: ignore[override]
        u, delta, A, B, C, *boundaries = ctx.saved_tensors
        chunk_size, length = ctx.chunk_size, u.shape[-1]
        grad_u, grad_delta = torch.zeros_like(u), torch.zeros_like(delta)
        grad_A, grad_B, grad_C = torch.zeros_like(A), torch.zeros_like(B), torch.zeros_like(C)
        # Adjoint of the state entering the chunk after the current one.
        carry = grad_state if grad_state is not None else torch.zeros_like(boundaries[0])
        grad_y = grad_y if grad_y is not None else torch.zeros_like(u)
        starts = list(range(0, length, chunk_size))
        for index in reversed(range(len(starts))):
            start = starts[index]
            end = min(start + chunk_size, length)
            h0 = boundaries[index]
            u_c, delta_c, B_c, C_c = u[..., start:end], delta[..., start:end], B[..., start:end], C[..., start:end]
            states, decay = _chunk_states(u_c, delta_c, A, B_c, h0)
            dy = grad_y[..., start:end].permute(3, 0, 1, 2)  # (T, b, G, Dg)
            grad_C[..., start:end] = torch.einsum("tbgdn,tbgd->bgnt", states, dy)
            # adjoint[t] = dL/dh_t, accumulated backwards in place.
            adjoint = dy[..., None] * C_c.permute(3, 0, 1, 2)[:, :, :, None, :]  # (T, b, G, Dg, N)
            adjoint[-1] += carry
            for t in range(adjoint.shape[0] - 1, 0, -1):
                adjoint[t - 1].addcmul_(adjoint[t], decay[t])
            carry = adjoint[0] * decay[0]
            previous = torch.cat([h0[None], states[:-1]])  # h_{t-1}
            grad_exponent = adjoint * previous * decay  # dL/d(delta_t * A)
            delta_t, u_t = delta_c.permute(3, 0, 1, 2), u_c.permute(3, 0, 1, 2)  # (T, b, G, Dg)
            adjoint_b = torch.einsum("tbgdn,bgnt->tbgd", adjoint, B_c)
            grad_delta[..., start:end] = ((grad_exponent * A).sum(-1) + adjoint_b * u_t).permute(1, 2, 3, 0)
            grad_u[..., start:end] = (adjoint_b * delta_t).permute(1, 2, 3, 0)
            grad_A += torch.einsum("tbgdn,tbgd->gdn", grad_exponent, delta_t)
            grad_B[..., start:end] = torch.einsum("tbgdn,tbgd->bgnt", adjoint, delta_t * u_t)
        return grad_u, grad_delta, grad_A, grad_B, grad_C, carry, None


def _as_groups(matrix: Tensor, batch: int, channels: int, length: int) -> Tensor:
    """B or C as (batch, groups, d_state, length) from any of mamba-ssm's layouts."""
    if matrix.dim() == 2:  # (channels, d_state), one per channel, constant in time
        return matrix[None, :, :, None].expand(batch, channels, matrix.shape[1], length)
    if matrix.dim() == 3:  # (batch, d_state, length), shared by all channels
        return matrix[:, None]
    if matrix.dim() == 4:  # (batch, groups, d_state, length)
        return matrix
    raise ValueError(f"B/C must have 2, 3 or 4 dimensions, got shape {tuple(matrix.shape)}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def selective_scan_fn(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False, return_last_state: bool = False,
    initial_state: Tensor | None = None, chunk_size: int = CHUNK_SIZE,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """mamba-ssm's ``selective_scan_fn`` in chunks, from ``initial_state`` (batch, channels, d_state) or
    zeros; computes in float32 (or float64 for float64 inputs)."""
    out_dtype = u.dtype
    dtype = _compute_dtype(u.dtype)
    with torch.autocast(u.device.type, enabled=False):
        batch, channels, length = u.shape
        u_c, delta_c = u.to(dtype), delta.to(dtype)
        if delta_bias is not None:
            delta_c = delta_c + delta_bias.to(dtype)[:, None]
        if delta_softplus:
            delta_c = F.softplus(delta_c)
        B_g = _as_groups(B.to(dtype), batch, channels, length)
        C_g = _as_groups(C.to(dtype), batch, channels, length)
        if B_g.shape[1] != C_g.shape[1]:  # unusual: give both one group per channel
            B_g = B_g.repeat_interleave(channels // B_g.shape[1], dim=1)
            C_g = C_g.repeat_interleave(channels // C_g.shape[1], dim=1)
        groups = B_g.shape[1]
        if channels % groups:
            raise ValueError(f"{channels} channels cannot be split into {groups} groups of B/C")
        shape = (batch, groups, channels // groups, length)
        state_shape = (batch, groups, channels // groups, A.shape[-1])
        h0 = u_c.new_zeros(state_shape) if initial_state is None else initial_state.to(dtype).reshape(state_shape)
        y, last_state = _ChunkedScan.apply(
            u_c.reshape(shape),
            delta_c.reshape(shape),
            A.to(dtype).reshape(groups, channels // groups, -1),
            B_g,
            C_g,
            h0,
            chunk_size,
        )
        y = y.reshape(batch, channels, length)
        if D is not None:
            y = y + u_c * D.to(dtype)[:, None]
        if z is not None:
            y = y * F.silu(z.to(dtype))
        y = y.to(out_dtype)
    if return_last_state:
        return y, last_state.reshape(batch, channels, -1)
    return y


# The Mamba mixer on this module's chunked scan; masking as in ``mixer``.
mix = partial(mix_with, scan_with_state(selective_scan_fn), causal_depthwise_conv)
