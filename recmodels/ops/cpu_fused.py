"""Compiled CPU backend: fused selective scan, single-step update and the whole Mamba mixer (Numba).

Why fused: a plain-PyTorch scan writes the (batch, length, channels, d_state) state expansion to memory,
and on a CPU that memory traffic, not the arithmetic, decides the speed. Here the state lives in a small
per-task buffer, only its value every ``CHUNK`` steps is saved, and backward recomputes inside chunks.
``mamba_mixer_fn`` goes further for the whole mixer, in the spirit of mamba-ssm's fused inner function
on a GPU: it saves only the mixer's input, the weights and the chunk states, and recomputes in_proj,
conv, SiLU, x_proj and dt_proj in backward, a segment of the sequence at a time, so a layer's activation
memory per token is about its input, output and their gradients (``mamba_inner_fn`` is the same with xz
as input, for callers that apply in_proj themselves).

Kernels compute in float32 (bf16/fp16 inputs are upcast, results cast back); float64 inputs are computed
in float64 so that gradcheck can run. Layouts the kernels do not cover (constant B/C, complex A, odd
state-update shapes) go to the plain path instead of failing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.ops import chunked  # the plain path for layouts the kernels do not cover

try:
    import numba

    from recmodels.ops import _cpu_kernels as kernels
except ImportError:  # numba missing or broken: the dispatcher falls back to ``chunked``
    numba = None
    kernels = None

CHUNK = 64  # steps between saved states: saved memory is channels * d_state / CHUNK floats per token
SEGMENT_TOKENS = 4096  # batch x steps per mixer segment: ~10 MB of float32 temporaries at d_inner 128
BACKWARD_BUFFER_FLOATS = 70000  # (CHUNK + 1) x d_state x block recompute buffer: ~270 KB, fits L2


def is_available() -> bool:
    return kernels is not None


# ---------------------------------------------------------------- helpers


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 only when the caller works in float64 (tests, gradcheck); float32 otherwise."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _channel_last(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(batch, channels, length) -> contiguous (batch, length, channels); free when x is already a
    transposed view of a channel-last tensor (as ``in_proj(x).transpose(1, 2)`` is)."""
    return x.detach().transpose(1, 2).to(dtype).contiguous()


def _np(x: Tensor) -> np.ndarray:
    return x.detach().numpy()


def _vector_or_zeros(x: Tensor | None, size: int, dtype: torch.dtype) -> Tensor:
    return torch.zeros(size, dtype=dtype) if x is None else x.detach().to(dtype).contiguous()


def _mask_array(mask: Tensor | None) -> tuple[np.ndarray, bool]:
    if mask is None:
        return np.ones((1, 1), np.uint8), False
    return mask.detach().to(torch.uint8).contiguous().numpy(), True


