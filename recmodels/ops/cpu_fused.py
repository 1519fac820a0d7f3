"""Compiled CPU backend: the fused Mamba mixer and selective scan (Numba).

Why fused: a plain-PyTorch scan writes the (batch, length, channels, d_state) state expansion to memory,
and on a CPU that memory traffic, not the arithmetic, decides the speed. Here the state lives in a small
per-task buffer, only its value every ``CHUNK`` steps is saved, and backward recomputes inside chunks.
``mix`` goes further for the whole mixer, in the spirit of mamba-ssm's fused inner function on a GPU: it
saves only the mixer's input, the weights and the chunk states, and recomputes in_proj, conv, SiLU,
x_proj and dt_proj in backward, a segment of the sequence at a time, so a layer's activation memory per
token is about its input, output and their gradients. A carried ``MixerState`` enters the kernels
directly (the conv reads the carried inputs as its prefix, the scan starts from the carried state), so
streaming and single steps are the same call; gradients do not flow into a carried state.

Kernels compute in float32 (bf16/fp16 inputs are upcast, results cast back); float64 inputs are computed
in float64 so that gradcheck can run. Scan layouts the kernels do not cover (constant B/C, complex A) go
to the plain path instead of failing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recmodels.ops import chunked  # the plain path for layouts the kernels do not cover
from recmodels.ops.mixer import MixerState, MixerWeights, next_conv_state, ssm_dtype

try:
    import numba

    from recmodels.ops import cpu_kernels as kernels
    from recmodels.ops import step_kernels
    from recmodels.ops.cpu_kernels import ConvOperands, ScanGradients, ScanOperands, match_torch_threads
except ImportError:  # numba missing or broken: the dispatcher falls back to ``chunked``
    numba = None
    kernels = step_kernels = None

CHUNK = 64  # steps between saved states: saved memory is channels * d_state / CHUNK floats per token
SEGMENT_TOKENS = 4096  # batch x steps per mixer segment: ~10 MB of float32 temporaries at d_inner 128
# (CHUNK + 1) x d_state x block recompute buffer of states: ~270 KB. The backward keeps a decay buffer of the
# same size beside it (~530 KB in all, about L2); sizing blocks for both (32 channels) measured no faster.
BACKWARD_BUFFER_FLOATS = 70000


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


def _absent(dtype: torch.dtype) -> np.ndarray:
    """The placeholder for an optional kernel array whose flag says it is absent."""
    return np.zeros((1, 1, 1), np.float64 if dtype == torch.float64 else np.float32)


def _blocking(batch: int, groups: int, per_group: int, n_state: int) -> tuple[int, int]:
    """(channels per block, blocks per group). A block is a multiple of 16 channels wide (one AVX-512
    register of float32; a ragged width leaves a scalar remainder loop that costs as much as the vector part), narrow
    enough for the backward's recomputed states to stay in L2, and there are enough tasks to keep every
    thread busy when batch * groups is small."""
    threads = numba.get_num_threads()
    lanes = 16
    max_width = max(lanes, BACKWARD_BUFFER_FLOATS // ((CHUNK + 1) * max(n_state, 1)) // lanes * lanes)
    blocks = max(math.ceil(per_group / max_width), math.ceil(2 * threads / (batch * groups)))
    width = math.ceil(math.ceil(per_group / max(1, blocks)) / lanes) * lanes
    return width, math.ceil(per_group / width)


# ---------------------------------------------------------------- selective_scan_fn


class _ScanInputs:
    """The kernel's view of selective_scan_fn's arguments: channel-last arrays in the compute dtype."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias):
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
        self.z = _channel_last(z, dtype) if z is not None else None
        self.A_t = A.detach().to(dtype).t().contiguous()
        self.D = _vector_or_zeros(D, self.channels, dtype)
        self.bias = _vector_or_zeros(delta_bias, self.channels, dtype)
        self.dtype = dtype
        self.width, self.blocks = _blocking(self.batch, self.groups, self.channels // self.groups, self.n_state)

    def operands(self, softplus: bool) -> ScanOperands:
        gn = self.groups * self.n_state
        mask, has_mask = _mask_array(None)
        return ScanOperands(
            u=_np(self.u), delta=_np(self.delta), bias=_np(self.bias), A_t=_np(self.A_t), bc=_np(self.bc),
            b_off=0, c_off=gn, groups=self.groups, D=_np(self.D),
            z=_absent(self.dtype) if self.z is None else _np(self.z), z_off=0, z_base=0, has_z=self.z is not None,
            mask=mask, has_mask=has_mask, apply_softplus=softplus, chunk=CHUNK, width=self.width,
        )  # fmt: skip


def _chunk_states(batch: int, length: int, channels: int, n_state: int, dtype) -> Tensor:
    """The (batch, chunks, d_state, channels) buffer of states saved every ``CHUNK`` steps."""
    return torch.empty(batch, max(1, math.ceil(length / CHUNK)), n_state, channels, dtype=dtype)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_last_state):
        inputs = _ScanInputs(u, delta, A, B, C, D, z, delta_bias)
        batch, length, channels, n_state, dtype = (
            inputs.batch, inputs.length, inputs.channels, inputs.n_state, inputs.dtype
        )  # fmt: skip
        out = torch.empty(batch, length, channels, dtype=dtype)
        chunk_states = _chunk_states(batch, length, channels, n_state, dtype)
        state = _kernel_state(initial_state, batch, n_state, channels, dtype)  # in: initial, out: final
        match_torch_threads()
        kernels.scan_forward(inputs.operands(delta_softplus), 0, _np(out), _np(chunk_states), _np(state))
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, chunk_states)
        ctx.delta_softplus = delta_softplus
        out = out.transpose(1, 2).to(u.dtype)
        if not return_last_state:
            return out
        last_state = state.transpose(1, 2)
        ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, grad_out, *_):
        u, delta, A, B, C, D, z, delta_bias, initial_state, chunk_states = ctx.saved_tensors
        inputs = _ScanInputs(u, delta, A, B, C, D, z, delta_bias)
        batch, length, channels, n_state = inputs.batch, inputs.length, inputs.channels, inputs.n_state
        dtype, groups = inputs.dtype, inputs.groups
        grad_u = torch.empty(batch, length, channels, dtype=dtype)
        grads = ScanGradients(
            grad_u=_np(grad_u),
            grad_delta=np.empty_like(_np(grad_u)),
            grad_z=_np(torch.empty_like(grad_u)) if z is not None else _absent(dtype),
            grad_z_off=0,
            grad_bc=np.empty((inputs.blocks, batch, length, 2 * groups * n_state), _np(grad_u).dtype),
            grad_A=np.zeros((batch, n_state, channels), _np(grad_u).dtype),
            grad_D=np.zeros((batch, channels), _np(grad_u).dtype),
            grad_bias=np.zeros((batch, channels), _np(grad_u).dtype),
            grad_state=np.zeros((batch, n_state, channels), _np(grad_u).dtype),
            out=_absent(dtype),
            need_out=False,
        )
        match_torch_threads()
        grad_out = _channel_last(grad_out, dtype)
        kernels.scan_backward(inputs.operands(ctx.delta_softplus), 0, _np(chunk_states), _np(grad_out), grads)
        grad_bc = torch.from_numpy(grads.grad_bc).sum(0).transpose(1, 2)  # (batch, 2 * groups * n_state, length)
        half = groups * n_state

        def back(array: np.ndarray, like: Tensor | None, *, summed: bool = False) -> Tensor | None:
            """A kernel gradient in its input's layout and dtype (None for an absent input): channel-last
            arrays are transposed back, per-batch partial sums summed."""
            if like is None:
                return None
            grad = torch.from_numpy(array)
            grad = grad.sum(0) if summed else grad.transpose(1, 2)
            return grad.reshape(like.shape).to(like.dtype)

        return (
            back(grads.grad_u, u),
            back(grads.grad_delta, delta),
            torch.from_numpy(grads.grad_A).sum(0).t().to(A.dtype),
            grad_bc[:, :half].reshape(B.shape).to(B.dtype),
            grad_bc[:, half:].reshape(C.shape).to(C.dtype),
            back(grads.grad_D, D, summed=True),
            back(grads.grad_z, z),
            back(grads.grad_bias, delta_bias, summed=True),
            back(grads.grad_state, initial_state),
            None,
            None,
        )


