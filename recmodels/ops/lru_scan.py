"""LRURec's diagonal complex recurrence on the CPU: one sequential pass per user, forward and backward.

h_t = lambda * h_{t-1} + u_t, with lambda (H,) complex and h, u (B, L, H) complex held as real [Re | Im]
halves of a (B, L, 2H) tensor: the layout LRURec's input projection produces and its output projection reads,
so no complex tensor, concatenation or copy is made around the scan. A pad (``real`` False, a prefix of each
row) leaves the state as it was.

Why not the chunked parallel scan (``recmodels.models.lrurec.linear_recurrence``) here: it does O(L * chunk)
complex work per channel, gathers a (B, L, H) complex decay tensor and permutes for a batched complex
product; on 2 cores it made LRURec's forward 4x RecMamba's (16 users x 3,300 events: 2.5 s against 0.6 s).
The recurrence itself is O(L) multiply-adds per channel, which a loop over time with the H channels as the
inner, vectorized loop runs at memory speed. The chunked scan stays for CUDA tensors, where the loop would
be sequential over L.

The backward runs the adjoint recurrence from the end, g_t = dL/dh_t + (multiplication by lambda, transposed as
a real 2 x 2 map) applied to g_{t+1}; then dL/du_t = g_t, and dL/dlambda sums g_t against h_{t-1} per channel.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch import Tensor

from recmodels.ops.cpu_kernels import compiled


@compiled(parallel=True)
def lru_forward(u, lam_r, lam_i, real, start, h, last):
    """Fill h (B, L, 2H) and last (B, 2H) from u (B, L, 2H), lambda's parts (H,), real (B, L), start (B, 2H)."""
    batch, length, width = u.shape
    half = width // 2
    for b in prange(batch):
        s_re = start[b, :half].copy()
        s_im = start[b, half:].copy()
        for t in range(length):
            if real[b, t]:
                for k in range(half):
                    re = lam_r[k] * s_re[k] - lam_i[k] * s_im[k] + u[b, t, k]
                    s_im[k] = lam_r[k] * s_im[k] + lam_i[k] * s_re[k] + u[b, t, half + k]
                    s_re[k] = re
            h[b, t, :half] = s_re
            h[b, t, half:] = s_im
        last[b, :half] = s_re
        last[b, half:] = s_im


@compiled(parallel=True)
def lru_backward(grad_h, grad_last, h, start, lam_r, lam_i, real, grad_u, grad_start, grad_lam):
    """The adjoint pass: grad_u (B, L, 2H), grad_start (B, 2H) and per-row grad_lam (B, 2, H) from the output
    gradients grad_h (B, L, 2H) and grad_last (B, 2H); h is the forward's output."""
    batch, length, width = h.shape
    half = width // 2
    for b in prange(batch):
        g_re = grad_last[b, :half].copy()
        g_im = grad_last[b, half:].copy()
        for t in range(length - 1, -1, -1):
            for k in range(half):
                g_re[k] += grad_h[b, t, k]
                g_im[k] += grad_h[b, t, half + k]
            if not real[b, t]:
                grad_u[b, t, :] = 0.0
                continue
            grad_u[b, t, :half] = g_re
            grad_u[b, t, half:] = g_im
            previous = h[b, t - 1] if t > 0 else start[b]
            for k in range(half):
                p_re, p_im = previous[k], previous[half + k]
                grad_lam[b, 0, k] += g_re[k] * p_re + g_im[k] * p_im
                grad_lam[b, 1, k] += g_im[k] * p_re - g_re[k] * p_im
                re = lam_r[k] * g_re[k] + lam_i[k] * g_im[k]
                g_im[k] = lam_r[k] * g_im[k] - lam_i[k] * g_re[k]
                g_re[k] = re
        grad_start[b, :half] = g_re
        grad_start[b, half:] = g_im


class LinearRecurrence(torch.autograd.Function):
    """(u, lambda's real and imaginary parts, real, start) -> (h, last state), all real [Re | Im] layouts."""

    @staticmethod
    def forward(ctx, u: Tensor, lam_r: Tensor, lam_i: Tensor, real: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
        u, start = u.detach().contiguous(), start.detach().contiguous()
        lam_r, lam_i = lam_r.detach().contiguous(), lam_i.detach().contiguous()
        real = real.contiguous()
        h, last = torch.empty_like(u), torch.empty_like(start)
        lru_forward(u.numpy(), lam_r.numpy(), lam_i.numpy(), real.numpy(), start.numpy(), h.numpy(), last.numpy())
        ctx.save_for_backward(h, start, lam_r, lam_i, real)
        return h, last

    @staticmethod
    def backward(ctx, grad_h: Tensor, grad_last: Tensor):
        h, start, lam_r, lam_i, real = ctx.saved_tensors
        grad_h = torch.zeros_like(h) if grad_h is None else grad_h.contiguous()
        grad_last = torch.zeros_like(start) if grad_last is None else grad_last.contiguous()
        grad_u, grad_start = torch.empty_like(h), torch.empty_like(start)
        grad_lam = np.zeros((h.shape[0], 2, lam_r.shape[0]), dtype=h.numpy().dtype)
        lru_backward(
            grad_h.numpy(), grad_last.numpy(), h.numpy(), start.numpy(), lam_r.numpy(), lam_i.numpy(),
            real.numpy(), grad_u.numpy(), grad_start.numpy(), grad_lam,
        )  # fmt: skip
        grad_lam = torch.from_numpy(grad_lam).sum(dim=0)
        return grad_u, grad_lam[0], grad_lam[1], None, grad_start


def linear_recurrence_cpu(
    u: Tensor, lam_r: Tensor, lam_i: Tensor, real: Tensor, start: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """h (B, L, 2H) and the state after each row (B, 2H), [Re | Im] halves; ``start`` None: zeros."""
    if start is None:
        start = u.new_zeros(u.shape[0], u.shape[2])
    return LinearRecurrence.apply(u, lam_r, lam_i, real, start)
