"""SASRec (Kang & McAuley 2018): learned positions + causal softmax self-attention blocks (``transformer``).

Pads are masked as keys; positions count from a row's first real event, so left padding never shifts them.

With ``reference_init``, ``l2_normalize``/``temperature`` and the trainer's per-position negatives and
``adam_beta2`` it follows generative-recommenders' SASRec (the ML-1M recipe in
``benchmarks/literature_parity.py``). What stays different, on purpose:
- the block is pre-norm, x + attention(LN(x)) then x + FFN(LN(x)), with learned LayerNorm weights and GELU;
  theirs (the original SASRec's) takes LN(x) as the query and as the residual, layer-normalises after the
  attention, uses ReLU, and has no final LayerNorm before the unit vectors. Pre-norm is the block every
  attention model here shares, so that the comparison with LinRec measures the attention alone;
- no dropout on the attention weights: on the CPU it takes SDPA off its fused kernel onto an explicit
  (L, L) path, 10x slower at L=2048; the residual and embedding dropout regularise instead;
- positions count from a window's first real event (theirs from the padded sequence's first slot), and
  training reads every ``max_len`` window of a history (theirs each user's last ``max_len`` events).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.models.transformer import TransformerConfig, TransformerRecommender, merge_heads, split_heads


@dataclass(frozen=True)
class SASRecConfig(TransformerConfig):
    """Softmax attention's fields: exactly the shared transformer fields."""


class CausalSelfAttention(nn.Module):
    """Softmax attention over earlier real events (and the query itself, so a pad row is never empty)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
        # No dropout on the attention weights: on the CPU it pushes SDPA off its fused kernel onto the
        # explicit (L, L) path, 10x slower at L=2048; the residual and embedding dropout regularise instead.
        if bool(mask.all()):  # no padding: the memory-efficient causal kernel, no (L, L) mask
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            length = x.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            allowed = causal & mask[:, None, None, :]  # (B, 1, L, L): pads are never keys ...
            allowed = allowed | torch.eye(length, dtype=torch.bool, device=x.device)  # ... but attend to self
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(merge_heads(y))

    def attend_last(self, x: Tensor, mask: Tensor) -> Tensor:
        """The last position's output only (B, D): one query over every real event."""
        q, k, v = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
        is_last = torch.arange(x.shape[1], device=x.device) == x.shape[1] - 1
        allowed = (mask | is_last)[:, None, None, :]  # (B, 1, 1, L)
        y = F.scaled_dot_product_attention(q[:, :, -1:], k, v, attn_mask=allowed)  # (B, H, 1, Dh)
        return self.out(merge_heads(y)[:, 0])


class SASRec(TransformerRecommender):
    def __init__(self, num_items: int, config: SASRecConfig | None = None) -> None:
        config = config or SASRecConfig()
        attentions = [CausalSelfAttention(config.d_model, config.n_heads) for _ in range(config.n_layers)]
        super().__init__(num_items, config, attentions)
