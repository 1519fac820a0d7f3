"""Exact full-catalogue ranking and top-K over blocks of items: memory bounded by the block, not the catalogue.

Scoring 1,000 targets against a 4.4 M item catalogue at once would take 17 GB of logits; here a block of
item rows is scored at a time and reduced on the spot, to a target's rank (counts of items above and tied)
or to a running top-K. Items are ids 1..num_items, row i of the embedding table (row 0 is padding).

Ties: ranks are pessimistic (every other item scoring the same counts as above the target), and top-K
orders equal scores by ascending item id, which is what a stable sort of the full scores gives. A NaN
score is never above anything; a target whose own score is NaN (or -inf) gets the worst rank.

A bfloat16 table (``model.item_dtype``) is read a block at a time as float32, never copied whole, and
scored in float32 like any other.

Two paths give the same answers. On CPU with float32 (or bfloat16) weights the GEMM writes each block into one reused
buffer small enough to stay in the last-level cache (``CACHE_BLOCK_BYTES``), and a Numba kernel reduces
it in a single pass (hide seen items, compare and count, or update the running top-K) before it is
evicted, instead of the 4-5 passes that tensor ops take; the GEMM is then most of the cost
(``benchmarks/ranking_speed.py``). Elsewhere (CUDA, half precision, no Numba) a torch path reduces each
block with a few tensor ops and no host synchronisation, on a GPU in larger blocks (``DEVICE_BLOCK_BYTES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

try:
    import numba
except ImportError:  # the torch path serves everything
    numba = None

# CPU: float32 scores of one (rows, block) piece, reduced while still in the last-level cache. Not smaller:
# every block is one parallel GEMM call, and on a loaded machine each call's thread barrier costs more than
# a cache miss (measured: 1 MB blocks ran the bare GEMM 2x slower than 16 MB ones under load).
CACHE_BLOCK_BYTES = 16 * 2**20
DEVICE_BLOCK_BYTES = 64 * 2**20  # GPU: big enough to keep the device busy, small next to its memory
ROW_CHUNK = 1024  # CPU: rows per GEMM call, so that a block stays in cache however many rows are ranked
MIN_BLOCK_ITEMS = 1024  # narrower blocks make the per-block calls dominate
LANES = 128  # top-K kernel: columns checked at once against a row's k-th score before any insertion
MAX_CPU_BLOCK_ITEMS = 2**22  # the kernels count a row of a block in float32, exact below 2**24

Backend = Literal["auto", "torch", "numba"]


def block_items_for(rows: int, block_bytes: int = CACHE_BLOCK_BYTES) -> int:
    """Items per block so that (rows, block) float32 scores stay within ``block_bytes``."""
    return max(MIN_BLOCK_ITEMS, block_bytes // (4 * max(rows, 1)))


class SeenItems:
    """Items to leave out per row (e.g. already in the history), as (row, item) pairs sorted by item, so a
    block finds its pairs by binary search instead of a (rows, catalogue) mask. A target listed here is
    still ranked by its own score: that is computed apart from the blocks."""

    def __init__(self, per_row: Sequence[np.ndarray], device: torch.device) -> None:
        rows = np.concatenate([np.full(len(items), row, np.int64) for row, items in enumerate(per_row)] or [[]])
        items = np.concatenate([np.asarray(items, np.int64) for items in per_row] or [[]])
        width = max(len(per_row), 1)
        pairs = np.unique(items.astype(np.int64) * width + rows.astype(np.int64))  # by item, then row
        self.items = pairs // width
        self.rows = pairs % width
        self.item_tensor = torch.from_numpy(self.items).to(device)
        self.row_tensor = torch.from_numpy(self.rows).to(device)

    def span(self, first_item: int, num_items: int) -> slice:
        """The pairs of items first_item..first_item + num_items - 1."""
        low, high = np.searchsorted(self.items, [first_item, first_item + num_items])
        return slice(int(low), int(high))

    def hide_(self, scores: Tensor, first_item: int) -> None:
        """Set the seen items of ``scores`` (rows, block) of items first_item.. to -inf, in place."""
        pairs = self.span(first_item, scores.shape[1])
        if pairs.start != pairs.stop:
            columns = self.item_tensor[pairs] - first_item
            scores.index_put_((self.row_tensor[pairs], columns), scores.new_tensor(float("-inf")))


@torch.no_grad()
def blockwise_ranks(
    hidden: Tensor,
    weight: Tensor,
    target_items: Tensor,
    seen: SeenItems | None = None,
    block_items: int = 0,
    backend: Backend = "auto",
) -> Tensor:
    """(rows,) rank of each target among items 1..num_items (1 = best), pessimistic on ties.

    rank = 1 + #other items scoring at or above the target. With one block the target's score is read from
    it (the very value its rivals are compared with); with several it is the same dot product computed
    once per row first, and the target's own column is left out of the count. ``backend`` "auto" takes
    the Numba kernel on CPU float32 and the torch path elsewhere.
    """
    num_items = weight.shape[0] - 1
    hidden = hidden.to(score_dtype(weight))
    numba_path = _use_numba(backend, weight)
    block_items = _block_items(block_items, len(hidden), weight.device, numba_path)
    target_scores = _target_scores(hidden, weight, target_items, block_items)
    if numba_path:
        above = _ranks_numba(hidden, weight, target_items, target_scores, seen, block_items)
    else:
        above = _ranks_torch(hidden, weight, target_items, target_scores, seen, block_items)
    worst = target_scores.isnan() | (target_scores == float("-inf"))  # every other item is at or above it
    return torch.where(worst, num_items, above + 1)


def score_dtype(weight: Tensor) -> torch.dtype:
    """The dtype scores are computed in: float32 for a half-precision table (each block upcast), else the
    table's own (float64 in tests)."""
    return torch.float32 if weight.dtype in (torch.bfloat16, torch.float16) else weight.dtype


