"""HSTU (Zhai et al., "Actions Speak Louder than Words", ICML 2024): Meta's generative recommender.

A stack of HSTU layers over item + learned position embeddings. A layer replaces a transformer block's softmax
attention and feed-forward with one gated, pointwise-normalised attention (per head; x is the layer's input):

    U, V, Q, K = split(SiLU(LN(x) W_uvqk))                                     (pointwise projection)
    a_ij       = SiLU(q_i . k_j + pos_bias[i - j] + time_bias[bucket(t_i - t_j)]) / n    for real j <= i
    y_i        = x_i + W_o dropout(LN(sum_j a_ij v_j) * u_i)                    (norm, gate, project, residual)

``LN`` has no learned scale or shift. ``n`` is ``max_len``: the public code divides by its padded length,
a constant there; dividing by a batch's width would let left padding change the outputs. A relative bias
(per layer, shared by the heads) is learned per position distance and per bucket of time gap, with
``bucket(gap) = floor(ln(max(gap in s, 1)) / 0.301)`` capped at ``num_time_buckets``, as in the public
code (events are in time order, so a gap to an earlier event is >= 0). There, a query's time is the *next*
event's (the request's); here it is the query event's own, so that a user's hidden state, computed when the
event arrives, is the one served and evaluated.

Every pair (i, j) has its own bias, so the attention cannot go through ``scaled_dot_product_attention``, and
building it whole, (B, H, L, L) scores from a (B, L, L) bias, took 23 GB at L = 8192 (batch 8, two layers)
and several times SASRec's time. ``PointwiseAttention`` computes it a tile at a time: a block of ``QUERY_BLOCK``
queries [s, e) against a chunk of keys from [0, e) (the later keys are all in the block's future), as many
keys as keep the tile's scores within ``TILE_BYTES``. A tile's bias is built from what is O(L) per row
(``Layout``, ``PairBias``): a view of a band of the position bias, and a step function of the time bias
(with events in time order, the keys in bucket b or later of a query are a prefix of the keys). Backward
recomputes each tile's scores instead of keeping them; a custom autograd Function does it 1.5x faster than
``torch.utils.checkpoint`` per query block and sums the bias's gradient per bucket without a scatter. Two
masks cost no pass over the pairs: a future key's position bias is ``MASKED``, and a padding key (padding is
on the left) has its value zeroed, so that whatever its weight it adds nothing and gets no gradient. Memory
is O(B L (D + buckets)) plus a few tiles; ``forward_last`` computes its one query against every key. On the
CPU, Numba kernels (``recmodels/ops/pointwise_attention.py``) do a tile's bias, SiLU and their gradients in
one pass each; ``PairBias`` and torch operations do them on CUDA and for events out of time order.

With ``l2_normalize`` hidden states and item vectors are unit vectors and every logit is their cosine over
``temperature`` (the published recipe, trained with sampled softmax); by default the output is layer
normalised and scored by a dot product, like the other models. ``reference_init`` starts from the public
code's init: the item table truncated N(0, 0.02) read times sqrt(d_model), positions xavier-normal, each
layer's projection N(0, 0.02) and output xavier-uniform. Histories are truncated to ``max_len``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from recmodels.models.base import SequentialRecommender, positions_from_first_event, real_events
from recmodels.models.dropout import Dropout
from recmodels.models.transformer import merge_heads, split_heads

try:
    from recmodels.ops.pointwise_attention import TileBias
except ImportError:  # no Numba here: torch operations compute the same tiles
    TileBias = None

EPS = 1e-6
LOG_BUCKET_WIDTH = 0.301  # a time bucket spans a factor e^0.301 = 1.35 of the gap in seconds
MS_PER_SECOND = 1000
LAST_INT64_DOUBLE = float(2**63 - 2**10)  # the largest float64 below 2^63
# The bias of a query's future keys: SiLU of it (plus any q . k) is exactly 0, and so is its gradient.
# Finite in half precision, where SiLU(-inf) would be NaN.
MASKED = -3e4
# A tile: QUERY_BLOCK queries by as many keys as keep its (B, H, Q, K) scores within TILE_BYTES (three such
# buffers live at once). Smaller tiles pay more per-operation overhead, larger ones write past the caches;
# between 2 and 32 MiB the CPU times differ by less than their noise.
QUERY_BLOCK = 128
TILE_BYTES = 8 * 2**20


@dataclass(frozen=True)
class HSTUConfig:
    """SASRec's size by default (``d_model``, ``n_layers``, ``max_len``, ``n_heads``), so the two cost alike."""

    d_model: int = 64
    n_layers: int = 2
    max_len: int = 512
    dropout: float = 0.2
    n_heads: int = 2
    num_time_buckets: int = 128
    l2_normalize: bool = False
    temperature: float = 1.0
    reference_init: bool = False
    item_dtype: str = "float32"


