"""HSTU's pointwise attention weights on the CPU: a tile's bias, SiLU and their gradients in one pass each.

``recmodels.models.hstu`` computes its attention a tile at a time: (B H, Q, K) scores q . k from one batched
product, then ``SiLU(scores + bias)``, where a pair's bias is a learned value per position distance plus one
per time-gap bucket. Written with torch operations, the bias alone took a zeroed buffer, a scatter, a
cumulative sum, an addition and a copy per tile, and the backward as many again plus the SiLU's two passes
and a sum over heads: about twenty passes over every tile, 40% of an HSTU layer's time at L = 2048 beside
its batched products. Here each direction is one pass per tile, in place, with a query's bias built
once for all heads from two small tables:

- position: ``position_rev`` is the distance table reversed, so that a query's bias over consecutive keys is a
  contiguous, increasing run of it (distance = query - key falls as the key rises);
- time: with events in time order, query i's keys in bucket p or later are the prefix j < J[i, p]
  (``prefixes``, non-increasing in p), so its keys split into runs of one bucket each: bucket p for
  J[i, p] <= j < J[i, p - 1]. Each run adds one constant and sums its gradient in one reduction.

A key later than its query gets weight 0 and no gradient, exactly what the torch path's masked bias gives.
Kernels are generic over float32 and float64 (tests hold them to a dense float64 reference).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import prange
from torch import Tensor

from recmodels.ops.cpu_kernels import FASTMATH, compiled, match_torch_threads, sigmoid


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _run_start(prefix_ends, p, first_key, hi):
    """Where the run of bucket p starts among a query's keys c < hi (local to the tile): J[p] - first_key,
    held within [0, hi]; the last bucket's run starts at 0."""
    if p == prefix_ends.shape[0]:
        return 0
    return min(max(prefix_ends[p] - first_key, 0), hi)


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _pair_bias(out, position_rev, start, prefix_ends, first_key, time):
    """out[c] = position[query - (first_key + c)] + time[bucket] for one query's keys c < len(out), the
    position read forward from ``position_rev[start:]``; the query's keys in bucket p are the run
    J[p] <= first_key + c < J[p - 1] (``prefix_ends`` = J, non-increasing in p)."""
    hi = out.shape[0]
    position = position_rev[start : start + hi]
    for p in range(prefix_ends.shape[0] + 1):
        lo = _run_start(prefix_ends, p, first_key, hi)
        run, run_position = out[lo:hi], position[lo:hi]
        offset = time[p]
        for c in range(run.shape[0]):
            run[c] = run_position[c] + offset
        hi = lo
        if hi == 0:
            break


@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _sum_time_gradient(grad_pairs, prefix_ends, first_key, grad_time):
    """grad_time[p] += the sum of grad_pairs over the keys of bucket p (runs as in ``_pair_bias``)."""
    hi = grad_pairs.shape[0]
    for p in range(prefix_ends.shape[0] + 1):
        lo = _run_start(prefix_ends, p, first_key, hi)
        grad_time[p] += np.float64(grad_pairs[lo:hi].sum())
        hi = lo
        if hi == 0:
            break


@compiled(parallel=True)
def biased_silu_forward(scores, heads, first_query, first_key, position_rev, time, prefixes, prefix_row):
    """In place: scores[bh, r, c] = SiLU(scores + position[q - k] + time[bucket(q, k)]) where key k =
    first_key + c is not later than query q = first_query + r, else 0.

    scores (B H, Q, K); position_rev (P,), the distance table reversed, P > every q - k; time (buckets + 1,);
    prefixes (B, Lq, buckets) int64, J[i, p] of the attention's queries (module docstring), the tile's first
    at row ``prefix_row``. One task per (batch row, query): the heads share its bias, built once."""
    tasks, rows, keys = scores.shape
    batch = tasks // heads
    top = position_rev.shape[0] - 1
    for task in prange(batch * rows):
        b = task // rows
        r = task % rows
        query = first_query + r
        end = max(0, min(keys, query - first_key + 1))  # keys at c >= end are later than the query
        bias = np.empty(end, scores.dtype)
        _pair_bias(bias, position_rev, top - query + first_key, prefixes[b, prefix_row + r], first_key, time)
        for h in range(heads):
            row = scores[b * heads + h, r]
            row[end:] = 0.0
            run = row[:end]
            for c in range(run.shape[0]):
                pre = run[c] + bias[c]
                run[c] = pre * sigmoid(pre)


