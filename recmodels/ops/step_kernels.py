"""Numba kernels for one step of the Mamba mixer from a carried state: what serving (``serving.fused_step``)
and ``cpu_fused.mix`` of length 1 compute, written once.

A state row packs, per layer, the conv window (channels, K - 1) then the SSM state (channels, d_state).
Everything that inlines the step math lives in this module, so that Numba's on-disk cache, which is kept
per defining module, never serves a kernel compiled from an older version of it.
"""

from __future__ import annotations

import numba
import numpy as np

from recmodels.ops.cpu_kernels import FASTMATH, compiled, fast_exp, sigmoid, softplus


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def conv_silu_step(window, conv_w, conv_b, x, u):
    """One causal depthwise conv step + SiLU: window (E, K - 1) holds the last inputs and is shifted in place."""
    channels, taps = conv_w.shape
    for c in range(channels):
        acc = conv_b[c] + conv_w[c, taps - 1] * x[c]
        for k in range(taps - 1):
            acc += conv_w[c, k] * window[c, k]
        if taps > 1:  # a width-1 conv (no convolution) keeps no window
            for k in range(taps - 2):
                window[c, k] = window[c, k + 1]
            window[c, taps - 2] = x[c]
        u[c] = acc * sigmoid(acc)


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def state_step(ssm, u, dt, x_dbl, rank, A, D, z, y):
    """The selective state update of ssm (E, N) in place, then y = (C h + D u) * silu(z); dt before softplus.

    Two passes per channel, the update then the read-out: without a reduction in it, the first one
    vectorizes (about twice as fast as one fused loop)."""
    channels, n_state = A.shape
    b_in = x_dbl[rank : rank + n_state]
    c_out = x_dbl[rank + n_state : rank + 2 * n_state]
    for c in range(channels):
        step = softplus(dt[c])
        dtu = step * u[c]
        row = ssm[c]
        a_row = A[c]
        for n in range(n_state):
            row[n] = fast_exp(step * a_row[n]) * row[n] + dtu * b_in[n]
        acc = D[c] * u[c]
        for n in range(n_state):
            acc += row[n] * c_out[n]
        y[c] = acc * z[c] * sigmoid(z[c])


@compiled()
def conv_silu_step_rows(xz, conv_w, conv_b, states, base, u):
    """``conv_silu_step`` for every row; each row's conv window starts at ``base`` of its state row."""
    channels, taps = conv_w.shape
    for b in range(xz.shape[0]):
        window = states[b, base : base + channels * (taps - 1)].reshape(channels, taps - 1)
        conv_silu_step(window, conv_w, conv_b, xz[b, :channels], u[b])


@compiled()
def state_step_rows(states, base, u, dt, x_dbl, rank, A, D, xz, y):
    """``state_step`` for every row; each row's SSM state starts at ``base`` of its state row."""
    channels, n_state = A.shape
    for b in range(u.shape[0]):
        ssm = states[b, base : base + channels * n_state].reshape(channels, n_state)
        state_step(ssm, u[b], dt[b], x_dbl[b], rank, A, D, xz[b, channels:], y[b])


# ---------------------------------------------------------------- RecMamba, every layer, user by user


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _layer_norm(x, weight, bias, eps, out):
    size = x.shape[0]
    mean = np.float32(0.0)
    for i in range(size):
        mean += x[i]
    mean /= size
    var = np.float32(0.0)
    for i in range(size):
        d = x[i] - mean
        var += d * d
    inv = np.float32(1.0) / np.sqrt(var / size + eps)
    for i in range(size):
        out[i] = (x[i] - mean) * inv * weight[i] + bias[i]


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _matvec(w, x, bias, out):
    """out = w @ x + bias; w (rows, cols) row-major, so the inner loop is contiguous (SIMD)."""
    rows, cols = w.shape
    for r in range(rows):
        acc = bias[r]
        for c in range(cols):
            acc += w[r, c] * x[c]
        out[r] = acc


@compiled()
def step_users(w, items, states, hidden):
    """items (B, T) int64, 0 = no event (left padding); states (B, S); hidden (B, D); one user at a time."""
    n_layers, e2, d_model = w.in_w.shape
    e, taps, n_state, rank = e2 // 2, w.conv_w.shape[2], w.A.shape[2], w.dtproj_w.shape[2]
    conv_size = e * (taps - 1)
    layer_size = conv_size + e * n_state
    x = np.empty(d_model, np.float32)
    normed = np.empty(d_model, np.float32)
    xz = np.empty(e2, np.float32)
    u = np.empty(e, np.float32)
    x_dbl = np.empty(rank + 2 * n_state, np.float32)
    no_bias = np.zeros(rank + 2 * n_state, np.float32)
    dt = np.empty(e, np.float32)
    y = np.empty(e, np.float32)
    out = np.empty(d_model, np.float32)
    for b in range(items.shape[0]):
        for t in range(items.shape[1]):
            item = items[b, t]
            if item == 0:
                continue
            x[:] = w.embedding[item]
            for layer in range(n_layers):
                base = layer * layer_size
                conv = states[b, base : base + conv_size].reshape(e, taps - 1)
                ssm = states[b, base + conv_size : base + layer_size].reshape(e, n_state)
                _layer_norm(x, w.norm_w[layer], w.norm_b[layer], w.eps[layer], normed)
                _matvec(w.in_w[layer], normed, w.in_b[layer], xz)
                conv_silu_step(conv, w.conv_w[layer], w.conv_b[layer], xz[:e], u)
                _matvec(w.xproj_w[layer], u, no_bias, x_dbl)
                _matvec(w.dtproj_w[layer], x_dbl[:rank], w.dt_bias[layer], dt)
                state_step(ssm, u, dt, x_dbl, rank, w.A[layer], w.D[layer], xz[e:], y)
                _matvec(w.out_w[layer], y, w.out_b[layer], out)
                x += out
            _layer_norm(x, w.final_w, w.final_b, w.eps[n_layers], hidden[b])


@compiled()
def layer_norm_rows(x, weight, bias, eps, out):
    for b in range(x.shape[0]):
        _layer_norm(x[b], weight, bias, eps, out[b])