def _use_numba(backend: Backend, weight: Tensor) -> bool:
    """Whether the Numba kernels serve this call; an explicit "numba" the kernels cannot serve is an error."""
    fits = numba is not None and weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
    if backend == "numba" and not fits:
        raise ValueError(
            "backend='numba' needs Numba and float32 or bfloat16 weights on the CPU, "
            f"got {weight.dtype} on {weight.device}" + ("" if numba is not None else " and no Numba")
        )
    return fits and backend != "torch"


def _block_items(block_items: int, rows: int, device: torch.device, numba_path: bool) -> int:
    """The caller's block width, else: cache-sized on CPU (a row chunk's worth for the Numba kernels, whose
    float32 counts also cap it), larger on a GPU. Cache-sized blocks also make the torch path on CPU 3x
    faster than 64 MB ones."""
    if numba_path:
        return min(block_items or block_items_for(min(rows, ROW_CHUNK)), MAX_CPU_BLOCK_ITEMS)
    return block_items or (block_items_for(rows) if device.type == "cpu" else block_items_for(rows, DEVICE_BLOCK_BYTES))


def _target_scores(hidden: Tensor, weight: Tensor, target_items: Tensor, block_items: int) -> Tensor:
    """(rows,) float32 score of each row's target, ``ROW_CHUNK`` rows at a time: read from the scores when
    one block holds the whole catalogue, else the diagonal of a (chunk, chunk) product of the same kind."""
    one_block = block_items >= weight.shape[0] - 1
    parts = []
    for start in range(0, len(hidden), ROW_CHUNK):
        rows = slice(start, start + ROW_CHUNK)
        if one_block:
            scores = (hidden[rows] @ weight[1:].to(hidden.dtype).T).float()  # the block its rivals are read from
            parts.append(scores.gather(1, target_items[rows, None] - 1)[:, 0])
        else:
            rivals = weight[target_items[rows]].to(hidden.dtype)
            parts.append((hidden[rows] @ rivals.T).float().diagonal().clone())  # clone: frees the rest
    return torch.cat(parts) if parts else hidden.new_empty(0, dtype=torch.float32)


