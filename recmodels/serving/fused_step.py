"""RecMamba's single-step update over all layers in one compiled call, so a new event costs arithmetic only.

``MambaRecommender.step`` runs about forty PyTorch operators per event; at batch 1 their dispatch, not the
~70k multiply-adds, is the cost. The kernel (``ops.step_kernels.step_users``) walks every layer of a
``RecMamba`` (pre-norm residual block: LayerNorm, in_proj, causal conv + SiLU, x_proj, dt_proj, selective
state update, gate, out_proj) and the output norm for each user, and a user's several new events one after
another, reading and writing the user's packed state row in place (layout: ``engines.MambaEngine``). A
large batch goes layer by layer instead: its projections become matrix products, the conv and the state
update compiled loops over users.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from recmodels.models.recmamba import RecMamba
from recmodels.ops.step_kernels import conv_silu_step_rows, layer_norm_rows, state_step_rows, step_users


class MambaWeights(NamedTuple):
    """Every layer's weights stacked on a leading layer axis, float32, contiguous (one kernel argument)."""

    embedding: np.ndarray  # (num_items + 1, D)
    norm_w: np.ndarray  # (n_layers, D)
    norm_b: np.ndarray  # (n_layers, D)
    in_w: np.ndarray  # (n_layers, 2E, D)
    in_b: np.ndarray  # (n_layers, 2E), zeros when the layer has no bias
    conv_w: np.ndarray  # (n_layers, E, K)
    conv_b: np.ndarray  # (n_layers, E)
    xproj_w: np.ndarray  # (n_layers, R + 2N, E)
    dtproj_w: np.ndarray  # (n_layers, E, R)
    dt_bias: np.ndarray  # (n_layers, E)
    A: np.ndarray  # (n_layers, E, N), negative
    D: np.ndarray  # (n_layers, E)
    out_w: np.ndarray  # (n_layers, D, E)
    out_b: np.ndarray  # (n_layers, D)
    final_w: np.ndarray  # (D,)
    final_b: np.ndarray  # (D,)
    eps: np.ndarray  # (n_layers + 1,): each block norm's epsilon, then the output norm's


def _stack(tensors: list[torch.Tensor]) -> np.ndarray:
    return np.ascontiguousarray(torch.stack([t.detach().float().cpu() for t in tensors]).numpy())


def _or_zeros(bias: torch.Tensor | None, size: int) -> torch.Tensor:
    return bias if bias is not None else torch.zeros(size)


def mamba_weights(model: RecMamba) -> MambaWeights:
    """The kernel's view of a RecMamba's weights (a copy: later training does not change a running service)."""
    mixers = [block.mixer.weights() for block in model.blocks]  # the same tensors every backend's mix takes
    norms = [block.norm for block in model.blocks]
    return MambaWeights(
        embedding=np.ascontiguousarray(model.item_embedding.weight.detach().float().cpu().numpy()),
        norm_w=_stack([n.weight for n in norms]),
        norm_b=_stack([n.bias for n in norms]),
        in_w=_stack([m.in_proj_weight for m in mixers]),
        in_b=_stack([_or_zeros(m.in_proj_bias, 2 * m.d_inner) for m in mixers]),
        conv_w=_stack([m.conv_weight[:, 0, :] for m in mixers]),
        conv_b=_stack([_or_zeros(m.conv_bias, m.d_inner) for m in mixers]),
        xproj_w=_stack([m.x_proj_weight for m in mixers]),
        dtproj_w=_stack([m.dt_proj_weight for m in mixers]),
        dt_bias=_stack([m.dt_bias for m in mixers]),
        A=_stack([m.A for m in mixers]),
        D=_stack([m.D for m in mixers]),
        out_w=_stack([m.out_proj_weight for m in mixers]),
        out_b=_stack([_or_zeros(m.out_proj_bias, m.out_proj_weight.shape[0]) for m in mixers]),
        final_w=np.ascontiguousarray(model.output_norm.weight.detach().float().cpu().numpy()),
        final_b=np.ascontiguousarray(model.output_norm.bias.detach().float().cpu().numpy()),
        eps=np.array([n.eps for n in norms] + [model.output_norm.eps], dtype=np.float32),
    )


# ---------------------------------------------------------------- large batches: layer by layer, BLAS


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ weight.T (+ bias) through torch's GEMM, which keeps to torch's thread setting."""
    out = torch.from_numpy(np.ascontiguousarray(x)) @ torch.from_numpy(weight).T
    if bias is not None:
        out += torch.from_numpy(bias)
    return out.numpy()


def _step_layerwise(w: MambaWeights, items: np.ndarray, states: np.ndarray, hidden: np.ndarray) -> None:
    """The same step for many users at once: projections as matrix products (BLAS reuses each weight for
    every user), the recurrent parts in compiled loops; one pass per event column."""
    n_layers, e2, _ = w.in_w.shape
    e, taps, n_state, rank = e2 // 2, w.conv_w.shape[2], w.A.shape[2], w.dtproj_w.shape[2]
    layer_size = e * (taps - 1) + e * n_state
    for column in items.T:
        rows = np.flatnonzero(column)
        if not len(rows):
            continue
        every_row = len(rows) == len(column)
        part = states if every_row else states[rows]
        x = w.embedding[column[rows]]  # (b, D)
        normed = np.empty_like(x)
        u = np.empty((len(rows), e), np.float32)
        y = np.empty((len(rows), e), np.float32)
        for layer in range(n_layers):
            base = layer * layer_size
            layer_norm_rows(x, w.norm_w[layer], w.norm_b[layer], w.eps[layer], normed)
            xz = _linear(normed, w.in_w[layer], w.in_b[layer])  # (b, 2E)
            conv_silu_step_rows(xz, w.conv_w[layer], w.conv_b[layer], part, base, u)
            x_dbl = _linear(u, w.xproj_w[layer])  # (b, R + 2N)
            dt = _linear(x_dbl[:, :rank], w.dtproj_w[layer], w.dt_bias[layer])  # (b, E), before softplus
            state_step_rows(part, base + e * (taps - 1), u, dt, x_dbl, rank, w.A[layer], w.D[layer], xz, y)
            x = x + _linear(y, w.out_w[layer], w.out_b[layer])
        last = np.empty_like(x)
        layer_norm_rows(x, w.final_w, w.final_b, w.eps[n_layers], last)
        hidden[rows] = last
        if not every_row:
            states[rows] = part


LAYERWISE_MIN_BATCH = 16  # from here on, matrix products beat per-user matrix-vector loops


def fused_step(weights: MambaWeights, items: np.ndarray, states: np.ndarray, hidden: np.ndarray) -> None:
    """Advance every user's packed state by its events (B, T) in place, and set its last hidden (B, D)."""
    if not states.flags.c_contiguous or states.dtype != np.float32:
        raise ValueError("states must be a C-contiguous float32 array (B, S)")
    if len(items) >= LAYERWISE_MIN_BATCH:
        _step_layerwise(weights, items, states, hidden)
    else:
        step_users(weights, items, states, hidden)
