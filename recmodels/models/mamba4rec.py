"""Mamba4Rec (Liu et al. 2024): embedding -> dropout -> LayerNorm -> N x [post-norm Mamba layer + FFN]."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from recmodels.models.base import FeedForward
from recmodels.models.dropout import Dropout
from recmodels.models.mamba_mixer import MambaMixer, MixerState
from recmodels.models.mamba_stack import MambaBlockBase, MambaRecommender


@dataclass(frozen=True)
class Mamba4RecConfig:
    d_model: int = 64
    n_layers: int = 1  # the paper's default
    max_len: int = 512
    dropout: float = 0.1
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    ffn_multiplier: int = 4
    item_dtype: str = "float32"


class Mamba4RecBlock(MambaBlockBase):
    """LayerNorm(x + dropout(Mamba(x))) then LayerNorm(h + dropout(FFN(h))), both position-wise after Mamba."""

    def __init__(self, config: Mamba4RecConfig) -> None:
        super().__init__()
        self.mixer = MambaMixer(config.d_model, config.d_state, config.d_conv, config.expand)
        self.mixer_norm = nn.LayerNorm(config.d_model)
        self.ffn = FeedForward(config.d_model, config.ffn_multiplier * config.d_model, config.dropout)
        self.ffn_norm = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        mixed, state = self.mix(x, mask, state)
        h = self.mixer_norm(x + self.dropout(mixed))
        return self.ffn_norm(h + self.dropout(self.ffn(h))), state


class Mamba4Rec(MambaRecommender):
    def __init__(self, num_items: int, config: Mamba4RecConfig | None = None) -> None:
        config = config or Mamba4RecConfig()
        blocks = [Mamba4RecBlock(config) for _ in range(config.n_layers)]
        super().__init__(num_items, config, blocks, nn.Identity())
        self.embedding_norm = nn.LayerNorm(config.d_model)

    def embed(self, items: Tensor) -> Tensor:
        return self.embedding_norm(self.embedding_dropout(self.item_embedding(items)))