def _blocking(batch: int, groups: int, per_group: int, n_state: int) -> tuple[int, int]:
    """(channels per block, blocks per group). A block is a multiple of 16 channels wide (one AVX-512
    register of float32; a ragged width leaves a scalar remainder loop that costs as much as the vector part), narrow
    enough for the backward recompute buffer to stay in L2, and there are enough tasks to keep every
    thread busy when batch * groups is small."""
    threads = numba.get_num_threads()
    lanes = 16
    max_width = max(lanes, BACKWARD_BUFFER_FLOATS // ((CHUNK + 1) * max(n_state, 1)) // lanes * lanes)
    blocks = max(math.ceil(per_group / max_width), math.ceil(2 * threads / (batch * groups)))
    width = math.ceil(math.ceil(per_group / max(1, blocks)) / lanes) * lanes
    return width, math.ceil(per_group / width)


def _sync_threads() -> None:
    """Use as many Numba threads as torch does (a caller's torch.set_num_threads applies to both)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


# ---------------------------------------------------------------- selective_scan_fn


class _ScanInputs:
    """The kernel's view of selective_scan_fn's arguments: channel-last arrays in the compute dtype."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, mask=None):
        dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
        self.batch, self.channels, self.length = u.shape
        self.n_state = A.shape[1]
        self.groups = 1 if B.dim() == 3 else B.shape[1]
        gn = self.groups * self.n_state
        b_flat = B.detach().reshape(self.batch, gn, self.length)
        c_flat = C.detach().reshape(self.batch, gn, self.length)
        self.bc = torch.cat([b_flat, c_flat], dim=1).transpose(1, 2).to(dtype).contiguous()  # (b, l, 2gn)
        self.u = _channel_last(u, dtype)
        self.delta = _channel_last(delta, dtype)
        self.z = _channel_last(z, dtype) if z is not None else torch.zeros(1, 1, 1, dtype=dtype)
        self.A_t = A.detach().to(dtype).t().contiguous()
        self.D = _vector_or_zeros(D, self.channels, dtype)
        self.bias = _vector_or_zeros(delta_bias, self.channels, dtype)
        self.mask, self.has_mask = _mask_array(mask)
        self.dtype = dtype
        self.width, self.blocks = _blocking(self.batch, self.groups, self.channels // self.groups, self.n_state)

    def common_args(self, has_z: bool, softplus: bool) -> tuple:
        gn = self.groups * self.n_state
        return (
            _np(self.u), _np(self.delta), _np(self.bias), _np(self.A_t), _np(self.bc), 0, gn, self.groups,
            _np(self.D), _np(self.z), 0, 0, has_z, self.mask, self.has_mask, softplus, CHUNK, self.width,
        )  # fmt: skip


def _chunk_states(batch: int, length: int, channels: int, n_state: int, dtype) -> Tensor:
    """The (batch, chunks, d_state, channels) buffer of states saved every ``CHUNK`` steps."""
    return torch.empty(batch, max(1, math.ceil(length / CHUNK)), n_state, channels, dtype=dtype)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        inputs = _ScanInputs(u, delta, A, B, C, D, z, delta_bias)
        batch, length, channels, n_state, dtype = (
            inputs.batch, inputs.length, inputs.channels, inputs.n_state, inputs.dtype
        )  # fmt: skip
        out = torch.empty(batch, length, channels, dtype=dtype)
        chunk_states = _chunk_states(batch, length, channels, n_state, dtype)
        last_state = torch.zeros(batch, n_state, channels, dtype=dtype)  # in: initial state, out: final
        _sync_threads()
        kernels.scan_forward(
            *inputs.common_args(z is not None, delta_softplus), 0, _np(out), _np(chunk_states), _np(last_state)
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, chunk_states)
        ctx.delta_softplus = delta_softplus
        out = out.transpose(1, 2).to(u.dtype)
        if not return_last_state:
            return out
        last_state = last_state.transpose(1, 2)
        ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, grad_out, *_):
        u, delta, A, B, C, D, z, delta_bias, chunk_states = ctx.saved_tensors
        inputs = _ScanInputs(u, delta, A, B, C, D, z, delta_bias)
        batch, length, channels, n_state = inputs.batch, inputs.length, inputs.channels, inputs.n_state
        dtype, groups = inputs.dtype, inputs.groups
        grad_out = _channel_last(grad_out, dtype)
        grad_u = torch.empty(batch, length, channels, dtype=dtype)
        grad_delta = torch.empty_like(grad_u)
        grad_z = torch.empty_like(grad_u) if z is not None else torch.zeros(1, 1, 1, dtype=dtype)
        grad_bc = torch.empty(inputs.blocks, batch, length, 2 * groups * n_state, dtype=dtype)
        grad_A = torch.zeros(batch, n_state, channels, dtype=dtype)
        grad_D = torch.zeros(batch, channels, dtype=dtype)
        grad_bias = torch.zeros(batch, channels, dtype=dtype)
        grad_state = torch.zeros(batch, n_state, channels, dtype=dtype)
        _sync_threads()
        kernels.scan_backward(
            *inputs.common_args(z is not None, ctx.delta_softplus), 0, _np(chunk_states), _np(grad_out),
            _np(grad_u), _np(grad_delta), _np(grad_z), 0, _np(grad_bc), _np(grad_A), _np(grad_D),
            _np(grad_bias), _np(grad_state), np.zeros((1, 1, 1), grad_u.numpy().dtype), False,
        )  # fmt: skip
        grad_bc = grad_bc.sum(0).transpose(1, 2)  # (batch, 2 * groups * n_state, length)
        half = groups * n_state
        grad_B = grad_bc[:, :half].reshape(B.shape).to(B.dtype)
        grad_C = grad_bc[:, half:].reshape(C.shape).to(C.dtype)
        return (
            grad_u.transpose(1, 2).to(u.dtype),
            grad_delta.transpose(1, 2).to(delta.dtype),
            grad_A.sum(0).t().to(A.dtype),
            grad_B,
            grad_C,
            grad_D.sum(0).to(D.dtype) if D is not None else None,
            grad_z.transpose(1, 2).to(z.dtype) if z is not None else None,
            grad_bias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            None,
            None,
        )


def _kernel_supports(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> bool:
    """Variable B/C of shape (batch, d_state, length) or (batch, groups, d_state, length), real A."""
    if u.device.type != "cpu" or u.dim() != 3 or A.dim() != 2 or A.is_complex():
        return False
    batch, channels, length = u.shape
    for m in (B, C):
        if m.is_complex() or m.dim() not in (3, 4) or m.shape[0] != batch or m.shape[-1] != length:
            return False
        if m.shape[-2] != A.shape[1] or (m.dim() == 4 and channels % m.shape[1]):
            return False
    return B.shape == C.shape


def selective_scan_fn(
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
    """mamba-ssm's ``selective_scan_fn`` on CPU; the output is a (batch, channels, length) view of a
    channel-last buffer, the last state (batch, channels, d_state) is in the compute dtype."""
    if not _kernel_supports(u, A, B, C):
        return chunked.selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# ---------------------------------------------------------------- selective_state_update


def _state_update_plain(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus) -> Tensor:
    """Plain-PyTorch step for shapes the kernel does not take (extra head dimensions, odd dtypes)."""
    dt = dt + dt_bias[..., None, :].squeeze(-2) if dt_bias is not None else dt
    dt = F.softplus(dt) if dt_softplus else dt
    channels = state.shape[-2]
    if B.dim() == state.dim() - 1:  # (..., d_state): shared by all channels
        B, C = B.unsqueeze(-2), C.unsqueeze(-2)
    else:  # (..., groups, d_state)
        B = B.repeat_interleave(channels // B.shape[-2], dim=-2)
        C = C.repeat_interleave(channels // C.shape[-2], dim=-2)
    decay = torch.exp(dt[..., None] * A)
    new_state = state * decay + (dt * x)[..., None] * B
    state.copy_(new_state)
    out = (new_state * C).sum(-1)
    if D is not None:
        out = out + x * D
    if z is not None:
        out = out * F.silu(z)
    return out.to(x.dtype)


@torch.no_grad()
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
    """One step for every (batch, channel): state (batch, channels, d_state) is updated in place."""
    plain = (
        state.dim() != 3
        or state.dtype not in (torch.float32, torch.float64)
        or not state.is_contiguous()
        or B.dim() not in (2, 3)
        or A.is_complex()
    )
    if plain:
        return _state_update_plain(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    batch, channels, n_state = state.shape
    dtype = state.dtype
    groups = 1 if B.dim() == 2 else B.shape[1]
    bc = torch.cat([B.reshape(batch, -1), C.reshape(batch, -1)], dim=1).to(dtype).contiguous()
    out = torch.empty(batch, channels, dtype=dtype)
    zz = z.to(dtype).contiguous() if z is not None else torch.zeros(1, 1, dtype=dtype)
    _sync_threads()
    kernels.state_update(
        state.numpy(), _np(x.to(dtype).contiguous()), _np(dt.to(dtype).contiguous()),
        _np(A.to(dtype).contiguous()), _np(bc), 0, groups * n_state, groups,
        _np(_vector_or_zeros(D, channels, dtype)), _np(zz), z is not None,
        _np(_vector_or_zeros(dt_bias, channels, dtype)), dt_softplus, _np(out),
    )  # fmt: skip
    return out.to(x.dtype)


# ---------------------------------------------------------------- mamba_mixer_fn, mamba_inner_fn


def _segments(batch: int, length: int) -> list[tuple[int, int]]:
    """Time ranges [start, end) of about ``SEGMENT_TOKENS`` tokens (batch x steps), whole chunks each, that
    the mixer computes one after the other: its per-token temporaries then take a segment's memory, not the
    sequence's, while each kernel call still has a full batch of parallel work."""
    steps = max(CHUNK, SEGMENT_TOKENS // max(batch, 1) // CHUNK * CHUNK)
    return [(start, min(start + steps, length)) for start in range(0, max(length, 1), steps)]


class _MambaMixer(torch.autograd.Function):
    """in_proj -> conv -> SiLU -> x_proj -> dt_proj -> scan (D, z gate) -> out_proj, from x (batch, length,
    d_model); with ``in_proj_w`` None, x is xz itself (batch, length, 2 * inner) and in_proj is skipped.

    It saves x, the weights and the scan state every ``CHUNK`` steps, nothing per token beyond x: both
    passes walk the sequence in segments (forward first to last, carrying the state; backward last to
    first, carrying the state's gradient) and recompute xz, conv, x_proj and dt_proj for each, so only x,
    the output and their gradients are whole-sequence tensors.
    """

    @staticmethod
    def forward(ctx, x, in_proj_w, in_proj_b, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D,
                delta_bias, mask, delta_softplus):  # fmt: skip
        params = (in_proj_w, in_proj_b, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D, delta_bias)
        x_in, weights, mask_np, has_mask = _prepare_pass(x, params, mask)
        dtype = weights.dtype
        batch, length, _ = x.shape
        width, _ = _blocking(batch, 1, weights.inner, weights.n_state)
        out = torch.empty(batch, length, weights.out_w.shape[0], dtype=dtype)
        chunk_states = _chunk_states(batch, length, weights.inner, weights.n_state, dtype)
        state = torch.zeros(batch, weights.n_state, weights.inner, dtype=dtype)
        for start, end in _segments(batch, length):
            seg = weights.segment(x_in, start, end, mask_np, has_mask)
            y = torch.empty(batch, end - start, weights.inner, dtype=dtype)
            args = weights.scan_args(seg, mask_np, has_mask, delta_softplus, width)
            kernels.scan_forward(*args, start, _np(y), _np(chunk_states), _np(state))
            out[:, start:end] = F.linear(y, weights.out_w, weights.out_b)
            del seg, y  # before the next segment's are made
        ctx.save_for_backward(x, *params, mask, chunk_states)
        ctx.delta_softplus = delta_softplus
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, *params, mask, states = ctx.saved_tensors
        in_proj_w, in_proj_b, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, D, delta_bias = params
        x_in, weights, mask_np, has_mask = _prepare_pass(x, params, mask)
        dtype, inner, n_state, rank = weights.dtype, weights.inner, weights.n_state, weights.rank
        batch, length, _ = x.shape
        grad_out = grad_out.to(dtype)  # (batch, length, d_model)
        width, blocks = _blocking(batch, 1, inner, n_state)
        grads = _MixerGradients(x_in, weights, batch)
        for start, end in reversed(_segments(batch, length)):
            seg = weights.segment(x_in, start, end, mask_np, has_mask)
            tokens = batch * (end - start)
            grad_seg = grad_out[:, start:end].reshape(tokens, -1)  # (tokens, d_model)
            grad_y = (grad_seg @ weights.out_w).reshape(batch, end - start, inner)  # becomes y in place
            grad_u = torch.empty_like(grad_y)
            grad_bc = torch.empty(blocks, batch, end - start, 2 * n_state, dtype=dtype)
            grad_xz = torch.zeros_like(seg.xz)  # the conv adds to the x half, the scan writes the z half
            kernels.scan_backward(
                *weights.scan_args(seg, mask_np, has_mask, ctx.delta_softplus, width), start, _np(states),
                _np(grad_y), _np(grad_u), _np(seg.delta), _np(grad_xz), inner, _np(grad_bc), _np(grads.A),
                _np(grads.D), _np(grads.bias), _np(grads.state), _np(grad_y), True,
            )  # fmt: skip
            y, grad_delta = grad_y.reshape(tokens, inner), seg.delta.reshape(tokens, inner)  # overwritten
            grads.out_w.addmm_(grad_seg.t(), y)
            grads.dt_w.addmm_(grad_delta.t(), seg.x_dbl[..., :rank].reshape(tokens, rank))
            grad_x_dbl = torch.cat([grad_delta @ weights.dt_proj_w, grad_bc.sum(0).reshape(tokens, -1)], dim=-1)
            grads.x_proj_w.addmm_(grad_x_dbl.t(), seg.xc.reshape(tokens, inner))
            grad_u.reshape(tokens, inner).addmm_(grad_x_dbl, weights.x_proj_w)
            kernels.conv_silu_backward(
                _np(seg.xz), 0, seg.first, _np(weights.conv_w_t), _np(weights.conv_b), mask_np, has_mask, start,
                _np(grad_u), _np(grad_xz), 0, _np(grads.conv_w), _np(grads.conv_b),
            )  # fmt: skip
            grads.add_in_proj(grad_xz, x_in, weights.in_w, seg.first, end)
            del seg, grad_seg, grad_y, grad_u, grad_bc, grad_xz, y, grad_delta, grad_x_dbl  # as in forward

        def cast(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
            return None if like is None or grad is None else grad.to(like.dtype)

        return (
            grads.x.to(x.dtype),
            cast(grads.in_w, in_proj_w),
            cast(grads.in_b, in_proj_b),
            cast(grads.conv_w.sum(0).t().reshape(conv_w.shape), conv_w),
            cast(grads.conv_b.sum(0), conv_b),
            cast(grads.x_proj_w, x_proj_w),
            cast(grads.dt_w, dt_proj_w),
            cast(grads.out_w, out_proj_w),
            None if out_proj_b is None else grad_out.sum((0, 1)).to(out_proj_b.dtype),
            cast(grads.A.sum(0).t(), A),
            cast(grads.D.sum(0), D),
            cast(grads.bias.sum(0), delta_bias),
            None,
            None,
        )


def _prepare_pass(x: Tensor, params: tuple, mask: Tensor | None):
    """What both passes of the mixer start from: x and the weights (kernel layout) in the compute dtype,
    the mask as the kernels read it, and Numba's thread count matched to torch's."""
    dtype = _compute_dtype(x)
    _sync_threads()
    mask_np, has_mask = _mask_array(mask)
    return x.detach().to(dtype), _MixerWeights(*params, dtype), mask_np, has_mask


class _Segment(NamedTuple):
    """One segment's recomputed activations. xz holds steps [first, end), first = start - (K - 1) or 0, so
    the conv has its window; the others hold steps [start, end)."""

    first: int
    xz: Tensor  # (batch, end - first, 2 * inner)
    xc: Tensor  # silu(conv(x masked)) * mask, (batch, steps, inner)
    x_dbl: Tensor  # xc @ x_proj^T = (dt_low, B, C), (batch, steps, rank + 2 * d_state)
    delta: Tensor  # dt_low @ dt_proj^T, before bias and softplus, (batch, steps, inner)


class _MixerWeights:
    """The mixer's weights in kernel layout and dtype, and the projections recomputed for each segment."""

    def __init__(self, in_w, in_b, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, D, delta_bias, dtype):
        self.inner, self.n_state, self.rank = A.shape[0], A.shape[1], dt_proj_w.shape[1]
        self.in_w = None if in_w is None else in_w.detach().to(dtype)
        self.in_b = None if in_b is None else in_b.detach().to(dtype)
        self.conv_w_t = conv_w.detach().reshape(self.inner, -1).t().to(dtype).contiguous()  # (taps, inner)
        self.conv_b = _vector_or_zeros(conv_b, self.inner, dtype)
        self.x_proj_w = x_proj_w.detach().to(dtype)
        self.dt_proj_w = dt_proj_w.detach().to(dtype)
        self.out_w = out_w.detach().to(dtype)
        self.out_b = None if out_b is None else out_b.detach().to(dtype)
        self.A_t = A.detach().to(dtype).t().contiguous()
        self.D = _vector_or_zeros(D, self.inner, dtype)
        self.bias = _vector_or_zeros(delta_bias, self.inner, dtype)
        self.dtype = dtype

    def segment(self, x: Tensor, start: int, end: int, mask_np: np.ndarray, has_mask: bool) -> _Segment:
        first = max(0, start - (self.conv_w_t.shape[0] - 1))
        part = x[:, first:end]
        xz = part.contiguous() if self.in_w is None else F.linear(part, self.in_w, self.in_b)
        xc = torch.empty(x.shape[0], end - start, self.inner, dtype=self.dtype)
        kernels.conv_silu_forward(
            _np(xz), 0, first, _np(self.conv_w_t), _np(self.conv_b), mask_np, has_mask, start, _np(xc)
        )
        x_dbl = F.linear(xc, self.x_proj_w)
        delta = F.linear(x_dbl[..., : self.rank], self.dt_proj_w)
        return _Segment(first, xz, xc, x_dbl, delta)

    def scan_args(self, seg: _Segment, mask_np, has_mask, softplus, width) -> tuple:
        rank, n_state = self.rank, self.n_state
        return (
            _np(seg.xc), _np(seg.delta), _np(self.bias), _np(self.A_t), _np(seg.x_dbl), rank, rank + n_state, 1,
            _np(self.D), _np(seg.xz), self.inner, seg.first, True, mask_np, has_mask, softplus, CHUNK, width,
        )  # fmt: skip


class _MixerGradients:
    """The mixer's gradient accumulators, added to segment by segment. grad x is the only whole-sequence
    one; the per-batch partial sums (A, D, bias, conv) are reduced over the batch at the end."""

    def __init__(self, x: Tensor, weights: _MixerWeights, batch: int) -> None:
        inner, n_state, rank, dtype = weights.inner, weights.n_state, weights.rank, weights.dtype
        self.x = torch.zeros_like(x)
        self.in_w = None if weights.in_w is None else torch.zeros_like(weights.in_w)
        self.in_b = None if weights.in_b is None else torch.zeros_like(weights.in_b)
        self.state = torch.zeros(batch, n_state, inner, dtype=dtype)
        self.A = torch.zeros(batch, n_state, inner, dtype=dtype)
        self.D = torch.zeros(batch, inner, dtype=dtype)
        self.bias = torch.zeros(batch, inner, dtype=dtype)
        self.conv_w = torch.zeros(batch, weights.conv_w_t.shape[0], inner, dtype=dtype)
        self.conv_b = torch.zeros(batch, inner, dtype=dtype)
        self.out_w = torch.zeros_like(weights.out_w)
        self.dt_w = torch.zeros(inner, rank, dtype=dtype)
        self.x_proj_w = torch.zeros(rank + 2 * n_state, inner, dtype=dtype)

    def add_in_proj(self, grad_xz: Tensor, x: Tensor, in_w: Tensor | None, first: int, end: int) -> None:
        """Back through in_proj (weight ``in_w``) for steps [first, end); the first K - 1 rows only hold this
        segment's part of their gradient, the previous segment adds the rest."""
        if in_w is None:
            self.x[:, first:end] += grad_xz
            return
        flat = grad_xz.reshape(-1, grad_xz.shape[-1])
        self.x[:, first:end] += (flat @ in_w).reshape(*grad_xz.shape[:2], -1)
        self.in_w.addmm_(flat.t(), x[:, first:end].reshape(flat.shape[0], -1))
        if self.in_b is not None:
            self.in_b += flat.sum(0)


def mamba_mixer_fn(
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
    """The whole Mamba mixer, x (batch, length, d_model) -> (batch, length, d_model), in_proj included, so
    that not even xz is kept per token between forward and backward.

    ``mask`` (batch, length) is True on real events: padded positions feed zeros to the conv and leave
    the state unchanged (dt = 0, u = 0), so real positions see exactly the unpadded sequence.
    """
    return _MambaMixer.apply(
        x, in_proj_weight, in_proj_bias, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
        out_proj_weight, out_proj_bias, A, D, delta_bias, mask, delta_softplus,
    )  # fmt: skip


def mamba_inner_fn(
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
    """The Mamba mixer after in_proj: xz (batch, 2 * inner, length) -> (batch, length, d_model); it saves
    xz, since the caller keeps it anyway, and otherwise works as ``mamba_mixer_fn``."""
    return _MambaMixer.apply(
        xz.transpose(1, 2), None, None, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
        out_proj_weight, out_proj_bias, A, D, delta_bias, mask, delta_softplus,
    )  # fmt: skip
