"""Numba kernels behind the ``cpu_fused`` backend: selective scan forward/backward and the causal conv.

Layout is channel-last everywhere, ``(batch, length, channels)``: that is how ``in_proj``, ``x_proj`` and
``out_proj`` produce and consume activations, so the mixer needs no transposes, and a step of the
recurrence touches a contiguous run of channels that the compiler turns into SIMD lanes. One task is one
(batch, group of B/C, block of channels); tasks run in parallel with ``prange``.

Memory: the forward pass keeps the state (d_state x block) in a small local buffer and writes only the
state at the start of every chunk of ``chunk`` steps. The backward pass recomputes each chunk's states
from that snapshot into a (chunk + 1, d_state, block) buffer, with each step's decays exp(dt A) into a
(chunk, d_state, block) one beside it (about L2's size together), then runs the reverse recurrence from
them. No (batch, length, channels, d_state) tensor ever exists.

Kernels are generic over float32 and float64 (tests use float64 for gradcheck); the float32 versions use
branch-free exp/softplus that LLVM can vectorize (no SVML is assumed), the float64 versions libm's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

# Reassociation/contraction let LLVM vectorize reductions and fuse multiply-adds; no 'nnan'/'ninf', so
# infinities and NaNs still propagate as IEEE says.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def compiled(**options):
    """``njit`` with an on-disk cache when a cache location is writable, without one otherwise.

    Numba caches next to this file, or under ``NUMBA_CACHE_DIR`` / the user cache directory when the
    package is installed read-only; if none is writable it refuses ``cache=True`` at decoration time, and
    we then compile per process instead of failing the import.
    """

    def decorate(function):
        try:
            return numba.njit(cache=True, error_model="numpy", fastmath=FASTMATH, **options)(function)
        except RuntimeError:
            return numba.njit(cache=False, error_model="numpy", fastmath=FASTMATH, **options)(function)

    return decorate


def match_torch_threads() -> None:
    """Use as many Numba threads as torch does (a caller's torch.set_num_threads applies to both)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


# ---------------------------------------------------------------- kernel arguments, by name


class ScanOperands(NamedTuple):
    """What ``scan_forward`` and ``scan_backward`` read. Segment arrays are indexed by local step i = t -
    t_base, sequence arrays (mask) by t; flags say whether an optional array is real or a placeholder."""

    u: np.ndarray  # (batch, steps, channels)
    delta: np.ndarray  # (batch, steps, channels), before bias and softplus
    bias: np.ndarray  # (channels,), added to delta
    A_t: np.ndarray  # (d_state, channels)
    bc: np.ndarray  # (batch, steps, *): B of group g at b_off + g * d_state, C at c_off + g * d_state
    b_off: int
    c_off: int
    groups: int
    D: np.ndarray  # (channels,)
    z: np.ndarray  # step t in row t - z_base, channels at z_off (the mixer passes xz, which starts early)
    z_off: int
    z_base: int
    has_z: bool
    mask: np.ndarray  # (batch, length) uint8, 0 = padding: dt and u zeroed, the state passes unchanged
    has_mask: bool
    apply_softplus: bool
    chunk: int  # steps between saved states
    width: int  # channels per parallel task


class ScanGradients(NamedTuple):
    """What ``scan_backward`` writes or adds to (its docstring says which)."""

    grad_u: np.ndarray
    grad_delta: np.ndarray  # may be ``ScanOperands.delta`` itself (overwritten in place)
    grad_z: np.ndarray  # rows as z's, channels at grad_z_off
    grad_z_off: int
    grad_bc: np.ndarray  # (blocks, batch, steps, 2 * groups * d_state)
    grad_A: np.ndarray  # (batch, d_state, channels)
    grad_D: np.ndarray  # (batch, channels)
    grad_bias: np.ndarray  # (batch, channels)
    grad_state: np.ndarray  # (batch, d_state, channels)
    out: np.ndarray  # the recomputed forward output when need_out (may be grad_out itself)
    need_out: bool


class ConvOperands(NamedTuple):
    """What the causal conv kernels read: x holds step s in row s - x_base, channels at x_off; steps
    before the sequence read ``prefix`` (batch, K - 1, channels) when has_prefix (a carried conv state),
    zeros otherwise."""

    x: np.ndarray
    x_off: int
    x_base: int
    weight_t: np.ndarray  # (K, channels)
    bias: np.ndarray  # (channels,)
    mask: np.ndarray  # (batch, length) uint8
    has_mask: bool
    prefix: np.ndarray
    has_prefix: bool


# ---------------------------------------------------------------- branch-free elementary functions


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    """Reinterpret an int32 bit pattern as float32 (builds 2**k for exp without a libm call)."""
    signature = types.float32(types.int32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


def _exp_float32(x):
    # exp(x) = 2**k * exp(r), r = x - k ln2 in [-ln2/2, ln2/2]; degree-7 Taylor: relative error ~1e-7.
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - k * np.float32(0.693145751953125) - k * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * _int32_bits_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))


