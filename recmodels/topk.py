"""Exact full-catalogue ranking and top-K over blocks of items: memory bounded by the block, not the catalogue.

Scoring 1,000 targets against a 4.4 M item catalogue at once would take 17 GB of logits; here a block of
item rows is scored at a time and reduced on the spot, to a target's rank (counts of items above and tied)
or to a running top-K. Items are ids 1..num_items, row i of the embedding table (row 0 is padding).

Ties: ranks are pessimistic (every other item scoring the same counts as above the target), and top-K
orders equal scores by ascending item id, which is what a stable sort of the full scores gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

BLOCK_BYTES = 64 * 2**20  # float32 scores of one (rows, block) piece: the evaluation's working memory


def block_items_for(rows: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Items per block so that (rows, block) float32 scores stay within ``block_bytes``."""
    return max(1024, block_bytes // (4 * max(rows, 1)))


class SeenItems:
    """Items to leave out per row (e.g. already in the history), as (row, item) pairs sorted by item, so a
    block finds its pairs by binary search instead of a (rows, catalogue) mask."""

    def __init__(self, per_row: Sequence[np.ndarray], device: torch.device) -> None:
        rows = np.concatenate([np.full(len(items), row, np.int64) for row, items in enumerate(per_row)] or [[]])
        items = np.concatenate([np.asarray(items, np.int64) for items in per_row] or [[]])
        order = np.argsort(items, kind="stable")
        self.items = items[order].astype(np.int64)
        self.rows = torch.from_numpy(rows[order].astype(np.int64)).to(device)
        self.item_tensor = torch.from_numpy(self.items).to(device)

    def hide(self, scores: Tensor, first_item: int) -> Tensor:
        """``scores`` (rows, block) of items first_item.. with the seen ones set to -inf."""
        low, high = np.searchsorted(self.items, [first_item, first_item + scores.shape[1]])
        if low == high:
            return scores
        columns = self.item_tensor[low:high] - first_item
        return scores.index_put((self.rows[low:high], columns), scores.new_tensor(float("-inf")))


def item_blocks(
    hidden: Tensor, weight: Tensor, block_items: int, seen: SeenItems | None
) -> Iterator[tuple[int, Tensor]]:
    """(first item id, float32 scores (rows, block)) over items 1..num_items; NaN scores become -inf."""
    hidden = hidden.to(weight.dtype)
    for first in range(1, weight.shape[0], block_items):
        scores = (hidden @ weight[first : first + block_items].T).float().nan_to_num(nan=float("-inf"))
        yield first, seen.hide(scores, first) if seen is not None else scores


@torch.no_grad()
def blockwise_ranks(
    hidden: Tensor, weight: Tensor, target_items: Tensor, seen: SeenItems | None = None, block_items: int = 0
) -> Tensor:
    """(rows,) rank of each target among items 1..num_items (1 = best), pessimistic on ties.

    rank = 1 + #other items scoring above the target + #other items scoring the same. With one block the
    target's score is read from it (the very value its rivals are compared with); with several it is the
    same dot product computed once per row first.
    """
    num_items = weight.shape[0] - 1
    block_items = block_items or block_items_for(len(hidden))
    blocks = item_blocks(hidden, weight, block_items, seen)
    if block_items >= num_items:
        only = next(blocks)
        target = only[1].gather(1, target_items[:, None] - 1)
        blocks = iter([only])
    else:
        target = (hidden.to(weight.dtype) @ weight[target_items].T).float().diagonal()[:, None]
        target = target.nan_to_num(nan=float("-inf"))
    above = torch.zeros(len(hidden), dtype=torch.int64, device=hidden.device)
    for first, scores in blocks:
        inside = (target_items >= first) & (target_items < first + scores.shape[1])
        own = torch.nonzero(inside)[:, 0]
        scores[own, target_items[own] - first] = float("nan")  # the target is no rival of itself
        above += (scores >= target).sum(1)
    return above + 1


def _top_of_block(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best columns of each row, equal scores by ascending column: (values, columns), best first."""
    k = min(k, scores.shape[1])
    kth = scores.topk(k, dim=1).values[:, -1:]  # (rows, 1)
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(1, keepdim=True)  # how many of the tied columns fit, lowest ids first
    if bool((tied.sum(1, keepdim=True) > room).any()):  # more ties than room (rare with float scores)
        tied = tied & (tied.cumsum(1) <= room)
    chosen = above | tied
    columns = torch.nonzero(chosen)[:, 1].view(len(scores), k)  # ascending column per row
    values = scores.gather(1, columns)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), columns.gather(1, order)


@torch.no_grad()
def blockwise_topk(
    hidden: Tensor, weight: Tensor, k: int, seen: SeenItems | None = None, block_items: int = 0
) -> tuple[Tensor, Tensor]:
    """(values, item ids), each (rows, k), best first: the top-K items 1..num_items per row of ``hidden``.

    A running top-K is merged with each block's own top-K; the merge is a stable sort with the running
    (lower ids) first, so ties keep ascending ids across blocks too. Once a row holds k items, a block
    can only change it with a score above its k-th (an equal one has a higher id and loses the tie), so
    only such rows are merged. Seen items score -inf.
    """
    block_items = block_items or block_items_for(len(hidden))
    best_values = hidden.new_empty((len(hidden), 0), dtype=torch.float32)
    best_items = torch.empty((len(hidden), 0), dtype=torch.int64, device=hidden.device)
    for first, scores in item_blocks(hidden, weight, block_items, seen):
        if best_values.shape[1] < k:  # still filling up: every row takes part
            best_values, best_items = _merge(best_values, best_items, scores, first, k)
            continue
        rows = torch.nonzero((scores > best_values[:, -1:]).any(1))[:, 0]
        if len(rows):
            best_values[rows], best_items[rows] = _merge(best_values[rows], best_items[rows], scores[rows], first, k)
    return best_values, best_items


def _merge(values: Tensor, items: Tensor, scores: Tensor, first: int, k: int) -> tuple[Tensor, Tensor]:
    """The running top-K (values, items) merged with the top-K of a block of scores of items first.."""
    block_values, columns = _top_of_block(scores, k)
    values = torch.cat([values, block_values], dim=1)
    items = torch.cat([items, columns + first], dim=1)
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), items.gather(1, order)
