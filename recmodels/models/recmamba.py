"""RecMamba (arXiv 2403.16371): item embedding -> dropout -> N residual pre-norm Mamba blocks -> final norm.

Also the streaming machinery shared with Mamba4Rec: a history longer than ``max_len`` is encoded
chunk by chunk with the recurrent state carried over, and ``step`` adds one event in O(1).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from recmodels.models.base import SequentialRecommender, real_events
from recmodels.models.mamba_mixer import MambaMixer, MixerState

ModelState = list[MixerState]  # one per layer


@dataclass(frozen=True)
class RecMambaConfig:
    d_model: int = 64
    n_layers: int = 2
    max_len: int = 512
    dropout: float = 0.1
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2


class MambaBlockBase(nn.Module):
    """A block around one Mamba mixer that can run whole, from a carried state, or one step at a time."""

    mixer: MambaMixer

    def mix(self, x: Tensor, mask: Tensor, state: MixerState | None, single_step: bool):
        if single_step:
            return self.mixer.step(x, mask, state)
        if state is None:
            return self.mixer(x, mask), None
        return self.mixer.forward_with_state(x, mask, state)


class ResidualMambaBlock(MambaBlockBase):
    """x + dropout(Mamba(LayerNorm(x))): the pre-norm residual block of mamba-ssm and RecMamba."""

    def __init__(self, config: RecMambaConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mixer = MambaMixer(config.d_model, config.d_state, config.d_conv, config.expand)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor, state: MixerState | None = None, single_step: bool = False):
        mixed, state = self.mix(self.norm(x), mask, state, single_step)
        return x + self.dropout(mixed), state


class MambaRecommender(SequentialRecommender):
    """Embedding -> blocks -> output norm, with the streaming API; subclasses choose the blocks."""

    supports_streaming = True

    def __init__(self, num_items: int, config, blocks: list[nn.Module], output_norm: nn.Module) -> None:
        super().__init__(num_items, config.d_model)
        self.config = config
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.output_norm = output_norm

    def embed(self, items: Tensor) -> Tensor:
        return self.embedding_dropout(self.item_embedding(items))

    def forward(self, items: Tensor) -> Tensor:
        mask = real_events(items)  # (B, L)
        x = self.embed(items)  # (B, L, D)
        for block in self.blocks:
            x, _ = block(x, mask)
        return self.output_norm(x)

    def init_state(self, batch: int) -> ModelState:
        device = self.item_embedding.weight.device
        return [block.mixer.init_state(batch, device) for block in self.blocks]

    def forward_with_state(self, items: Tensor, state: ModelState) -> tuple[Tensor, ModelState]:
        """A chunk of items (B, L) continuing each user's history from ``state``."""
        mask = real_events(items)
        x = self.embed(items)
        new_state = []
        for block, layer_state in zip(self.blocks, state, strict=True):
            x, layer_state = block(x, mask, layer_state)
            new_state.append(layer_state)
        return self.output_norm(x), new_state

    def step(self, item: Tensor, state: ModelState) -> tuple[Tensor, ModelState]:
        """One new event per user (B,) -> hidden (B, D) and the updated state; item 0 leaves it as is."""
        mask = real_events(item)
        x = self.embed(item)  # (B, D)
        new_state = []
        for block, layer_state in zip(self.blocks, state, strict=True):
            x, layer_state = block(x, mask, layer_state, single_step=True)
            new_state.append(layer_state)
        return self.output_norm(x), new_state


class RecMamba(MambaRecommender):
    def __init__(self, num_items: int, config: RecMambaConfig | None = None) -> None:
        config = config or RecMambaConfig()
        blocks = [ResidualMambaBlock(config) for _ in range(config.n_layers)]
        super().__init__(num_items, config, blocks, nn.LayerNorm(config.d_model))
