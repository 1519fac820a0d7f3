"""The transformer skeleton shared by SASRec and LinRec: learned positions, pre-norm blocks, a final norm.

The models differ only in the attention module each block holds. Positions count from a row's first
real event, so left padding never shifts them; an attention module masks pads as keys itself.

Two options bring the published SASRec recipe's (generative-recommenders) parametrisation: ``reference_init``
(item table truncated N(0, 0.02) read times sqrt(d_model), positions truncated N(0, d^-1/2), xavier-normal
weight matrices) and the cosine head (``l2_normalize``, ``temperature``). By default item vectors start at
N(0, d^-1/2), read as they are, and layers keep torch's default init.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from recmodels.models.base import (
    FeedForward,
    SequentialRecommender,
    positions_from_first_event,
    real_events,
    xavier_normal_matrices,
)
from recmodels.models.dropout import Dropout


@dataclass(frozen=True)
class TransformerConfig:
    """The fields (and defaults) every attention model here shares; each model's config extends it."""

    d_model: int = 64
    n_layers: int = 2
    max_len: int = 512
    dropout: float = 0.2
    n_heads: int = 2
    ffn_multiplier: int = 4
    reference_init: bool = False
    l2_normalize: bool = False
    temperature: float = 1.0
    item_dtype: str = "float32"


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)  # (B, H, L, Dh)


def merge_heads(x: Tensor) -> Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)  # (B, L, D)


class TransformerBlock(nn.Module):
    """Pre-norm: x + dropout(attention(LN(x))), then x + dropout(FFN(LN(x)))."""

    def __init__(self, attention: nn.Module, d_model: int, ffn_multiplier: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = attention
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_multiplier * d_model, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))

    def forward_last(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D) -> (B, D) at the last position, skipping the other positions' queries and FFN."""
        y = x[:, -1] + self.dropout(self.attention.attend_last(self.attention_norm(x), mask))
        return y + self.dropout(self.ffn(self.ffn_norm(y)))


class TransformerRecommender(SequentialRecommender):
    """Item + learned position embeddings -> blocks -> final norm (or unit vectors) / temperature; histories
    truncated to ``max_len``."""

    def __init__(self, num_items: int, config, attentions: list[nn.Module]) -> None:
        super().__init__(num_items, config.d_model, config.item_dtype)
        self.config = config
        self.use_cosine_head(config.l2_normalize, config.temperature)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        nn.init.normal_(self.position_embedding.weight, std=config.d_model**-0.5)
        self.embedding_dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(attention, config.d_model, config.ffn_multiplier, config.dropout)
            for attention in attentions
        )
        self.output_norm = nn.LayerNorm(config.d_model)
        if config.reference_init:
            std = config.d_model**-0.5
            nn.init.trunc_normal_(self.position_embedding.weight, std=std, a=-2 * std, b=2 * std)
            xavier_normal_matrices(self.blocks)
            self.reference_item_init()

    def forward(self, items: Tensor) -> Tensor:
        x, mask = self.embed(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.read_out(x, self.output_norm)

    def forward_last(self, items: Tensor) -> Tensor:
        """``forward(items)[:, -1]`` (B, D) for evaluation, with the last block computing one position."""
        x, mask = self.embed(items)
        for block in self.blocks[:-1]:
            x = block(x, mask)
        return self.read_out(self.blocks[-1].forward_last(x, mask), self.output_norm)

    def embed(self, items: Tensor) -> tuple[Tensor, Tensor]:
        items = items[:, -self.config.max_len :]  # attention models see at most the last max_len events
        mask = real_events(items)  # (B, L)
        positions = positions_from_first_event(mask)
        x = self.scaled_items(items) + self.position_embedding(positions)  # (B, L, D)
        return self.embedding_dropout(x) * mask[..., None], mask