def fast_exp(x):
    """exp(x); float32 inputs get a vectorizable polynomial, float64 inputs libm."""
    return math.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        return _exp_float32
    return lambda x: math.exp(x)


def _softplus_float32(x):
    # softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log1p(e) = 2 atanh(s), s = e / (2 + e)
    # <= 1/3, so the odd series to s**13 is exact to ~1e-8 and never forms 1 + e (no cancellation).
    e = fast_exp(-abs(x))
    s = e / (np.float32(2.0) + e)
    s2 = s * s
    p = np.float32(1.0 / 13.0)
    p = p * s2 + np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + np.float32(1.0)
    return max(x, np.float32(0.0)) + np.float32(2.0) * s * p


def softplus(x):
    """log(1 + exp(x)), overflow-free."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@overload(softplus, inline="always")
def _softplus_overload(x):
    if x == types.float32:
        return _softplus_float32
    return lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + fast_exp(-x))


# ---------------------------------------------------------------- selective scan


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _task_bounds(task, groups, blocks, per_group, width):
    """(batch, group, first channel, end channel) of one parallel task."""
    b = task // (groups * blocks)
    rest = task % (groups * blocks)
    g = rest // blocks
    c0 = g * per_group + (rest % blocks) * width
    c1 = min(c0 + width, (g + 1) * per_group)
    return b, g, c0, c1


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _step_inputs(u_row, delta_row, bias, m, apply_softplus, dt, dtu):
    """dt = softplus(delta + bias) * m and dt * u * m for one step of a channel block (m: 0 at padding)."""
    w = dt.shape[0]
    if apply_softplus:
        for c in range(w):
            dt[c] = softplus(delta_row[c] + bias[c]) * m
    else:
        for c in range(w):
            dt[c] = (delta_row[c] + bias[c]) * m
    for c in range(w):
        dtu[c] = dt[c] * u_row[c] * m


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _keep(mask, has_mask, b, t):
    """1 on a real event, 0 on padding."""
    if has_mask and mask[b, t] == 0:
        return np.float32(0.0)
    return np.float32(1.0)


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _advance(prev, cur, decay, dt, dtu, A_blk, bc_row, b_base, c_base, D_blk, u_row, m, y):
    """One step of the recurrence for a channel block: cur = exp(dt A) prev + dt u B (``cur`` may be
    ``prev``, updated in place), y = C cur + D u. prev, cur (d_state, width); B and C are read from
    ``bc_row`` at b_base and c_base. Each element's decay exp(dt A) is left in ``decay`` (d_state, width),
    where the backward pass reads it instead of computing the exponential a second time."""
    w = y.shape[0]
    for c in range(w):
        y[c] = D_blk[c] * u_row[c] * m
    for n in range(prev.shape[0]):
        bn = bc_row[b_base + n]
        cn = bc_row[c_base + n]
        p = prev[n]
        q = cur[n]
        d = decay[n]
        for c in range(w):
            e = fast_exp(dt[c] * A_blk[n, c])
            d[c] = e
            hv = e * p[c] + dtu[c] * bn
            q[c] = hv
            y[c] += cn * hv


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _gate(y, z, has_z, b, row, z_off, out_row):
    """out = y * silu(z) (or y without a gate); z's channels start at z_off of its row."""
    w = y.shape[0]
    if has_z:
        z_row = z[b, row, z_off : z_off + w]
        for c in range(w):
            out_row[c] = y[c] * z_row[c] * sigmoid(z_row[c])
    else:
        for c in range(w):
            out_row[c] = y[c]


# Inner loops index only with their own loop variable (rows are sliced out first): an index such as
# ``c0 + c`` cannot be proven non-negative, Numba then emits a wraparound select for it and LLVM gives up
# vectorizing the loop (measured: 2.0 vs 0.3 ns per state element).