def _kernel_state(initial: Tensor | None, batch: int, n_state: int, channels: int, dtype) -> Tensor:
    """The kernels' running state (batch, d_state, channels): a copy of the initial state (the kernels
    write to it, and a caller's state must stay as it was), or zeros."""
    state = torch.empty(batch, n_state, channels, dtype=dtype)
    return state.zero_() if initial is None else state.copy_(initial.detach().transpose(1, 2))


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
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False, return_last_state: bool = False,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """mamba-ssm's ``selective_scan_fn`` on CPU, from ``initial_state`` (batch, channels, d_state) or zeros;
    the output is a (batch, channels, length) view of a channel-last buffer, the last state (batch,
    channels, d_state) is in the compute dtype."""
    if not _kernel_supports(u, A, B, C):
        return chunked.selective_scan_fn(
            u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
            return_last_state=return_last_state, initial_state=initial_state,
        )  # fmt: skip
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_last_state)


# ---------------------------------------------------------------- mix


def _segments(batch: int, length: int) -> list[tuple[int, int]]:
    """Time ranges [start, end) of about ``SEGMENT_TOKENS`` tokens (batch x steps), whole chunks each, that
    the mixer computes one after the other: its per-token temporaries then take a segment's memory, not the
    sequence's, while each kernel call still has a full batch of parallel work."""
    steps = max(CHUNK, SEGMENT_TOKENS // max(batch, 1) // CHUNK * CHUNK)
    return [(start, min(start + steps, length)) for start in range(0, max(length, 1), steps)]


class _FusedMixer(torch.autograd.Function):
    """in_proj -> conv -> SiLU -> x_proj -> dt_proj -> scan (D, z gate) -> out_proj, from x (batch, length,
    d_model), continuing from a carried conv prefix and SSM state when given.

    It saves x, the weights and the scan state every ``CHUNK`` steps, nothing per token beyond x: both
    passes walk the sequence in segments (forward first to last, carrying the state; backward last to
    first, carrying the state's gradient) and recompute xz, conv, x_proj and dt_proj for each, so only x,
    the output and their gradients are whole-sequence tensors.
    """

    @staticmethod
    def forward(ctx, x, mask, conv_state, ssm_state, *weight_tensors):
        weights = MixerWeights(*weight_tensors)
        x_in, kw, mask_np, has_mask = _prepare_pass(x, weights, mask, conv_state)
        dtype = kw.dtype
        batch, length, _ = x.shape
        width, _ = _blocking(batch, 1, kw.inner, kw.n_state)
        out = torch.empty(batch, length, kw.out_w.shape[0], dtype=dtype)
        chunk_states = _chunk_states(batch, length, kw.inner, kw.n_state, dtype)
        state = _kernel_state(ssm_state, batch, kw.n_state, kw.inner, dtype)
        for start, end in _segments(batch, length):
            seg = kw.segment(x_in, start, end, mask_np, has_mask)
            y = torch.empty(batch, end - start, kw.inner, dtype=dtype)
            kernels.scan_forward(
                kw.scan_operands(seg, mask_np, has_mask, width), start, _np(y), _np(chunk_states), _np(state)
            )
            out[:, start:end] = F.linear(y, kw.out_w, kw.out_b)
            del seg, y  # before the next segment's are made
        ctx.save_for_backward(x, mask, conv_state, chunk_states, *weight_tensors)
        last_state = state.transpose(1, 2)
        ctx.mark_non_differentiable(last_state)
        return out.to(x.dtype), last_state

    @staticmethod
    def backward(ctx, grad_out, _grad_last_state):
        x, mask, conv_state, states, *weight_tensors = ctx.saved_tensors
        weights = MixerWeights(*weight_tensors)
        x_in, kw, mask_np, has_mask = _prepare_pass(x, weights, mask, conv_state)
        dtype, inner, n_state = kw.dtype, kw.inner, kw.n_state
        batch, length, _ = x.shape
        grad_out = grad_out.to(dtype)  # (batch, length, d_model)
        width, blocks = _blocking(batch, 1, inner, n_state)
        grads = _MixerGradients(x_in, kw, batch)
        for start, end in reversed(_segments(batch, length)):
            seg = kw.segment(x_in, start, end, mask_np, has_mask)
            tokens = batch * (end - start)
            grad_seg = grad_out[:, start:end].reshape(tokens, -1)  # (tokens, d_model)
            grad_y = (grad_seg @ kw.out_w).reshape(batch, end - start, inner)  # becomes y in place
            grad_u = torch.empty_like(grad_y)
            grad_bc = torch.empty(blocks, batch, end - start, 2 * n_state, dtype=dtype)
            grad_xz = torch.zeros_like(seg.xz)  # the conv adds to the x half, the scan writes the z half
            scan_grads = ScanGradients(
                grad_u=_np(grad_u), grad_delta=_np(seg.delta), grad_z=_np(grad_xz), grad_z_off=inner,
                grad_bc=_np(grad_bc), grad_A=_np(grads.A), grad_D=_np(grads.D), grad_bias=_np(grads.bias),
                grad_state=_np(grads.state), out=_np(grad_y), need_out=True,
            )  # fmt: skip
            operands = kw.scan_operands(seg, mask_np, has_mask, width)
            kernels.scan_backward(operands, start, _np(states), _np(grad_y), scan_grads)
            y, grad_delta = grad_y.reshape(tokens, inner), seg.delta.reshape(tokens, inner)  # overwritten
            grads.out_w.addmm_(grad_seg.t(), y)
            grads.add_projections(kw, seg, grad_delta, grad_bc.sum(0).reshape(tokens, -1), grad_u.view(tokens, inner))
            kernels.conv_silu_backward(
                kw.conv_operands(seg, mask_np, has_mask), start, _np(grad_u), _np(grad_xz), 0,
                _np(grads.conv_w), _np(grads.conv_b),
            )  # fmt: skip
            grads.add_in_proj(grad_xz, x_in, kw.in_w, seg.first, end)
            del seg, grad_seg, grad_y, grad_u, grad_bc, grad_xz, y, grad_delta  # as in forward

        def cast(grad: Tensor | None, like: Tensor | None) -> Tensor | None:
            return None if like is None or grad is None else grad.to(like.dtype)

        weight_grads = MixerWeights(
            in_proj_weight=cast(grads.in_w, weights.in_proj_weight),
            in_proj_bias=cast(grads.in_b, weights.in_proj_bias),
            conv_weight=cast(grads.conv_w.sum(0).t().reshape(weights.conv_weight.shape), weights.conv_weight),
            conv_bias=cast(grads.conv_b.sum(0), weights.conv_bias),
            x_proj_weight=cast(grads.x_proj_w, weights.x_proj_weight),
            dt_proj_weight=cast(grads.dt_w, weights.dt_proj_weight),
            dt_bias=cast(grads.bias.sum(0), weights.dt_bias),
            A=cast(grads.A.sum(0).t(), weights.A),
            D=cast(grads.D.sum(0), weights.D),
            out_proj_weight=cast(grads.out_w, weights.out_proj_weight),
            out_proj_bias=None
            if weights.out_proj_bias is None
            else grad_out.sum((0, 1)).to(weights.out_proj_bias.dtype),
            B=cast(grads.bc[:n_state], weights.B),
            C=cast(grads.bc[n_state:], weights.C),
        )
        return grads.x.to(x.dtype), None, None, None, *weight_grads


def _prepare_pass(x: Tensor, weights: MixerWeights, mask: Tensor | None, conv_state: Tensor | None):
    """What both passes of the mixer start from: x and the weights (kernel layout) in the compute dtype,
    the mask as the kernels read it, and Numba's thread count matched to torch's."""
    dtype = _compute_dtype(x)
    match_torch_threads()
    mask_np, has_mask = _mask_array(mask)
    return x.detach().to(dtype), _KernelWeights(weights, conv_state, dtype), mask_np, has_mask


class _Segment(NamedTuple):
    """One segment's recomputed activations. xz holds steps [first, end), first = start - (K - 1) or 0, so
    the conv has its window; the others hold steps [start, end)."""

    first: int
    xz: Tensor  # (batch, end - first, 2 * inner)
    xc: Tensor  # silu(conv(x masked)) * mask, (batch, steps, inner)
    x_dbl: Tensor  # xc @ x_proj^T = (dt_low, B, C), (batch, steps, rank + 2 * d_state)
    delta: Tensor  # dt_low @ dt_proj^T, before bias and softplus, (batch, steps, inner)


class _KernelWeights:
    """The mixer's weights in kernel layout and dtype, the carried conv inputs, and the projections
    recomputed for each segment."""

    def __init__(self, w: MixerWeights, conv_state: Tensor | None, dtype: torch.dtype) -> None:
        self.inner, self.n_state, self.rank = w.d_inner, w.d_state, w.dt_rank
        self.in_w = w.in_proj_weight.detach().to(dtype)
        self.in_b = None if w.in_proj_bias is None else w.in_proj_bias.detach().to(dtype)
        self.conv_w_t = w.conv_weight.detach().reshape(self.inner, -1).t().to(dtype).contiguous()  # (taps, inner)
        self.conv_b = _vector_or_zeros(w.conv_bias, self.inner, dtype)
        self.selective = w.selective
        self.x_proj_w = w.x_proj_weight.detach().to(dtype) if w.selective else None
        self.dt_proj_w = w.dt_proj_weight.detach().to(dtype) if w.selective else None
        self.bc = None if w.selective else torch.cat([w.B, w.C]).detach().to(dtype)  # constant B, C
        self.out_w = w.out_proj_weight.detach().to(dtype)
        self.out_b = None if w.out_proj_bias is None else w.out_proj_bias.detach().to(dtype)
        self.A_t = w.A.detach().to(dtype).t().contiguous()
        self.D = _vector_or_zeros(w.D, self.inner, dtype)
        self.bias = _vector_or_zeros(w.dt_bias, self.inner, dtype)
        self.prefix = None if conv_state is None else _channel_last(conv_state, dtype)  # (batch, K - 1, inner)
        self.dtype = dtype

    def conv_operands(self, seg: _Segment, mask_np: np.ndarray, has_mask: bool) -> ConvOperands:
        return ConvOperands(
            x=_np(seg.xz), x_off=0, x_base=seg.first, weight_t=_np(self.conv_w_t), bias=_np(self.conv_b),
            mask=mask_np, has_mask=has_mask, prefix=_absent(self.dtype) if self.prefix is None else _np(self.prefix),
            has_prefix=self.prefix is not None,
        )  # fmt: skip

    def segment(self, x: Tensor, start: int, end: int, mask_np: np.ndarray, has_mask: bool) -> _Segment:
        first = max(0, start - (self.conv_w_t.shape[0] - 1))
        xz = F.linear(x[:, first:end], self.in_w, self.in_b)
        seg = _Segment(first, xz, torch.empty(x.shape[0], end - start, self.inner, dtype=self.dtype), None, None)
        kernels.conv_silu_forward(self.conv_operands(seg, mask_np, has_mask), start, _np(seg.xc))
        if not self.selective:  # delta is the bias alone (the kernel adds it), B and C the constants
            bc = self.bc.expand(x.shape[0], end - start, -1).contiguous()
            return seg._replace(x_dbl=bc, delta=torch.zeros(x.shape[0], end - start, self.inner, dtype=self.dtype))
        x_dbl = F.linear(seg.xc, self.x_proj_w)
        return seg._replace(x_dbl=x_dbl, delta=F.linear(x_dbl[..., : self.rank], self.dt_proj_w))

    def scan_operands(self, seg: _Segment, mask_np: np.ndarray, has_mask: bool, width: int) -> ScanOperands:
        """The scan reads u = the conv output, B and C from x_dbl, and the gate z from xz's second half."""
        rank, n_state = self.rank, self.n_state
        return ScanOperands(
            u=_np(seg.xc), delta=_np(seg.delta), bias=_np(self.bias), A_t=_np(self.A_t), bc=_np(seg.x_dbl),
            b_off=rank, c_off=rank + n_state, groups=1, D=_np(self.D), z=_np(seg.xz), z_off=self.inner,
            z_base=seg.first, has_z=True, mask=mask_np, has_mask=has_mask, apply_softplus=True, chunk=CHUNK,
            width=width,
        )  # fmt: skip


class _MixerGradients:
    """The mixer's gradient accumulators, added to segment by segment. grad x is the only whole-sequence
    one; the per-batch partial sums (A, D, bias, conv) are reduced over the batch at the end."""

    def __init__(self, x: Tensor, weights: _KernelWeights, batch: int) -> None:
        inner, n_state, rank, dtype = weights.inner, weights.n_state, weights.rank, weights.dtype
        self.x = torch.zeros_like(x)
        self.in_w = torch.zeros_like(weights.in_w)
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
        self.bc = torch.zeros(2 * n_state, dtype=dtype)

    def add_projections(self, kw: _KernelWeights, seg: _Segment, grad_delta: Tensor, grad_bc: Tensor, grad_u: Tensor):
        """Back through what feeds the scan delta, B and C: x_proj and dt_proj from u when selective (adding
        to grad u), the constants otherwise. grad_delta (tokens, inner), grad_bc (tokens, 2 * d_state)."""
        if not kw.selective:
            self.bc += grad_bc.sum(0)
            return
        tokens, rank = grad_delta.shape[0], kw.rank
        self.dt_w.addmm_(grad_delta.t(), seg.x_dbl[..., :rank].reshape(tokens, rank))
        grad_x_dbl = torch.cat([grad_delta @ kw.dt_proj_w, grad_bc], dim=-1)
        self.x_proj_w.addmm_(grad_x_dbl.t(), seg.xc.reshape(tokens, kw.inner))
        grad_u.addmm_(grad_x_dbl, kw.x_proj_w)

    def add_in_proj(self, grad_xz: Tensor, x: Tensor, in_w: Tensor, first: int, end: int) -> None:
        """Back through in_proj (weight ``in_w``) for steps [first, end); the first K - 1 rows only hold this
        segment's part of their gradient, the previous segment adds the rest."""
        flat = grad_xz.reshape(-1, grad_xz.shape[-1])
        self.x[:, first:end] += (flat @ in_w).reshape(*grad_xz.shape[:2], -1)
        self.in_w.addmm_(flat.t(), x[:, first:end].reshape(flat.shape[0], -1))
        if self.in_b is not None:
            self.in_b += flat.sum(0)


def mix(
    x: Tensor, weights: MixerWeights, mask: Tensor | None = None, state: MixerState | None = None
) -> tuple[Tensor, MixerState]:
    """The Mamba mixer (``mixer``'s contract) in one fused pass: x (batch, length, d_model) -> (batch,
    length, d_model), so that not even xz is kept per token between forward and backward.

    ``mask`` (batch, length) is True on real events: padded positions feed zeros to the conv and leave
    the state unchanged (dt = 0, u = 0), so real positions see exactly the unpadded sequence.
    """
    one_step = state is not None and x.shape[1] == 1 and weights.selective
    if one_step and not _needs_grad(x, weights) and x.dtype == torch.float32:
        return _single_step(x, weights, mask, state)
    conv_state, ssm_state = (None, None) if state is None else (state.conv, state.ssm)
    out, ssm = _FusedMixer.apply(x, mask, conv_state, ssm_state, *weights)
    with torch.no_grad():  # the carried conv inputs: in_proj's x half of the last d_conv - 1 steps
        tail = x[:, max(0, x.shape[1] - (weights.d_conv - 1)) :]
        inputs = F.linear(
            tail, weights.in_proj_weight[: weights.d_inner], _first(weights.in_proj_bias, weights.d_inner)
        )
        if mask is not None:
            inputs = inputs * mask[:, mask.shape[1] - tail.shape[1] :, None].to(inputs.dtype)
    return out, MixerState(next_conv_state(state, weights, inputs.transpose(1, 2), mask), ssm_dtype(ssm))


def _first(bias: Tensor | None, size: int) -> Tensor | None:
    return None if bias is None else bias[:size]


def _needs_grad(x: Tensor, weights: MixerWeights) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *weights))