@compiled(parallel=True)
def biased_silu_backward(
    scores, grad, heads, first_query, first_key, position_rev, time, prefixes, prefix_row, grad_position_rev, grad_time
):
    """The forward's gradient for one tile, in place: scores (raw q . k) become the weights SiLU(pre), grad
    (d loss / d weights) becomes d loss / d pre; each pair's d loss / d pre, summed over the heads, is added to
    its distance's entry of grad_position_rev[b] (P,) and to its bucket's grad_time[b] (buckets + 1,)
    float64. Arguments as in ``biased_silu_forward``; one task per batch row owns its gradient rows."""
    tasks, rows, keys = scores.shape
    batch = tasks // heads
    top = position_rev.shape[0] - 1
    for b in prange(batch):
        bias = np.empty(keys, scores.dtype)
        grad_pairs = np.empty(keys, scores.dtype)
        for r in range(rows):
            query = first_query + r
            end = max(0, min(keys, query - first_key + 1))
            start = top - query + first_key
            prefix_ends = prefixes[b, prefix_row + r]
            run_bias, run_grad_pairs = bias[:end], grad_pairs[:end]
            _pair_bias(run_bias, position_rev, start, prefix_ends, first_key, time)
            run_grad_pairs[:] = 0.0
            for h in range(heads):
                row, grad_row = scores[b * heads + h, r], grad[b * heads + h, r]
                row[end:] = 0.0
                grad_row[end:] = 0.0
                run, run_grad = row[:end], grad_row[:end]
                for c in range(run.shape[0]):
                    pre = run[c] + run_bias[c]
                    gate = sigmoid(pre)
                    g = run_grad[c] * gate * (np.float32(1.0) + pre * (np.float32(1.0) - gate))
                    run[c] = pre * gate
                    run_grad[c] = g
                    run_grad_pairs[c] += g
            grad_position = grad_position_rev[b, start : start + end]
            for c in range(grad_position.shape[0]):
                grad_position[c] += run_grad_pairs[c]
            _sum_time_gradient(run_grad_pairs, prefix_ends, first_key, grad_time[b])


class TileBias:
    """Both kernels' view of one attention's bias, and the gradients they gather, for (B H, Q, K) tiles of
    queries ``rows`` and keys ``keys`` (positions in the sequence).

    position (P,) per distance; time (buckets + 1,) per bucket, or None (no time bias); prefixes (B, Lq,
    buckets reached) for the attention's queries from position ``first_query`` on (no buckets without
    time). Tensors are read as arrays in the scores' dtype."""

    def __init__(self, position: Tensor, time: Tensor | None, prefixes: Tensor, first_query: int, heads: int,
                 dtype: torch.dtype) -> None:  # fmt: skip
        self.heads, self.first_query = heads, first_query
        self.position_rev = position.detach().to(dtype).flip(0).contiguous()
        self.time_size = None if time is None else time.shape[0]
        reached = prefixes.shape[2]
        # Without time, every pair is in bucket 0, whose bias is 0.
        self.time = torch.zeros(1, dtype=dtype) if time is None else time.detach().to(dtype)[: reached + 1].contiguous()
        self.prefixes = prefixes.contiguous().numpy()
        self.grad_position_rev: Tensor | None = None
        self.grad_time: Tensor | None = None

    def forward(self, scores: Tensor, rows: slice, keys: slice) -> Tensor:
        """scores (B H, Q, K), the tile's q . k, become its attention weights, in place."""
        match_torch_threads()
        biased_silu_forward(scores.numpy(), self.heads, rows.start, keys.start, self.position_rev.numpy(),
                            self.time.numpy(), self.prefixes, rows.start - self.first_query)  # fmt: skip
        return scores

    def backward(self, scores: Tensor, grad: Tensor, rows: slice, keys: slice) -> tuple[Tensor, Tensor]:
        """(weights, d loss / d scores) of a tile, in place of its q . k and of d loss / d weights; the bias's
        gradient is gathered for ``gradients``."""
        if self.grad_position_rev is None:
            batch = scores.shape[0] // self.heads
            self.grad_position_rev = scores.new_zeros(batch, self.position_rev.shape[0])
            self.grad_time = torch.zeros(batch, self.time.shape[0], dtype=torch.float64)
        match_torch_threads()
        biased_silu_backward(scores.numpy(), grad.numpy(), self.heads, rows.start, keys.start,
                             self.position_rev.numpy(), self.time.numpy(), self.prefixes,
                             rows.start - self.first_query, self.grad_position_rev.numpy(),
                             self.grad_time.numpy())  # fmt: skip
        return scores, grad

    def gradients(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """(the position table's gradient, the time table's gradient or None), in ``dtype``."""
        grad_position = self.grad_position_rev.sum(dim=0).flip(0).to(dtype)
        if self.time_size is None:
            return grad_position, None
        grad_time = self.grad_time.sum(dim=0)
        return grad_position, F.pad(grad_time, (0, self.time_size - grad_time.shape[0])).to(dtype)
