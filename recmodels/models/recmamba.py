"""RecMamba (arXiv 2403.16371): item embedding -> dropout -> N residual pre-norm Mamba blocks -> final norm.

Streams like every Mamba recommender (``mamba_stack``): long histories chunk by chunk, ``step`` in O(1).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from recmodels.models.dropout import Dropout
from recmodels.models.mamba_mixer import MambaMixer, MixerState
from recmodels.models.mamba_stack import MambaBlockBase, MambaRecommender


@dataclass(frozen=True)
class RecMambaConfig:
    d_model: int = 64
    n_layers: int = 2
    max_len: int = 512
    dropout: float = 0.1
    d_state: int = 16
    d_conv: int = 4  # 0: no causal convolution (the ablation of its share)
    expand: int = 2
    selective: bool = True  # False: delta, B and C independent of the input (the ablation of selection)
    item_dtype: str = "float32"


class ResidualMambaBlock(MambaBlockBase):
    """x + dropout(Mamba(LayerNorm(x))): the pre-norm residual block of mamba-ssm and RecMamba."""

    def __init__(self, config: RecMambaConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mixer = MambaMixer(
            config.d_model, config.d_state, config.d_conv, config.expand, selective=config.selective
        )
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor, state: MixerState | None = None) -> tuple[Tensor, MixerState]:
        mixed, state = self.mix(self.norm(x), mask, state)
        return x + self.dropout(mixed), state


class RecMamba(MambaRecommender):
    def __init__(self, num_items: int, config: RecMambaConfig | None = None) -> None:
        config = config or RecMambaConfig()
        blocks = [ResidualMambaBlock(config) for _ in range(config.n_layers)]
        super().__init__(num_items, config, blocks, nn.LayerNorm(config.d_model))
