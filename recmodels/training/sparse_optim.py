"""Optimizer and gradient clipping for a model whose item embedding has sparse gradients.

With a million-item catalogue a dense AdamW step reads and writes every embedding row and both of its
moment tables, whatever the batch touched. Here the item table goes to a row-wise optimizer and everything
else to AdamW, behind the one optimizer interface the trainer and its checkpoints use:
- ``adam``: ``torch.optim.SparseAdam`` (lazy Adam: moments and weights of the rows in the gradient only),
  two float32 moments per weight: 8 bytes per weight beside the table.
- ``rowwise_adagrad``: Adagrad with one float32 accumulator per row (the mean squared gradient of the
  row's entries), as torchrec/FBGEMM train embedding tables: 4 bytes per row, so that at LFM-1b's 32 M
  tracks the optimizer adds 129 MB where Adam adds 16.5 GB. It is the optimizer of a bfloat16 table: each
  touched row is updated in float32 and written back by stochastic rounding (round up with probability
  equal to the distance from the lower bfloat16 neighbour), so that updates smaller than a bfloat16 step
  are kept in expectation instead of rounded away.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

ItemOptimizer = Literal["adam", "rowwise_adagrad"]
ADAGRAD_EPS = 1e-8  # FBGEMM's default for its row-wise Adagrad
LOW_HALF = 0xFFFF  # the float32 bits a bfloat16 drops
ROUNDING_RNG = "rounding_rng"  # RowwiseAdagrad's state_dict key for its stochastic rounding's generator


class RowwiseAdagrad(torch.optim.Optimizer):
    """Adagrad on the touched rows of one sparse-gradient table, one float32 accumulator per row:
    a_r += mean_j(g_rj^2), w_r -= lr * g_r / (sqrt(a_r) + eps); a bfloat16 table's rows are updated in
    float32 and stored by stochastic rounding (module docstring)."""

    def __init__(self, table: nn.Parameter, lr: float, seed: int = 0) -> None:
        super().__init__([table], {"lr": lr})
        self.state[table]["sum"] = torch.zeros(table.shape[0], dtype=torch.float32, device=table.device)
        self.generator = torch.Generator(device=table.device).manual_seed(seed)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        table = group["params"][0]
        if table.grad is None:
            return
        grad = table.grad.coalesce()
        rows, values = grad.indices()[0], grad.values().float()
        accumulator = self.state[table]["sum"]
        accumulator.index_add_(0, rows, values.pow(2).mean(dim=1))
        updated = table[rows].float() - group["lr"] * values / (accumulator[rows].sqrt() + ADAGRAD_EPS)[:, None]
        if table.dtype == torch.bfloat16:
            updated = stochastic_bfloat16(updated, self.generator)
        table.index_copy_(0, rows, updated.to(table.dtype))

    def state_dict(self) -> dict[str, Any]:
        """With the rounding noise's generator, so a resumed bfloat16 run rounds as an uninterrupted one."""
        return {**super().state_dict(), ROUNDING_RNG: self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        rounding = state_dict.pop(ROUNDING_RNG, None)
        super().load_state_dict(state_dict)
        for state in self.state.values():  # torch casts loaded state to the table's dtype: keep it float32
            state["sum"] = state["sum"].float()
        if rounding is not None:  # a checkpoint written before the generator was kept: fresh noise
            self.generator.set_state(rounding)


def stochastic_bfloat16(values: Tensor, generator: torch.Generator) -> Tensor:
    """float32 ``values`` rounded to a bfloat16 neighbour at random, unbiased: add uniform noise below the
    kept bits, then drop them (exact in bfloat16, so the final cast does not round again)."""
    bits = values.contiguous().view(torch.int32)
    noise = torch.randint(0, LOW_HALF + 1, values.shape, dtype=torch.int32, generator=generator, device=values.device)
    return ((bits + noise) & ~LOW_HALF).view(torch.float32).to(torch.bfloat16)


class ItemRowsAndDense:
    """AdamW over the dense parameters plus a row-wise optimizer over the item embedding's touched rows."""

    def __init__(self, dense: torch.optim.Optimizer, item_rows: torch.optim.Optimizer) -> None:
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
    item_optimizer: ItemOptimizer = "adam",
    seed: int = 0,
) -> ItemRowsAndDense:
    """AdamW over ``dense_groups`` and ``item_optimizer`` over the item table (whose module has ``sparse=True``)."""
    if not item_embedding.sparse:
        raise ValueError("the item embedding must have sparse=True for row-wise updates")
    table = item_embedding.weight
    if item_optimizer == "rowwise_adagrad":
        rows: torch.optim.Optimizer = RowwiseAdagrad(table, lr, seed)
    else:
        rows = torch.optim.SparseAdam([table], lr=lr, betas=betas)
    return ItemRowsAndDense(torch.optim.AdamW(dense_groups, lr=lr, betas=betas), rows)


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
