"""GRU4Rec (Hidasi et al. 2016), next-item form: item embedding -> dropout -> GRU -> linear projection.

Left-padded rows are turned into right-padded packed sequences, so pads never enter the GRU state;
a history longer than ``max_len`` is encoded chunk by chunk with the hidden state carried over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recmodels.models.base import SequentialRecommender, real_events
from recmodels.models.dropout import Dropout


@dataclass(frozen=True)
class GRU4RecConfig:
    d_model: int = 64
    n_layers: int = 1
    max_len: int = 512
    dropout: float = 0.1
    item_dtype: str = "float32"


def _shift_rows(x: Tensor, shift: Tensor) -> Tensor:
    """Roll each row of x (B, L, ...) left by shift[b] positions (a right roll for negative shifts)."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length  # (B, L)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class GRU4Rec(SequentialRecommender):
    supports_streaming = True

    def __init__(self, num_items: int, config: GRU4RecConfig | None = None) -> None:
        config = config or GRU4RecConfig()
        super().__init__(num_items, config.d_model, config.item_dtype)
        self.config = config
        self.embedding_dropout = Dropout(config.dropout)
        self.gru = nn.GRU(
            config.d_model,
            config.d_model,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.projection = nn.Linear(config.d_model, config.d_model)

    def init_state(self, batch: int) -> Tensor:
        device = self.item_embedding.weight.device
        return torch.zeros(self.config.n_layers, batch, self.config.d_model, device=device)

    def forward(self, items: Tensor) -> Tensor:
        hidden, _ = self.forward_with_state(items, self.init_state(items.shape[0]))
        return hidden

    def forward_with_state(self, items: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """items (B, L) left padded, state (n_layers, B, D) -> hidden (B, L, D), new state."""
        mask = real_events(items)
        lengths = mask.sum(dim=1)  # (B,)
        pads = items.shape[1] - lengths
        x = self.embedding_dropout(self.item_embedding(_shift_rows(items, pads)))  # right padded
        has_events = lengths > 0
        if self.config.n_layers == 1:
            # Right padded, the pads come after every real event: outputs there are exact without packing
            # (which is about twice as slow on CPU), and the state is the output at the last real event.
            output, _ = self.gru(x, state)
            last_index = (lengths - 1).clamp(min=0)
            last = output[torch.arange(len(items), device=items.device), last_index][None]  # (1, B, D)
        else:
            packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            output, last = self.gru(packed, state)
            output, _ = pad_packed_sequence(output, batch_first=True, total_length=items.shape[1])
        hidden = _shift_rows(self.projection(output), -pads) * mask[..., None]  # back to left padded
        return hidden, torch.where(has_events[None, :, None], last, state)  # an all-pad row keeps its state
