"""The skeleton shared by the Mamba recommenders: embedding -> a stack of Mamba blocks -> output norm.

Each block wraps one Mamba mixer and can run whole, from a carried state, or one step at a time, so a
history longer than ``max_len`` is encoded chunk by chunk with the recurrent state carried over, and
``step`` adds one event in O(1). RecMamba and Mamba4Rec differ only in their blocks and norms.
"""

from __future__ import annotations

from torch import Tensor, nn

from recmodels.models.base import SequentialRecommender, real_events
from recmodels.models.dropout import Dropout
from recmodels.models.mamba_mixer import MambaMixer, MixerState

ModelState = list[MixerState]  # one per layer


class MambaBlockBase(nn.Module):
    """A block around one Mamba mixer: whole, from a carried state, or one step at a time (length 1) are
    the same call (``recmodels.ops.mix``)."""

    mixer: MambaMixer

    def mix(self, x: Tensor, mask: Tensor, state: MixerState | None) -> tuple[Tensor, MixerState]:
        return self.mixer.forward_with_state(x, mask, state)


class MambaRecommender(SequentialRecommender):
    """Embedding -> blocks -> output norm, with the streaming API; subclasses choose the blocks."""

    supports_streaming = True

    def __init__(self, num_items: int, config, blocks: list[nn.Module], output_norm: nn.Module) -> None:
        super().__init__(num_items, config.d_model, config.item_dtype)
        self.config = config
        self.embedding_dropout = Dropout(config.dropout)
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
        hidden, state = self.forward_with_state(item[:, None], state)
        return hidden[:, 0], state