@torch.no_grad()
def _single_step(x: Tensor, weights: MixerWeights, mask: Tensor | None, state: MixerState) -> tuple[Tensor, MixerState]:
    """``mix`` of length 1 from a carried state, the serving kernels' step (``step_kernels``):
    projections as matrix products, the conv window and the SSM state advanced in compiled loops, only for
    the rows with an event; the others keep their state, and their output is out_proj's bias (no event)."""
    w = weights
    batch, d_model = x.shape[0], w.out_proj_weight.shape[0]
    conv = state.conv.to(torch.float32, copy=True).contiguous()
    ssm = state.ssm.to(torch.float32, copy=True).contiguous()
    rows = torch.arange(batch) if mask is None else mask[:, 0].nonzero()[:, 0]
    out = x.new_zeros(batch, d_model) + (0.0 if w.out_proj_bias is None else w.out_proj_bias.float())
    if len(rows):
        every_row = len(rows) == batch
        conv_part, ssm_part = (conv, ssm) if every_row else (conv[rows], ssm[rows])
        xz = F.linear(x[rows, 0], w.in_proj_weight.float(), _float_or_none(w.in_proj_bias))  # (rows, 2E)
        u = torch.empty(len(rows), w.d_inner)
        conv_w = w.conv_weight[:, 0, :].float().contiguous()
        conv_b = _vector_or_zeros(w.conv_bias, w.d_inner, torch.float32)
        match_torch_threads()
        step_kernels.conv_silu_step_rows(
            _np(xz), _np(conv_w), _np(conv_b), _np(conv_part.view(len(rows), -1)), 0, _np(u)
        )
        x_dbl = F.linear(u, w.x_proj_weight.float())  # (rows, rank + 2N)
        dt = F.linear(x_dbl[:, : w.dt_rank], w.dt_proj_weight.float(), w.dt_bias.float())  # before softplus
        y = torch.empty_like(u)
        step_kernels.state_step_rows(
            _np(ssm_part.view(len(rows), -1)), 0, _np(u), _np(dt), _np(x_dbl), w.dt_rank,
            _np(w.A.float().contiguous()), _np(w.D.float().contiguous()), _np(xz), _np(y),
        )  # fmt: skip
        out[rows] = F.linear(y, w.out_proj_weight.float(), _float_or_none(w.out_proj_bias))
        if not every_row:
            conv[rows], ssm[rows] = conv_part, ssm_part
    return out[:, None].to(x.dtype), MixerState(conv.to(state.conv.dtype), ssm)


def _float_or_none(bias: Tensor | None) -> Tensor | None:
    return None if bias is None else bias.float()
