"""Dropout whose mask is a hash of (seed, position): one pass forward, one backward, no mask stored.

Every model here drops out embeddings and block outputs, and on the CPU ``nn.Dropout`` is among the costliest
ops of a step: it draws a Bernoulli variable per element from torch's serial generator, multiplies twice
and keeps the mask for backward (measured at MovieLens-1M's shape, 128 x 200 x 256 floats: about 50 ms a
call, against under 10 ms for a product of two such tensors). Here one 64-bit draw from torch's generator
seeds a counter-based hash (SplitMix64's finaliser over seed + group index), each hash giving four 16-bit
uniforms for four elements, so a parallel kernel computes ``x * keep / (1 - p)`` in one pass, and backward
recomputes the same mask from the seed instead of reading a stored one; this is how compiled GPU kernels do
dropout (Philox offsets). An element is kept when its 16-bit uniform is at least ``round(p * 65536)``, so
the drop rate is p to within 2^-17. Seeds come from torch's global generator, so seeding, forked RNG states
and checkpoints govern it as they do ``nn.Dropout``. Other devices and dtypes use ``F.dropout``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

UNIFORM_LEVELS = 1 << 16  # each element's uniform draw is 16 bits of a 64-bit hash
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX_1, MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@numba.njit(parallel=True, cache=True, nogil=True)
def _scale_kept(values: np.ndarray, out: np.ndarray, seed: np.uint64, threshold: int, scale: float) -> None:
    """out[i] = values[i] * scale where element i is kept, else 0 (flat float32 arrays)."""
    count = values.size
    for group in numba.prange((count + 3) // 4):
        z = seed + np.uint64(group) * GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * MIX_1
        z = (z ^ (z >> np.uint64(27))) * MIX_2
        z = z ^ (z >> np.uint64(31))
        for lane in range(4):
            index = group * 4 + lane
            if index < count:
                uniform = (z >> np.uint64(16 * lane)) & np.uint64(UNIFORM_LEVELS - 1)
                out[index] = values[index] * scale if uniform >= threshold else 0.0


def _apply_mask(values: Tensor, seed: int, p: float) -> Tensor:
    values = values.contiguous()
    out = torch.empty_like(values)
    threshold = round(p * UNIFORM_LEVELS)
    _scale_kept(values.numpy().reshape(-1), out.numpy().reshape(-1), np.uint64(seed), threshold, 1.0 / (1.0 - p))
    return out


class _HashedDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return _apply_mask(values.detach(), seed, p)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return _apply_mask(grad_output, ctx.seed, ctx.p), None, None


def dropout(values: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(values, p, training)`` in distribution; the hashed kernel for float32 CPU tensors."""
    if not training or p == 0.0:
        return values
    if values.device.type != "cpu" or values.dtype != torch.float32 or p >= 1.0:
        return F.dropout(values, p, training)
    seed = int(torch.randint(0, 2**62, (1,)).item())  # from the global generator: seeded, forked, checkpointed
    return _HashedDropout.apply(values, p, seed)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` (same ``p``, same train/eval behaviour) over ``dropout`` above."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, values: Tensor) -> Tensor:
        return dropout(values, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