@compiled(parallel=True)
def scan_forward(ops, t_base, out, chunk_states, state):
    """out = (C.h + D u) * silu(z) for the segment of steps starting at ``t_base``, from the state in
    ``state`` (batch, d_state, channels), which is left holding the state after the segment;
    chunk_states[b, k] = state before step k * chunk (k counted from the sequence start).

    ``ops`` is a ``ScanOperands`` (its docstring has the layouts); out is (batch, steps, channels).
    ``t_base`` is a multiple of chunk.
    """
    u, delta, bias, A_t, bc, D, z, mask = ops.u, ops.delta, ops.bias, ops.A_t, ops.bc, ops.D, ops.z, ops.mask
    b_off, c_off, groups, z_off, z_base = ops.b_off, ops.c_off, ops.groups, ops.z_off, ops.z_base
    has_z, has_mask, apply_softplus, chunk, width = ops.has_z, ops.has_mask, ops.apply_softplus, ops.chunk, ops.width
    batch, steps, channels = u.shape
    n_state = A_t.shape[0]
    per_group = channels // groups
    blocks = (per_group + width - 1) // width  # channel blocks per group
    for task in prange(batch * groups * blocks):
        b, g, c0, c1 = _task_bounds(task, groups, blocks, per_group, width)
        w = c1 - c0
        A_blk = np.ascontiguousarray(A_t[:, c0:c1])
        D_blk = D[c0:c1].copy()
        bias_blk = bias[c0:c1].copy()
        h = np.ascontiguousarray(state[b, :, c0:c1])
        decay = np.empty((n_state, w), u.dtype)  # the forward pass has no use for it: overwritten per step
        dt = np.empty(w, u.dtype)
        dtu = np.empty(w, u.dtype)
        y = np.empty(w, u.dtype)
        for i in range(steps):
            t = t_base + i
            if i % chunk == 0:
                chunk_states[b, t // chunk, :, c0:c1] = h
            m = _keep(mask, has_mask, b, t)
            u_row = u[b, i, c0:c1]
            _step_inputs(u_row, delta[b, i, c0:c1], bias_blk, m, apply_softplus, dt, dtu)
            bc_row = bc[b, i]
            _advance(h, h, decay, dt, dtu, A_blk, bc_row, b_off + g * n_state, c_off + g * n_state, D_blk, u_row, m, y)
            _gate(y, z, has_z, b, t - z_base, z_off + c0, out[b, i, c0:c1])
        state[b, :, c0:c1] = h


@compiled(parallel=True)
def scan_backward(ops, t_base, chunk_states, grad_out, grads):
    """Reverse recurrence over the segment starting at ``t_base``, chunk by chunk from the saved chunk
    states; same argument layout as forward (segment arrays indexed by local step, sequence arrays by t).

    Writes grad_u, grad_delta (before softplus), per-block partial sums grad_bc (blocks, batch, steps,
    2 * groups * d_state) [B then C] for the segment, and grad_z (rows as z's, at ``grad_z_off``);
    adds to the per-batch partial sums grad_A (batch, d_state, channels), grad_D and grad_bias (batch,
    channels). ``grad_state`` (batch, d_state, channels) holds the gradient of the state after the
    segment on entry (zeros for the last one) and before it on return, so segments chain from last to
    first. If ``need_out``, the recomputed forward output goes into ``out`` (the mixer's out_proj needs it
    for its weight gradient). ``grad_delta`` may be ``delta`` and ``out`` may be ``grad_out`` (overwritten
    in place, to save memory): each element is read before it is written, and chunks run last to first.
    """
    u, delta, bias, A_t, bc, D, z, mask = ops.u, ops.delta, ops.bias, ops.A_t, ops.bc, ops.D, ops.z, ops.mask
    b_off, c_off, groups, z_off, z_base = ops.b_off, ops.c_off, ops.groups, ops.z_off, ops.z_base
    has_z, has_mask, apply_softplus, chunk, width = ops.has_z, ops.has_mask, ops.apply_softplus, ops.chunk, ops.width
    grad_u, grad_delta, grad_z, grad_z_off, grad_bc = (
        grads.grad_u, grads.grad_delta, grads.grad_z, grads.grad_z_off, grads.grad_bc
    )  # fmt: skip
    grad_A, grad_D, grad_bias, grad_state = grads.grad_A, grads.grad_D, grads.grad_bias, grads.grad_state
    out, need_out = grads.out, grads.need_out
    batch, steps_total, channels = u.shape
    n_state = A_t.shape[0]
    per_group = channels // groups
    blocks = (per_group + width - 1) // width
    n_chunks = (steps_total + chunk - 1) // chunk
    first_chunk = t_base // chunk
    bc_half = groups * n_state
    for task in prange(batch * groups * blocks):
        b, g, c0, c1 = _task_bounds(task, groups, blocks, per_group, width)
        j = task % blocks
        w = c1 - c0
        A_blk = np.ascontiguousarray(A_t[:, c0:c1])
        D_blk = D[c0:c1].copy()
        bias_blk = bias[c0:c1].copy()
        states = np.empty((chunk + 1, n_state, w), u.dtype)
        decays = np.empty((chunk, n_state, w), u.dtype)
        dts = np.empty((chunk, w), u.dtype)
        dyb = np.empty((chunk, w), u.dtype)
        dtu = np.empty(w, u.dtype)
        y = np.empty(w, u.dtype)
        dh = np.ascontiguousarray(grad_state[b, :, c0:c1])
        acc_A = np.ascontiguousarray(grad_A[b, :, c0:c1])
        acc_D = grad_D[b, c0:c1].copy()
        acc_bias = grad_bias[b, c0:c1].copy()
        dx = np.empty(w, u.dtype)
        ddt = np.empty(w, u.dtype)
        for k in range(n_chunks - 1, -1, -1):
            i0 = k * chunk
            steps = min(chunk, steps_total - i0)
            states[0] = chunk_states[b, first_chunk + k, :, c0:c1]
            # Recompute this chunk's states (and the gate's inputs) forward.
            for i in range(steps):
                li = i0 + i
                t = t_base + li
                m = _keep(mask, has_mask, b, t)
                dt = dts[i]
                u_row = u[b, li, c0:c1]
                _step_inputs(u_row, delta[b, li, c0:c1], bias_blk, m, apply_softplus, dt, dtu)
                bc_row = bc[b, li]
                _advance(states[i], states[i + 1], decays[i], dt, dtu, A_blk, bc_row, b_off + g * n_state,
                         c_off + g * n_state, D_blk, u_row, m, y)  # fmt: skip
                go_row = grad_out[b, li, c0:c1]
                dy = dyb[i]
                if has_z:
                    z_row = z[b, t - z_base, z_off + c0 : z_off + c1]
                    gz_row = grad_z[b, t - z_base, grad_z_off + c0 : grad_z_off + c1]
                    for c in range(w):
                        zv = z_row[c]
                        sg = sigmoid(zv)
                        go = go_row[c]
                        dy[c] = go * zv * sg
                        gz_row[c] = go * y[c] * sg * (np.float32(1.0) + zv * (np.float32(1.0) - sg))
                else:
                    for c in range(w):
                        dy[c] = go_row[c]
                if need_out:  # after dy: ``out`` may be grad_out itself
                    _gate(y, z, has_z, b, t - z_base, z_off + c0, out[b, li, c0:c1])
            # Reverse through the chunk.
            for i in range(steps - 1, -1, -1):
                li = i0 + i
                m = _keep(mask, has_mask, b, t_base + li)
                dt = dts[i]
                dy = dyb[i]
                u_row = u[b, li, c0:c1]
                for c in range(w):
                    dx[c] = 0.0
                    ddt[c] = 0.0
                    dtu[c] = dt[c] * u_row[c] * m
                for n in range(n_state):
                    bn = bc[b, li, b_off + g * n_state + n]
                    cn = bc[b, li, c_off + g * n_state + n]
                    prev = states[i, n]
                    cur = states[i + 1, n]
                    decay_row = decays[i, n]
                    sum_b = np.float32(0.0) * bn
                    sum_c = np.float32(0.0) * bn
                    for c in range(w):
                        a = A_blk[n, c]
                        decay = decay_row[c]
                        sum_c += dy[c] * cur[c]
                        dhv = dh[n, c] + dy[c] * cn
                        sum_b += dhv * dtu[c]
                        dx[c] += dhv * bn
                        ddecay = dhv * prev[c] * decay
                        acc_A[n, c] += ddecay * dt[c]
                        ddt[c] += ddecay * a
                        dh[n, c] = dhv * decay
                    grad_bc[j, b, li, g * n_state + n] = sum_b
                    grad_bc[j, b, li, bc_half + g * n_state + n] = sum_c
                delta_row = delta[b, li, c0:c1]
                gu_row = grad_u[b, li, c0:c1]
                gd_row = grad_delta[b, li, c0:c1]
                for c in range(w):
                    uv = u_row[c] * m
                    gu_row[c] = (dx[c] * dt[c] + dy[c] * D_blk[c]) * m
                    acc_D[c] += dy[c] * uv
                    g_dt = (ddt[c] + dx[c] * uv) * m
                    if apply_softplus:
                        g_dt *= sigmoid(delta_row[c] + bias_blk[c])
                    gd_row[c] = g_dt
                    acc_bias[c] += g_dt
        grad_A[b, :, c0:c1] = acc_A
        grad_D[b, c0:c1] = acc_D
        grad_bias[b, c0:c1] = acc_bias
        grad_state[b, :, c0:c1] = dh


# ---------------------------------------------------------------- causal depthwise conv + SiLU


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _conv_preactivation(conv, b, t, acc):
    """acc = bias + sum_k weight_t[k] * xm[t - K + 1 + k], xm = x * mask; before the sequence start xm is
    the carried prefix, or zero. Returns the mask at t (1 on a real event, 0 on padding)."""
    x, x_off, x_base = conv.x, conv.x_off, conv.x_base
    weight_t, mask, has_mask = conv.weight_t, conv.mask, conv.has_mask
    channels = acc.shape[0]
    taps = weight_t.shape[0]
    for c in range(channels):
        acc[c] = conv.bias[c]
    for k in range(taps):
        s = t - taps + 1 + k
        if s >= 0 and not (has_mask and mask[b, s] == 0):
            x_row = x[b, s - x_base, x_off : x_off + channels]
            for c in range(channels):
                acc[c] += weight_t[k, c] * x_row[c]
        elif s < 0 and conv.has_prefix:
            p_row = conv.prefix[b, s + taps - 1]
            for c in range(channels):
                acc[c] += weight_t[k, c] * p_row[c]
    return _keep(mask, has_mask, b, t)


@compiled(parallel=True)
def conv_silu_forward(conv, t_base, out):
    """out[b, i, c] = silu(pre[b, t, c]) * mask[b, t] for the segment's steps t = t_base + i, where pre is
    the causal depthwise conv of x * mask (see ``_conv_preactivation``).

    Zeroing the output at padding too means x_proj sees u = 0 there (B = C = dt_low = 0), as the plain
    path (``mixer.mix_with``) does.

    ``conv`` is a ``ConvOperands``; its x covers at least the K - 1 steps before the segment (or the
    sequence start) and the segment; out: (batch, steps, channels).
    """
    batch, steps, channels = out.shape
    for b in prange(batch):
        acc = np.empty(channels, out.dtype)
        for i in range(steps):
            m = _conv_preactivation(conv, b, t_base + i, acc)
            out_row = out[b, i]
            for c in range(channels):
                out_row[c] = acc[c] * sigmoid(acc[c]) * m


@compiled(parallel=True)
def conv_silu_backward(conv, t_base, grad_out, grad_x, grad_x_off, grad_w, grad_bias):
    """Gradients of ``conv_silu_forward`` for one segment, all added to what the arrays hold: grad_x
    (rows as x's, at ``grad_x_off``; never written at padding) and the per-batch partial sums grad_w
    (batch, K, channels), grad_bias (batch, channels). A carried prefix gets no gradient."""
    x, x_off, x_base = conv.x, conv.x_off, conv.x_base
    weight_t, mask, has_mask = conv.weight_t, conv.mask, conv.has_mask
    batch, steps, channels = grad_out.shape
    taps = weight_t.shape[0]
    for b in prange(batch):
        acc = np.empty(channels, grad_out.dtype)
        gpre = np.empty(channels, grad_out.dtype)  # d(pre-activation) at step t
        gw = np.ascontiguousarray(grad_w[b])
        gb = grad_bias[b].copy()
        for i in range(steps):
            t = t_base + i
            m = _conv_preactivation(conv, b, t, acc)
            go_row = grad_out[b, i]
            for c in range(channels):
                sg = sigmoid(acc[c])
                gp = go_row[c] * m * sg * (np.float32(1.0) + acc[c] * (np.float32(1.0) - sg))
                gpre[c] = gp
                gb[c] += gp
            for k in range(taps):
                s = t - taps + 1 + k
                if s >= 0 and not (has_mask and mask[b, s] == 0):
                    x_row = x[b, s - x_base, x_off : x_off + channels]
                    gx_row = grad_x[b, s - x_base, grad_x_off : grad_x_off + channels]
                    w_row = weight_t[k]
                    for c in range(channels):
                        gw[k, c] += gpre[c] * x_row[c]
                        gx_row[c] += w_row[c] * gpre[c]
        grad_w[b] = gw
        grad_bias[b] = gb
