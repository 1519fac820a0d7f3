"""Optimizer and gradient clipping for a model whose item embedding has sparse gradients.

With a million-item catalogue a dense AdamW step reads and writes every embedding row and both of its
moment tables, whatever the batch touched. Here the item table goes to ``torch.optim.SparseAdam``
(lazy Adam: moments and weights of the rows in the gradient only) and everything else to AdamW, behind
the one optimizer interface the trainer and its checkpoints use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class ItemRowsAndDense:
    """AdamW over the dense parameters plus SparseAdam over the item embedding's touched rows."""

    def __init__(self, dense: torch.optim.Optimizer, item_rows: torch.optim.SparseAdam) -> None:
        self.dense, self.item_rows = dense, item_rows

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [*self.dense.param_groups, *self.item_rows.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)
        self.item_rows.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.dense.step()
        if self.item_rows.param_groups[0]["params"][0].grad is not None:
            self.item_rows.step()

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict(), "item_rows": self.item_rows.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"dense", "item_rows"}:
            raise ValueError(
                "the checkpoint's optimizer state is from a run without sparse_item_updates: resume it with "
                "the same train.sparse_item_updates, or start over in a new checkpoint folder"
            )
        self.dense.load_state_dict(state["dense"])
        self.item_rows.load_state_dict(state["item_rows"])


def build_sparse_optimizer(
    dense_groups: list[dict[str, Any]],
    item_embedding: nn.Embedding,
    lr: float,
    betas: tuple[float, float],
) -> ItemRowsAndDense:
    """AdamW over ``dense_groups`` and SparseAdam over the item table (whose module has ``sparse=True``)."""
    if not item_embedding.sparse:
        raise ValueError("the item embedding must have sparse=True for row-wise updates")
    return ItemRowsAndDense(
        torch.optim.AdamW(dense_groups, lr=lr, betas=betas),
        torch.optim.SparseAdam([item_embedding.weight], lr=lr, betas=betas),
    )


@torch.no_grad()
def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> Tensor:
    """``clip_grad_norm_`` that also takes sparse gradients (torch's refuses them): total L2 norm, then scale.

    A sparse gradient is coalesced first, so a row read twice in a step counts once with its summed value.
    """
    squares = []
    for parameter in parameters:
        if parameter.grad is None:
            continue
        if parameter.grad.is_sparse:
            parameter.grad = parameter.grad.coalesce()
            squares.append(parameter.grad.values().float().pow(2).sum())
        else:
            squares.append(parameter.grad.float().pow(2).sum())
    if not squares:
        return torch.zeros(())
    total = torch.stack([square.to(squares[0].device) for square in squares]).sum().sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.mul_(scale.to(parameter.grad.device))
    return total
