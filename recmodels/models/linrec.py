"""LinRec (Liu et al., SIGIR 2023): SASRec with L2-normalised ELU linear attention, made causal.

LinRec scores with rho_row(elu(Q)) (rho_col(elu(K))^T V), where rho_col normalises each key column over
the sequence. Over the whole sequence that sees the future, so here a query at t normalises key
columns over events 0..t only: with c_t[j] = ||elu(K)[0..t, j]||, the output is
(q_t / c_t) . sum_{s<=t} k_s v_s^T, a prefix sum. It is computed chunk by chunk (quadratic inside a
chunk, a (Dh, Dh) running sum across chunks): O(L * d^2) time, O(L * d) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.models.transformer import TransformerConfig, TransformerRecommender, merge_heads, split_heads

EPS = 1e-6


@dataclass(frozen=True)
class LinRecConfig(TransformerConfig):
    """The shared transformer fields, plus the prefix-sum chunk length of the causal linear attention."""

    chunk_size: int = 64


def causal_linear_attention(q: Tensor, k: Tensor, v: Tensor, chunk_size: int) -> Tensor:
    """sum_{s<=t} (q_t . k_s) v_s for (B, H, L, Dh) inputs, without materialising (L, Dh, Dh) or (L, L).

    Every chunk at once: the sequence is cut into chunks of ``chunk_size`` (the last one padded with zero
    keys and values, which add nothing), each chunk's causal (T, T) block and its (Dh, Dh) sum of k_s v_s^T
    come from one batched product each, and a cumulative sum over chunks carries the earlier chunks' sums.
    A Python loop over chunks instead issued four small products per chunk (128 at L=2048)."""
    batch, heads, length = q.shape[:3]
    chunks = -(-length // chunk_size)
    padding = chunks * chunk_size - length
    q_c, k_c, v_c = (
        F.pad(t, (0, 0, 0, padding)).reshape(batch, heads, chunks, chunk_size, t.shape[-1]) for t in (q, k, v)
    )  # (B, H, C, T, D)
    within = (q_c @ k_c.transpose(-1, -2)).tril()  # (B, H, C, T, T)
    chunk_sums = k_c.transpose(-1, -2) @ v_c  # (B, H, C, Dh, Dv)
    earlier = F.pad(chunk_sums.cumsum(dim=2)[:, :, :-1], (0, 0, 0, 0, 1, 0))  # sums over the chunks before each
    outputs = within @ v_c + q_c @ earlier  # (B, H, C, T, Dv)
    return outputs.reshape(batch, heads, chunks * chunk_size, v.shape[-1])[:, :, :length]


class CausalLinearAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, chunk_size: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.chunk_size = n_heads, chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def features(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (split_heads(part, self.n_heads) for part in self.qkv(x).chunk(3, dim=-1))
        keep = mask[:, None, :, None].to(x.dtype)  # (B, 1, L, 1): pads are neither keys nor values
        return F.elu(q), F.elu(k) * keep, v * keep

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.features(x, mask)
        q = F.normalize(q, dim=-1, eps=EPS)  # rows of Q
        # Columns of K over 0..t; clamped inside the root so the gradient stays finite at all-pad prefixes.
        key_column_norm = k.square().cumsum(dim=2).clamp_min(EPS**2).sqrt()
        y = causal_linear_attention(q / key_column_norm, k, v, self.chunk_size)
        return self.out(merge_heads(y))

    def attend_last(self, x: Tensor, mask: Tensor) -> Tensor:
        """The last position's output only (B, D): its query against the sums over all events."""
        q, k, v = self.features(x, mask)
        q = F.normalize(q[:, :, -1:], dim=-1, eps=EPS)  # (B, H, 1, Dh)
        key_column_norm = k.square().sum(dim=2, keepdim=True).clamp_min(EPS**2).sqrt()  # (B, H, 1, Dh)
        y = (q / key_column_norm) @ (k.transpose(-1, -2) @ v)  # (B, H, 1, Dh)
        return self.out(merge_heads(y)[:, 0])


class LinRec(TransformerRecommender):
    def __init__(self, num_items: int, config: LinRecConfig | None = None) -> None:
        config = config or LinRecConfig()
        attentions = [
            CausalLinearAttention(config.d_model, config.n_heads, config.chunk_size) for _ in range(config.n_layers)
        ]
        super().__init__(num_items, config, attentions)