def _ranks_torch(
    hidden: Tensor, weight: Tensor, target_items: Tensor, target_scores: Tensor, seen: SeenItems | None, block: int
) -> Tensor:
    """(rows,) #other items at or above each target: one compare-and-sum per block, no host sync."""
    above = torch.zeros(len(hidden), dtype=torch.int64, device=hidden.device)
    threshold = target_scores[:, None]
    for first, scores in _score_blocks(hidden, weight, block):
        if seen is not None:
            seen.hide_(scores, first)
        above += (scores >= threshold).sum(1)
        inside = (target_items >= first) & (target_items < first + scores.shape[1])
        column = (target_items - first).clamp(0, scores.shape[1] - 1)[:, None]
        above -= (inside & (scores.gather(1, column)[:, 0] >= target_scores)).long()  # not a rival of itself
    return above


def _score_blocks(hidden: Tensor, weight: Tensor, block_items: int) -> Iterator[tuple[int, Tensor]]:
    """(first item id, float32 scores (rows, block)) over items 1..num_items, all written into one buffer:
    a block is valid until the next one is drawn."""
    num_items = weight.shape[0] - 1
    buffer = torch.empty(len(hidden) * min(block_items, num_items), dtype=torch.float32, device=hidden.device)
    for first in range(1, num_items + 1, block_items):
        items = weight[first : first + block_items].to(hidden.dtype)  # a bfloat16 table: this block's copy only
        scores = buffer[: len(hidden) * len(items)].view(len(hidden), len(items))
        if items.dtype == torch.float32:
            torch.mm(hidden, items.T, out=scores)
        else:
            scores.copy_(hidden @ items.T)
        yield first, scores