def bucket_starts(num_buckets: int, device: torch.device | None = None) -> Tensor:
    """(num_buckets,) int64: the gap in ms at which bucket k = 1..num_buckets starts, ``ceil(1000 e^(0.301 k))``;
    a start past the int64 range (k > 122) is held just inside it, where no gap between two events reaches."""
    bucket = torch.arange(1, num_buckets + 1, dtype=torch.float64, device=device)
    starts = (MS_PER_SECOND * torch.exp(LOG_BUCKET_WIDTH * bucket)).ceil()
    return starts.clamp(max=LAST_INT64_DOUBLE).long()


def time_buckets(gap_ms: Tensor, starts: Tensor) -> Tensor:
    """int32 bucket of each gap in ms, ``floor(ln(max(gap / 1000, 1)) / 0.301)``, at most ``len(starts)``.

    Read as the number of bucket starts (``bucket_starts``) that the gap reaches: one binary search per gap
    instead of a logarithm."""
    return torch.bucketize(gap_ms, starts, right=True, out_int32=True)


@dataclass(frozen=True)
class Layout:
    """What every layer of one forward shares: which events are real, their times, and how many of the last
    positions are queries (all of them, or one for ``forward_last``); O(B L) and, with time, O(B L buckets).

    Padding's times are replaced by the row's first real time: they are never read, so no difference of two
    times overflows and a row whose events are in time order is in order all along (``ordered``). Only the
    buckets that some gap between two of a row's events reaches are kept (``starts``)."""

    mask: Tensor  # (B, L) bool
    times: Tensor | None  # (B, L) int64 ms
    starts: Tensor | None  # (buckets reached,) int64, the first of ``bucket_starts``
    ordered: bool  # every row's times never decrease
    queries: int

    @classmethod
    def of(cls, mask: Tensor, timestamps: Tensor | None, config: HSTUConfig) -> Layout:
        if timestamps is None:
            return cls(mask, None, None, True, mask.shape[1])
        first = timestamps.masked_fill(~mask, torch.iinfo(torch.int64).max).amin(dim=1, keepdim=True)
        times = torch.where(mask, timestamps, first)
        starts = bucket_starts(config.num_time_buckets, mask.device)
        widest_gap = (times.amax(dim=1) - times.amin(dim=1)).amax()
        ordered, reached = torch.stack([(times[:, 1:] >= times[:, :-1]).all(), (starts <= widest_gap).sum()])
        return cls(mask, times, starts[: int(reached)], bool(ordered), mask.shape[1])

    def last_query(self) -> Layout:
        """The same layout for the last position's query only."""
        return replace(self, queries=1)

    @cached_property
    def prefixes(self) -> Tensor | None:
        """(B, Lq, buckets) int64 J_ib = #{j : t_j <= t_i - start_b} for the queries i when events are in time
        order (else None): query i's keys in bucket b or later are then the prefix j < J_ib. One binary search
        per query and bucket, once per forward, for every layer and its backward."""
        if self.times is None or not self.ordered:
            return None
        thresholds = self.times[:, -self.queries :, None] - self.starts  # (B, Lq, buckets)
        return torch.searchsorted(self.times, thresholds.flatten(1), right=True).view(thresholds.shape)


def tiles(layout: Layout, heads: int, itemsize: int) -> Iterator[tuple[slice, list[slice]]]:
    """The query blocks (positions in the sequence), each with the chunks of its keys (module docstring)."""
    batch, length = layout.mask.shape
    width = tile_width(batch * heads, layout.queries, itemsize)
    for start in range(length - layout.queries, length, QUERY_BLOCK):
        rows = slice(start, min(start + QUERY_BLOCK, length))
        yield rows, [slice(key, min(key + width, rows.stop)) for key in range(0, rows.stop, width)]


