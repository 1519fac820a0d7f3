"""What every sequential recommender shares: tied item embeddings, catalogue scores, padding helpers."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.models.dropout import Dropout

PADDING_ITEM = 0
NORM_EPS = 1e-6  # the smallest norm a vector is divided by when made a unit vector
REFERENCE_ITEM_STD = 0.02  # generative-recommenders' item table: truncated N(0, 0.02), cut at two std


ITEM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ItemTable(nn.Embedding):
    """The item embedding, stored as float32 or bfloat16 (``item_dtype``: half the memory of a catalogue of
    tens of millions) and always read as float32 rows, so every layer above it computes in float32 and a
    row's gradient flows back in the table's dtype (sparse with ``sparse=True``)."""

    def forward(self, items: Tensor) -> Tensor:
        rows = super().forward(items)
        return rows.float() if rows.dtype == torch.bfloat16 else rows  # float64 tables (tests) stay float64


class SequentialRecommender(nn.Module):
    """Contract 2: ``forward(items (B, L)) -> hidden (B, L, D)``, ``scores(hidden) -> (..., num_items + 1)``.

    Items are left padded with 0. Streaming models (``supports_streaming``) also implement
    ``init_state(batch)`` and ``forward_with_state(items, state) -> (hidden, state)``. Models that read the
    events' times (``uses_timestamps``) take ``forward(items, timestamps)`` with timestamps (B, L) int64 in
    milliseconds, aligned with the items; every caller passes them to such a model and only to it.
    """

    supports_streaming: ClassVar[bool] = False
    uses_timestamps: ClassVar[bool] = False
    config: Any
    # The output head (``use_cosine_head``): unit hidden states and item vectors, every logit a cosine over the
    # temperature; by default a normed hidden state and a dot product.
    l2_normalize: bool = False
    temperature: float = 1.0
    input_scale: float = 1.0  # the factor ``scaled_items`` reads the table with (``reference_item_init``)

    def __init__(self, num_items: int, d_model: int, item_dtype: str = "float32") -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1 (items are 1..num_items), got {num_items}")
        if item_dtype not in ITEM_DTYPES:
            raise ValueError(f"item_dtype must be one of {sorted(ITEM_DTYPES)}, got {item_dtype!r}")
        self.num_items = num_items
        # Made in its dtype: a float32 table first would double the peak at a catalogue of tens of millions.
        self.item_embedding = ItemTable(num_items + 1, d_model, padding_idx=PADDING_ITEM, dtype=ITEM_DTYPES[item_dtype])
        # Unit-variance hidden states times embeddings of std d^-1/2 give logits of order one.
        nn.init.normal_(self.item_embedding.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PADDING_ITEM].zero_()

    def item_vectors(self, items: Tensor | None = None) -> Tensor:
        """The vectors hidden states are scored against (tied to the item embeddings): the rows of ``items``,
        read through the embedding module so that sparse item gradients stay sparse, or the whole table
        (num_items + 1, D); unit vectors with ``l2_normalize``, for every caller."""
        vectors = self.item_embedding.weight if items is None else self.item_embedding(items)
        return F.normalize(vectors, dim=-1, eps=NORM_EPS) if self.l2_normalize else vectors

    def use_cosine_head(self, l2_normalize: bool, temperature: float) -> None:
        """Logits = (unit hidden . unit item) / temperature with ``l2_normalize`` (generative-recommenders'
        SASRec and HSTU recipes: cosine over 0.05); else the output norm's hidden state over ``temperature``."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.l2_normalize, self.temperature = l2_normalize, temperature

    def read_out(self, x: Tensor, output_norm: nn.Module) -> Tensor:
        """The hidden state every logit is read from: its dot product with an item vector is the logit."""
        x = F.normalize(x, dim=-1, eps=NORM_EPS) if self.l2_normalize else output_norm(x)
        return x / self.temperature if self.temperature != 1.0 else x

    def reference_item_init(self) -> None:
        """The reference's item table (truncated N(0, 0.02), padding row zero), read at the input times
        sqrt(d_model) (``input_scale``), so that inputs start at the positions' scale."""
        weight = self.item_embedding.weight
        nn.init.trunc_normal_(weight, std=REFERENCE_ITEM_STD, a=-2 * REFERENCE_ITEM_STD, b=2 * REFERENCE_ITEM_STD)
        with torch.no_grad():
            weight[PADDING_ITEM].zero_()
        self.input_scale = math.sqrt(weight.shape[1])

    def scaled_items(self, items: Tensor) -> Tensor:
        """The input rows of ``items`` (B, L) -> (B, L, D): the item table's rows times ``input_scale``."""
        x = self.item_embedding(items)
        return x * self.input_scale if self.input_scale != 1.0 else x

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits over the catalogue (tied embeddings); column 0 (padding) is -inf so it is never ranked."""
        logits = hidden @ self.item_vectors().to(hidden.dtype).T  # (..., num_items + 1)
        column = torch.arange(logits.shape[-1], device=logits.device)
        return logits.masked_fill(column == PADDING_ITEM, float("-inf"))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def real_events(items: Tensor) -> Tensor:
    """(B, L) bool, True where an item is a real event, False on padding."""
    return items != PADDING_ITEM


def positions_from_first_event(mask: Tensor) -> Tensor:
    """Position of each event counted from the row's first real event, so left padding does not shift it.

    mask (B, L) bool -> (B, L) long; padded steps get 0.
    """
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU, the transformer/Mamba4Rec feed-forward sublayer."""

    def __init__(self, d_model: int, d_inner: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_inner), nn.GELU(), Dropout(dropout), nn.Linear(d_inner, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def xavier_normal_matrices(module: nn.Module) -> None:
    """Every weight matrix of ``module`` xavier-normal (its vectors, biases and norms, keep their init): the
    reference's encoder init (generative-recommenders' SASRec and HSTU ``reset_state``)."""
    for parameter in module.parameters():
        if parameter.dim() >= 2:
            nn.init.xavier_normal_(parameter)
