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
event arrives, is the one served and evaluated. Everything a layer needs besides its weights (which pairs
attend, their distances and time buckets) is built once per forward (``Layout``); each layer reads its whole
bias, masking included, with one gather.

With ``l2_normalize`` hidden states and item vectors are unit vectors and every logit is their cosine over
``temperature`` (the published recipe, trained with sampled softmax); by default the output is layer
normalised and scored by a dot product, like the other models. Histories are truncated to ``max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.models.base import SequentialRecommender, positions_from_first_event, real_events
from recmodels.models.transformer import merge_heads, split_heads

EPS = 1e-6
LOG_BUCKET_WIDTH = 0.301  # a time bucket spans a factor e^0.301 = 1.35 of the gap in seconds
MS_PER_SECOND = 1000
# The bias of a pair that may not attend: SiLU of it (plus any q . k) is exactly 0, and so is its gradient,
# so the gather that reads a pair's bias also masks it, with no extra pass over (B, H, L, L). Finite in half
# precision, where SiLU(-inf) would be NaN.
MASKED = -3e4


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


def time_buckets(timestamps: Tensor, num_buckets: int) -> Tensor:
    """(B, L, L) int32 bucket of the gap between events i and j, from ms times (B, L):
    ``floor(ln(max((t_i - t_j) / 1000, 1)) / 0.301)``, at most ``num_buckets``.

    Read as the number of bucket starts ``ceil(1000 e^(0.301 k))`` ms, k = 1..num_buckets, that the gap
    reaches: one binary search per pair instead of a logarithm."""
    bucket = torch.arange(1, num_buckets + 1, dtype=torch.float64, device=timestamps.device)
    starts = (MS_PER_SECOND * torch.exp(LOG_BUCKET_WIDTH * bucket)).ceil().long()
    gap_ms = timestamps[:, :, None] - timestamps[:, None, :]
    return torch.bucketize(gap_ms, starts, right=True, out_int32=True)


@dataclass(frozen=True)
class Layout:
    """What every layer of one forward shares, built once: per (query i, key j) pair the row of the layers'
    bias tables it reads (``RelativeBias.table``): position distance i - j, with its time bucket when there
    are timestamps, or the masked row when j is later than i or padding. Queries are the last Lq positions."""

    bias_row: Tensor  # (B, Lq, L) int32
    timed: bool

    @classmethod
    def of(cls, mask: Tensor, timestamps: Tensor | None, config: HSTUConfig) -> Layout:
        length = mask.shape[1]
        index = torch.arange(length, device=mask.device)
        offset = index[:, None] - index[None, :]  # (L, L): i - j
        allowed = (offset >= 0) & mask[:, None, :]  # (B, L, L): earlier or same, real keys only
        row = offset.clamp(0, config.max_len - 1).int()
        if timestamps is not None:
            row = row * (config.num_time_buckets + 1) + time_buckets(timestamps, config.num_time_buckets)
        masked_row = config.max_len * (config.num_time_buckets + 1 if timestamps is not None else 1)
        return cls(torch.where(allowed, row, masked_row).int(), timestamps is not None)

    def last_query(self) -> Layout:
        """The same layout for the last position's query only."""
        return Layout(self.bias_row[:, -1:], self.timed)


class RelativeBias(nn.Module):
    """A learned bias per position distance (0..max_len - 1) and per time-gap bucket (0..num_buckets)."""

    def __init__(self, max_len: int, num_buckets: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.empty(max_len).normal_(std=0.02))
        self.time = nn.Parameter(torch.empty(num_buckets + 1).normal_(std=0.02))

    def table(self, timed: bool) -> Tensor:
        """Every bias a pair can have, one row per (distance, bucket) (or per distance), then MASKED."""
        values = (self.position[:, None] + self.time[None, :]).flatten() if timed else self.position
        return torch.cat([values, values.new_full((1,), MASKED)])

    def forward(self, layout: Layout) -> Tensor:
        """(B, 1, Lq, L), added to every head's q . k: one gather per layer."""
        rows = layout.bias_row
        return self.table(layout.timed).index_select(0, rows.flatten()).view(rows.shape).unsqueeze(1)


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
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, layout: Layout) -> Tensor:
        """(B, L, D) -> (B, Lq, D): the outputs of the layout's Lq queries (the last Lq positions)."""
        u, v, q, k = F.silu(self.uvqk(F.layer_norm(x, (self.d_model,), eps=EPS))).chunk(4, dim=-1)
        queries = layout.bias_row.shape[-2]
        u, q, residual = u[:, -queries:], q[:, -queries:], x[:, -queries:]
        q, k, v = split_heads(q, self.n_heads), split_heads(k, self.n_heads), split_heads(v, self.n_heads)
        scores = q @ k.transpose(-1, -2) + self.relative_bias(layout)  # (B, H, Lq, L)
        attended = merge_heads(F.silu(scores) @ (v / self.max_len))  # (B, Lq, D); masked pairs are 0
        gated = F.layer_norm(attended, (self.d_model,), eps=EPS) * u
        return residual + self.out(self.dropout(gated))


class HSTU(SequentialRecommender):
    """Item + learned position embeddings -> HSTU layers -> output norm (or unit vectors) / temperature."""

    uses_timestamps = True

    def __init__(self, num_items: int, config: HSTUConfig | None = None) -> None:
        config = config or HSTUConfig()
        if config.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {config.temperature}")
        super().__init__(num_items, config.d_model)
        self.config = config
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        nn.init.normal_(self.position_embedding.weight, std=config.d_model**-0.5)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(HSTULayer(config) for _ in range(config.n_layers))
        self.output_norm = nn.LayerNorm(config.d_model)

    def forward(self, items: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """items (B, L), timestamps (B, L) ms or None (no time bias) -> hidden (B, L, D)."""
        x, layout = self.embed(items, timestamps)
        for layer in self.layers:
            x = layer(x, layout)
        return self.output(x)

    def forward_last(self, items: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """``forward(items, timestamps)[:, -1]`` (B, D), the last layer computing the last position only."""
        x, layout = self.embed(items, timestamps)
        for layer in self.layers[:-1]:
            x = layer(x, layout)
        return self.output(self.layers[-1](x, layout.last_query())[:, -1])

    def embed(self, items: Tensor, timestamps: Tensor | None) -> tuple[Tensor, Layout]:
        items = items[:, -self.config.max_len :]  # at most the last max_len events, like the attention models
        if timestamps is not None:
            timestamps = timestamps[:, -self.config.max_len :]
        mask = real_events(items)  # (B, L)
        x = self.item_embedding(items) + self.position_embedding(positions_from_first_event(mask))
        return self.embedding_dropout(x) * mask[..., None], Layout.of(mask, timestamps, self.config)

    def output(self, x: Tensor) -> Tensor:
        """The hidden state every logit is read from: its dot product with an item vector is the logit."""
        x = F.normalize(x, dim=-1, eps=EPS) if self.config.l2_normalize else self.output_norm(x)
        return x / self.config.temperature if self.config.temperature != 1.0 else x

    def item_vectors(self, items: Tensor | None = None) -> Tensor:
        vectors = super().item_vectors(items)
        return F.normalize(vectors, dim=-1, eps=EPS) if self.config.l2_normalize else vectors