def tile_width(matrices: int, queries: int, itemsize: int) -> int:
    """Keys per tile: as many as ``TILE_BYTES`` holds for a block of queries, at least a block's worth."""
    return max(TILE_BYTES // (matrices * min(QUERY_BLOCK, queries) * itemsize), QUERY_BLOCK)


class Scratch:
    """Buffers for a tile's temporaries, reused tile after tile: on the CPU, tensors of megabytes allocated
    afresh cost a page fault per 4 KiB on every tile (7% of the attention's time)."""

    def __init__(self, like: Tensor, sizes: dict[str, int]) -> None:
        self.like, self.sizes, self.buffers = like, sizes, {}

    def __call__(self, name: str, *shape: int) -> Tensor:
        if name not in self.buffers:
            self.buffers[name] = self.like.new_empty(self.sizes[name])
        return self.buffers[name][: math.prod(shape)].view(shape)

    @classmethod
    def for_attention(cls, q: Tensor, keys: int) -> Scratch:
        """Room for the largest tile of q's attention (B, H, Lq, Dh) over ``keys`` keys: its scores and their
        SiLU, its bias or bias gradient (with a key past the tile), and its products with the keys."""
        batch, heads, queries, head_dim = q.shape
        rows, width = min(QUERY_BLOCK, queries), min(tile_width(batch * heads, queries, q.element_size()), keys)
        scores = batch * heads * rows * width
        sizes = {"scores": scores, "weights": scores, "pairs": batch * rows * (width + 1)}
        return cls(q, sizes | {"keys": batch * heads * width * head_dim})


class PairBias:
    """The relative bias of one attention's (query, key) pairs, read a tile at a time, and its gradient.

    Position: a tile's bias is a view of one band built per call, ``band[r, x] = pos_bias[r - x + L]``
    (``MASKED`` below distance 0), since the distance of query s + r and key k + c is (s - k) + r - c.
    Time: with events in time order, query i's keys in bucket b or later are the prefix j < J_ib
    (``Layout.prefixes``), so its time bias over the keys is a step function, a cumulative sum of one step
    per bucket, and the gradient of bucket b's bias is the pairs' gradient summed up to J_ib less that summed
    up to J_i(b+1): cumulative sums again. Events out of order are bucketed pair by pair, the same rule for
    4x the cost of the time bias (a layer 1.6x slower)."""

    def __init__(self, position: Tensor, time: Tensor | None, layout: Layout, queries: int) -> None:
        length, device = layout.mask.shape[1], position.device
        offset = torch.arange(queries, device=device)[:, None] - torch.arange(length + queries, device=device)
        self.future = offset < -length  # (Q, L + Q): the band's pairs whose key is later than their query
        self.distance = (offset + length).clamp_(0, position.shape[0] - 1)
        self.band = position[self.distance].masked_fill_(self.future, MASKED)
        self.position, self.time, self.layout = position, time, layout
        self.prefixes = None if time is None else layout.prefixes
        if time is not None:
            self.reached = layout.starts.shape[0]
            self.steps = time[: self.reached] - time[1 : self.reached + 1]  # from bucket b to b - 1
        self.grad_band, self.grad_time = None, None  # from the first tile's gradient on

    def tile(self, rows: slice, keys: slice, scratch: Scratch) -> tuple[Tensor, Tensor | None]:
        """(bias (B or 1, 1, Q, K), time buckets (B, Q, K) int32 where events are out of order, else None)."""
        position = self.band_tile(self.band, rows, keys)
        if self.time is None:
            return position[None, None], None
        if self.prefixes is None:
            times = self.layout.times
            buckets = time_buckets(times[:, rows, None] - times[:, None, keys], self.layout.starts)
            time_bias = self.time.index_select(0, buckets.flatten()).view(buckets.shape)  # int32 rows as they are
            return time_bias.add_(position).unsqueeze(1), buckets
        ends = self.prefix_ends(rows, keys)  # (B, Q, buckets)
        steps = scratch("pairs", *ends.shape[:2], keys.stop - keys.start + 1).zero_()  # K: a step past the tile
        steps[:, :, 0] = self.time[self.reached]  # before any prefix's end: the last bucket reached
        steps.scatter_add_(2, ends, self.steps.expand(ends.shape))
        return steps.cumsum_(dim=-1)[:, :, :-1].add_(position).unsqueeze(1), None

    def add_gradient(self, grad_bias: Tensor, rows: slice, keys: slice, buckets: Tensor | None) -> None:
        """Adds a tile's gradient (B, Q, K) to the bias tables' gradients; ``grad_bias`` is overwritten."""
        if self.grad_band is None:
            self.grad_band = torch.zeros_like(self.band)
            self.grad_time = None if self.time is None else torch.zeros_like(self.time, dtype=torch.float64)
        self.band_tile(self.grad_band, rows, keys).add_(grad_bias.sum(dim=0))
        if self.time is None:
            return
        if self.prefixes is None:
            self.grad_time += torch.bincount(buckets.flatten(), grad_bias.flatten(), self.time.shape[0])
            return
        ends = self.prefix_ends(rows, keys)
        up_to = grad_bias.cumsum_(dim=-1)  # (B, Q, K): the sum over the keys up to and including c
        before_end = up_to.gather(-1, (ends - 1).clamp_(min=0)).masked_fill_(ends == 0, 0)  # bucket b or later
        at_least = torch.cat([up_to[:, :, -1:], before_end], dim=-1).sum(dim=(0, 1), dtype=torch.float64)
        self.grad_time[: self.reached + 1] += at_least - F.pad(at_least[1:], (0, 1))

    def gradients(self) -> tuple[Tensor, Tensor | None]:
        """(the position bias's gradient, the time bias's gradient or None)."""
        grad_band = self.grad_band.masked_fill_(self.future, 0).flatten()
        grad_position = torch.bincount(self.distance.flatten(), grad_band, self.position.shape[0])
        return grad_position, None if self.time is None else self.grad_time.to(self.time.dtype)

    def band_tile(self, band: Tensor, rows: slice, keys: slice) -> Tensor:
        """(Q, K) view of the band (or of its gradient) for the queries ``rows`` and keys ``keys``."""
        start = band.shape[1] - band.shape[0] - (rows.start - keys.start)
        return band[: rows.stop - rows.start, start : start + keys.stop - keys.start]

    def prefix_ends(self, rows: slice, keys: slice) -> Tensor:
        """(B, Q, buckets) where each query's prefixes end among the keys, 0 (before them) to K (after them)."""
        first = self.layout.mask.shape[1] - self.layout.queries
        prefixes = self.prefixes[:, rows.start - first : rows.stop - first]
        return (prefixes - keys.start).clamp_(0, keys.stop - keys.start)


class PointwiseAttention(torch.autograd.Function):
    """``sum_j SiLU(q_i . k_j + bias_ij) v_j`` over keys j <= i, a tile at a time (module docstring). Heads
    are folded into the batch, (B H, L, Dh), so that every product is one ``bmm``. In float32 under CUDA's
    autocast: the cumulative sums of the bias and its gradient would lose too much in bfloat16."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, position: Tensor, time: Tensor | None, layout: Layout):
        """q (B, H, Lq, Dh) for the last Lq positions, k and v (B, H, L, Dh), all contiguous -> (B, H, Lq, Dh)."""
        ctx.save_for_backward(q, k, v, position, time)
        ctx.layout = layout
        batch, heads, _, head_dim = q.shape
        first = k.shape[2] - q.shape[2]
        q_, k_, v_ = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)
        kernel = tile_kernel(q, position, time, layout)
        pairs = None if kernel else PairBias(position, time, layout, min(QUERY_BLOCK, q.shape[2]))
        scratch = Scratch.for_attention(q, k.shape[2])
        out = torch.empty_like(q_)
        for rows, key_chunks in tiles(layout, heads, q.element_size()):
            queries = slice(rows.start - first, rows.stop - first)
            attended = q.new_zeros(batch * heads, rows.stop - rows.start, head_dim)
            for keys in key_chunks:
                if kernel:
                    scores = torch.bmm(
                        q_[:, queries], k_[:, keys].transpose(1, 2), out=tile(scratch, "scores", q_, rows, keys)
                    )
                    weights = kernel.forward(scores, rows, keys)
                else:
                    scores = scores_of(q_[:, queries], k_[:, keys], pairs.tile(rows, keys, scratch)[0], heads, scratch)
                    weights = F.silu(scores, inplace=True)
                attended.baddbmm_(weights, v_[:, keys])
            out[:, queries] = attended
        return out.view_as(q)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @once_differentiable
    def backward(ctx, grad: Tensor):
        q, k, v, position, time = ctx.saved_tensors
        batch, heads, _, head_dim = q.shape
        first = k.shape[2] - q.shape[2]
        q_, k_, v_, grad_ = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), grad.contiguous().flatten(0, 1)
        kernel = tile_kernel(q, position, time, ctx.layout)
        pairs = None if kernel else PairBias(position, time, ctx.layout, min(QUERY_BLOCK, q.shape[2]))
        scratch = Scratch.for_attention(q, k.shape[2])
        grad_q, grad_k, grad_v = torch.empty_like(q_), torch.zeros_like(k_), torch.zeros_like(v_)
        for rows, key_chunks in tiles(ctx.layout, heads, q.element_size()):
            queries = slice(rows.start - first, rows.stop - first)
            q_rows, grad_rows = q_[:, queries], grad_[:, queries]
            grad_q_rows = q.new_zeros(batch * heads, rows.stop - rows.start, head_dim)
            for keys in key_chunks:
                per_key = scratch("keys", *k_[:, keys].shape)  # (B H, K, Dh)
                if kernel:
                    scores = torch.bmm(q_rows, k_[:, keys].transpose(1, 2), out=tile(scratch, "scores", q_, rows, keys))
                    grad_weights = torch.bmm(
                        grad_rows, v_[:, keys].transpose(1, 2), out=tile(scratch, "weights", q_, rows, keys)
                    )
                    weights, grad_scores = kernel.backward(scores, grad_weights, rows, keys)
                    grad_v[:, keys] += torch.bmm(weights.transpose(1, 2), grad_rows, out=per_key)
                else:
                    bias, buckets = pairs.tile(rows, keys, scratch)
                    scores = scores_of(q_rows, k_[:, keys], bias, heads, scratch)  # (B H, Q, K)
                    weights = torch.ops.aten.silu.out(scores, out=scratch("weights", *scores.shape))
                    grad_v[:, keys] += torch.bmm(weights.transpose(1, 2), grad_rows, out=per_key)
                    grad_weights = torch.bmm(grad_rows, v_[:, keys].transpose(1, 2), out=weights)
                    grad_scores = torch.ops.aten.silu_backward(grad_weights, scores, grad_input=scores)
                grad_q_rows.baddbmm_(grad_scores, k_[:, keys])
                grad_k[:, keys] += torch.bmm(grad_scores.transpose(1, 2), q_rows, out=per_key)
                if not kernel:
                    by_head = grad_scores.view(batch, heads, *grad_scores.shape[1:])
                    grad_bias = torch.sum(by_head, dim=1, out=scratch("pairs", batch, *by_head.shape[2:]))
                    pairs.add_gradient(grad_bias, rows, keys, buckets)  # the heads share the bias
            grad_q[:, queries] = grad_q_rows
        bias_gradients = kernel.gradients(position.dtype) if kernel else pairs.gradients()
        return grad_q.view_as(q), grad_k.view_as(k), grad_v.view_as(v), *bias_gradients, None


def tile_kernel(q: Tensor, position: Tensor, time: Tensor | None, layout: Layout) -> TileBias | None:
    """The CPU kernels' bias (``recmodels/ops/pointwise_attention.py``) where they apply: float32 or float64
    tensors on the CPU, events in time order or no time bias, Numba importable. None: torch operations."""
    usable = TileBias is not None and q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64)
    if not usable or (time is not None and layout.prefixes is None):
        return None
    batch, length = layout.mask.shape
    no_buckets = torch.zeros(batch, layout.queries, 0, dtype=torch.int64)
    prefixes = no_buckets if time is None else layout.prefixes
    return TileBias(position, time, prefixes, length - layout.queries, q.shape[1], q.dtype)


def tile(scratch: Scratch, name: str, q: Tensor, rows: slice, keys: slice) -> Tensor:
    """A (B H, Q, K) buffer of ``scratch`` for the tile of queries ``rows`` and keys ``keys``."""
    return scratch(name, q.shape[0], rows.stop - rows.start, keys.stop - keys.start)


def scores_of(q: Tensor, k: Tensor, bias: Tensor, heads: int, scratch: Scratch) -> Tensor:
    """(B H, Q, K) scores q . k + bias, from q (B H, Q, Dh), k (B H, K, Dh) and bias (B or 1, 1, Q, K)."""
    scores = scratch("scores", q.shape[0], q.shape[1], k.shape[1])
    scores.view(-1, heads, *scores.shape[1:]).copy_(bias)
    return scores.baddbmm_(q, k.transpose(1, 2))


class RelativeBias(nn.Module):
    """A learned bias per position distance (0..max_len - 1) and per time-gap bucket (0..num_buckets)."""

    def __init__(self, max_len: int, num_buckets: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.empty(max_len).normal_(std=0.02))
        self.time = nn.Parameter(torch.empty(num_buckets + 1).normal_(std=0.02))


class HSTULayer(nn.Module):
    """One HSTU layer (module docstring): pointwise projection, pointwise aggregated attention, gated output."""

    def __init__(self, config: HSTUConfig) -> None:
        super().__init__()
        if config.d_model % config.n_heads:
            raise ValueError(f"d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
        self.d_model, self.n_heads, self.max_len = config.d_model, config.n_heads, config.max_len
        self.uvqk = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.relative_bias = RelativeBias(config.max_len, config.num_time_buckets)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        """(B, L, D) -> (B, Lq, D): the outputs of the layout's Lq queries (the last Lq positions)."""
        u, v, q, k = F.silu(self.uvqk(F.layer_norm(x, (self.d_model,), eps=EPS))).chunk(4, dim=-1)
        u, q, residual = u[:, -layout.queries :], q[:, -layout.queries :], x[:, -layout.queries :]
        v = v * layout.mask[..., None] / self.max_len  # padding keys add nothing (module docstring)
        q, k, v = (split_heads(part, self.n_heads).contiguous() for part in (q, k, v))
        bias = self.relative_bias
        time = bias.time if layout.times is not None else None
        attended = merge_heads(PointwiseAttention.apply(q, k, v, bias.position, time, layout))  # (B, Lq, D)
        gated = F.layer_norm(attended, (self.d_model,), eps=EPS) * u
        return residual + self.out(self.dropout(gated))

    def reference_init(self) -> None:
        """The reference layer's init: the projection N(0, 0.02), the output's matrix xavier-uniform."""
        nn.init.normal_(self.uvqk.weight, std=0.02)
        nn.init.xavier_uniform_(self.out.weight)


class HSTU(SequentialRecommender):
    """Item + learned position embeddings -> HSTU layers -> output norm (or unit vectors) / temperature."""

    uses_timestamps = True

    def __init__(self, num_items: int, config: HSTUConfig | None = None) -> None:
        config = config or HSTUConfig()
        super().__init__(num_items, config.d_model, config.item_dtype)
        self.config = config
        self.use_cosine_head(config.l2_normalize, config.temperature)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        nn.init.normal_(self.position_embedding.weight, std=config.d_model**-0.5)
        self.embedding_dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(HSTULayer(config) for _ in range(config.n_layers))
        self.output_norm = nn.LayerNorm(config.d_model)
        if config.reference_init:
            for layer in self.layers:
                layer.reference_init()
            nn.init.xavier_normal_(self.position_embedding.weight)
            self.reference_item_init()

    def forward(self, items: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """items (B, L), timestamps (B, L) ms or None (no time bias) -> hidden (B, L, D)."""
        x, layout = self.embed(items, timestamps)
        for layer in self.layers:
            x = layer(x, layout)
        return self.read_out(x, self.output_norm)

    def forward_last(self, items: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """``forward(items, timestamps)[:, -1]`` (B, D), the last layer computing the last position only."""
        x, layout = self.embed(items, timestamps)
        for layer in self.layers[:-1]:
            x = layer(x, layout)
        return self.read_out(self.layers[-1](x, layout.last_query())[:, -1], self.output_norm)

    def embed(self, items: Tensor, timestamps: Tensor | None) -> tuple[Tensor, Layout]:
        items = items[:, -self.config.max_len :]  # at most the last max_len events, like the attention models
        if timestamps is not None:
            timestamps = timestamps[:, -self.config.max_len :]
        mask = real_events(items)  # (B, L)
        x = self.scaled_items(items) + self.position_embedding(positions_from_first_event(mask))
        return self.embedding_dropout(x) * mask[..., None], Layout.of(mask, timestamps, self.config)
