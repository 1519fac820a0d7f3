"""What every sequential recommender shares: tied item embeddings, catalogue scores, padding helpers."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from recmodels.models.dropout import Dropout

PADDING_ITEM = 0


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

    def __init__(self, num_items: int, d_model: int) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1 (items are 1..num_items), got {num_items}")
        self.num_items = num_items
        self.item_embedding = nn.Embedding(num_items + 1, d_model, padding_idx=PADDING_ITEM)
        # Unit-variance hidden states times embeddings of std d^-1/2 give logits of order one.
        nn.init.normal_(self.item_embedding.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PADDING_ITEM].zero_()

    def item_vectors(self, items: Tensor | None = None) -> Tensor:
        """The vectors hidden states are scored against (tied to the item embeddings): the rows of ``items``,
        read through the embedding module so that sparse item gradients stay sparse, or the whole table
        (num_items + 1, D). A model that normalises its item vectors does it here, for every caller."""
        return self.item_embedding.weight if items is None else self.item_embedding(items)

    def scores(self, hidden: Tensor) -> Tensor:
        """Logits over the catalogue (tied embeddings); column 0 (padding) is -inf so it is never ranked."""
        logits = hidden @ self.item_vectors().T  # (..., num_items + 1)
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