def _cpu_blocks(
    hidden: Tensor, weight: Tensor, block_items: int, seen: SeenItems | None
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """(first item id, first row, float32 scores (chunk rows, block), seen rows, seen columns) over items
    1..num_items and chunks of ``ROW_CHUNK`` rows, item blocks outermost (a block of the table stays in
    cache over its row chunks). Every block is written into one buffer; the seen pairs are the block's."""
    num_items, rows = weight.shape[0] - 1, len(hidden)
    chunk = max(1, min(rows, ROW_CHUNK))
    buffer = torch.empty(chunk * min(block_items, num_items), dtype=torch.float32)
    no_pairs = np.empty(0, np.int64)
    for first in range(1, num_items + 1, block_items):
        items = weight[first : first + block_items].float().T  # (d, block); a bfloat16 block's copy only
        pairs = seen.span(first, items.shape[1]) if seen is not None else slice(0, 0)
        seen_rows = seen.rows[pairs] if seen is not None else no_pairs
        seen_columns = seen.items[pairs] - first if seen is not None else no_pairs
        for row0 in range(0, rows, chunk):  # the kernel skips the pairs of other chunks' rows
            part = hidden[row0 : row0 + chunk]
            scores = buffer[: len(part) * items.shape[1]].view(len(part), items.shape[1])
            torch.mm(part, items, out=scores)
            yield first, row0, scores.numpy(), seen_rows, seen_columns


def _ranks_numba(
    hidden: Tensor, weight: Tensor, target_items: Tensor, target_scores: Tensor, seen: SeenItems | None, block: int
) -> Tensor:
    """(rows,) #other items at or above each target, each cache-sized block counted by the Numba kernel."""
    above = np.zeros(len(hidden), np.int64)
    targets = target_items.cpu().numpy().astype(np.int64)
    thresholds = target_scores.numpy()
    for first, row0, scores, seen_rows, seen_columns in _cpu_blocks(hidden, weight, block, seen):
        _count_kernel(scores, row0, first, targets, thresholds, seen_rows, seen_columns, above)
    return torch.from_numpy(above)


@torch.no_grad()
def blockwise_topk(
    hidden: Tensor,
    weight: Tensor,
    k: int,
    seen: SeenItems | None = None,
    block_items: int = 0,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """(values, item ids), each (rows, min(k, num_items)), best first: the top-K items 1..num_items per row.

    Seen items and NaN scores count as -inf. Equal scores keep ascending item ids, within and across blocks.
    ``backend`` as in ``blockwise_ranks``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    hidden = hidden.to(score_dtype(weight))
    numba_path = _use_numba(backend, weight)
    block_items = _block_items(block_items, len(hidden), weight.device, numba_path)
    if numba_path:
        return _topk_numba(hidden, weight, k, seen, block_items)
    return _topk_torch(hidden, weight, k, seen, block_items)


def _topk_numba(
    hidden: Tensor, weight: Tensor, k: int, seen: SeenItems | None, block_items: int
) -> tuple[Tensor, Tensor]:
    """Each row's running top-K updated block by block by the Numba kernel: one pass over a block, an
    insertion only where a score beats the row's k-th."""
    k = min(k, weight.shape[0] - 1)
    values = np.full((len(hidden), k), -np.inf, np.float32)
    items = np.zeros((len(hidden), k), np.int64)
    filled = np.zeros(len(hidden), np.int64)
    for first, row0, scores, seen_rows, seen_columns in _cpu_blocks(hidden, weight, block_items, seen):
        _topk_kernel(scores, row0, first, seen_rows, seen_columns, values, items, filled)
    return torch.from_numpy(values), torch.from_numpy(items)


def _topk_torch(
    hidden: Tensor, weight: Tensor, k: int, seen: SeenItems | None, block_items: int
) -> tuple[Tensor, Tensor]:
    """A running top-K merged with each block's own top-K; the merge is a stable sort with the running
    (lower ids) first, so ties keep ascending ids across blocks too. Once a row holds k items, a block
    can only change it with a score above its k-th (an equal one has a higher id and loses the tie), so
    only such rows are merged."""
    best_values = hidden.new_empty((len(hidden), 0), dtype=torch.float32)
    best_items = torch.empty((len(hidden), 0), dtype=torch.int64, device=hidden.device)
    for first, scores in _score_blocks(hidden, weight, block_items):
        scores.nan_to_num_(nan=float("-inf"))
        if seen is not None:
            seen.hide_(scores, first)
        if best_values.shape[1] < k:  # still filling up: every row takes part
            best_values, best_items = _merge(best_values, best_items, scores, first, k)
            continue
        rows = torch.nonzero((scores > best_values[:, -1:]).any(1))[:, 0]
        if len(rows):
            best_values[rows], best_items[rows] = _merge(best_values[rows], best_items[rows], scores[rows], first, k)
    return best_values, best_items


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


def _merge(values: Tensor, items: Tensor, scores: Tensor, first: int, k: int) -> tuple[Tensor, Tensor]:
    """The running top-K (values, items) merged with the top-K of a block of scores of items first.."""
    block_values, columns = _top_of_block(scores, k)
    values = torch.cat([values, block_values], dim=1)
    items = torch.cat([items, columns + first], dim=1)
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), items.gather(1, order)


# ---------------------------------------------------------------- Numba kernels (CPU, float32 scores)
# Single-threaded on purpose: they run between torch's parallel GEMM calls, one per block, and a second
# OpenMP pool (Numba's) taking turns with torch's that often fights it for the cores (``recmodels/training/threads.py``;
# a parallel count measured 3x slower than this serial one under load). One core compares and counts at
# 25 GB/s out of the last-level cache (60 GB/s out of L2); the GEMM writes about 10 GB/s of scores on two.
#
# Counts are summed in float32 lanes: 8-16 of them fit a SIMD register, where int64 sums fit 4 (measured
# 2x faster out of L2). Every partial sum is an integer below 2**24, so it is exact in any order, and
# fastmath is limited to reassociation: comparisons with NaN and infinities stay IEEE.
FASTMATH = {"reassoc"}


# The helpers take a slice, not (row, start, stop): an index known to start at 0 needs no negative-index
# wraparound, and only then does the loop vectorize (measured 13 -> 29 GB/s).


def _count_at_least(scores, threshold):
    """#scores at or above ``threshold`` (at most ``MAX_CPU_BLOCK_ITEMS``); a NaN score is never counted."""
    lanes = np.float32(0.0)
    for column in range(scores.shape[0]):
        lanes += np.float32(1.0) if scores[column] >= threshold else np.float32(0.0)
    return np.int64(lanes)


def _count_above(scores, threshold):
    """#scores strictly above ``threshold`` (at most ``MAX_CPU_BLOCK_ITEMS``)."""
    lanes = np.float32(0.0)
    for column in range(scores.shape[0]):
        lanes += np.float32(1.0) if scores[column] > threshold else np.float32(0.0)
    return np.int64(lanes)


def _hide_seen(scores, row0, seen_rows, seen_columns):
    """The seen pairs of this block that fall in this row chunk set to -inf."""
    for pair in range(len(seen_rows)):
        row = seen_rows[pair] - row0
        if 0 <= row < scores.shape[0]:
            scores[row, seen_columns[pair]] = -np.inf


def _count_at_or_above(scores, row0, first, targets, thresholds, seen_rows, seen_columns, above):
    """above[row0 + i] += #columns of scores[i] at or above the row's threshold, its own target left out:
    one branch-free pass per row while the block is in cache."""
    _hide_seen(scores, row0, seen_rows, seen_columns)
    for i in range(scores.shape[0]):
        threshold = thresholds[row0 + i]
        count = _count_at_least(scores[i], threshold)
        own = targets[row0 + i] - first
        if 0 <= own < scores.shape[1] and scores[i, own] >= threshold:
            count -= 1
        above[row0 + i] += count


def _update_top_k(scores, row0, first, seen_rows, seen_columns, values, items, filled):
    """Rows row0.. of the running top-K (values, items descending, ``filled`` entries so far) updated with a
    block of scores of items first..; NaN counts as -inf.

    Items arrive in ascending id order, so a later item enters only with a score strictly above the k-th,
    and is inserted after every equal score: ties keep ascending ids. Most blocks hold no such score, so
    ``LANES`` columns are first checked at once with a branch-free count."""
    _hide_seen(scores, row0, seen_rows, seen_columns)
    k = values.shape[1]
    for i in range(scores.shape[0]):
        row = row0 + i
        column = 0
        while filled[row] < k and column < scores.shape[1]:  # filling up: every item enters
            _insert(values[row], items[row], filled[row], scores[i, column], first + column)
            filled[row] += 1
            column += 1
        kth = values[row, k - 1]
        for start in range(column, scores.shape[1], LANES):
            if _count_above(scores[i, start : start + LANES], kth):
                for lane in range(start, min(start + LANES, scores.shape[1])):
                    if scores[i, lane] > kth:
                        _insert(values[row], items[row], k - 1, scores[i, lane], first + lane)
                        kth = values[row, k - 1]


def _insert(values, items, position, score, item):
    """Put (score, item) at ``position`` of a descending list and move it up past lower scores only."""
    if score != score:
        score = -np.inf
    while position > 0 and values[position - 1] < score:
        values[position] = values[position - 1]
        items[position] = items[position - 1]
        position -= 1
    values[position] = score
    items[position] = item


def _compiled(function: Callable, inline: bool = False) -> Callable | None:
    """``function`` compiled with Numba (cached on disk when a cache location is writable), None without
    Numba. An inlined helper takes its caller's fastmath flags."""
    if numba is None:
        return None
    options = {"error_model": "numpy", "fastmath": FASTMATH} | ({"inline": "always"} if inline else {})
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # no writable cache location: compile per process instead of failing the import
        return numba.njit(cache=False, **options)(function)


_count_at_least = _compiled(_count_at_least, inline=True) or _count_at_least
_count_above = _compiled(_count_above, inline=True) or _count_above
_hide_seen = _compiled(_hide_seen, inline=True) or _hide_seen
_insert = _compiled(_insert, inline=True) or _insert
_count_kernel = _compiled(_count_at_or_above)
_topk_kernel = _compiled(_update_top_k)
