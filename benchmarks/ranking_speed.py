"""Exact full-catalogue ranking and top-10 against the bare score product of the same shape, new vs old.

    .venv/bin/python benchmarks/ranking_speed.py            # ~10 minutes on 2 idle cores, far more under load
    .venv/bin/python benchmarks/ranking_speed.py --quick    # a smoke run of a few seconds

Each cell ranks ``rows`` targets (random hidden states, d_model 64, float32, seed 0) among a random
catalogue, with 200 seen items per target filtered, and takes their top-10, with:
  new     : ``recmodels.evaluation.topk`` (on CPU float32: cache-sized blocks reduced by the Numba kernels);
  old     : the implementation it replaced (64 MB blocks: matmul, nan_to_num copy, seen index_put, NaN
            scatter at the target, compare, sum; top-K by merging each block's topk), kept here as the
            reference the new results are checked against; left out above ``--old-max`` rows x items;
  bare    : ``torch.mm`` alone into one reused buffer over the very (row chunk, item block) tiles the new
            ranking scores: what computing every score costs at best, the ratios' denominator;
  bare @  : the literal ``hidden @ table.T``, allocating the whole (rows, items) matrix, where it is at
            most ``--alloc-limit-gb``; for reference only: writing the matrix to fresh memory costs more
            than the product itself.
All of them run in this one process, interleaved within each of ``--repeats`` rounds (one round above
``--once-above`` rows x items), so a load on the machine weighs on each alike; times are the median
[min-max], after one warm-up call that loads the Numba kernels. Peak memory is the largest rise of the
resident set above what was resident at the call (table, hidden states, seen items: ``PeakMemory``),
after ``malloc_trim`` hands freed heap back so that a reused allocation still shows. Writes
benchmarks/results/ranking_speed/ranking_speed.json (``--quick``: ranking_speed_quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measured_child import median_range  # noqa: E402
from recmodels.evaluation import topk  # noqa: E402
from recmodels.evaluation.cost import PeakMemory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ranking_speed"
D_MODEL, SEEN_PER_TARGET, K = 64, 200, 10
OLD_BLOCK_BYTES = 64 * 2**20


# ---------------------------------------------------------------- the replaced implementation


class OldSeenItems:
    """Seen (row, item) pairs sorted by item; a block's pairs set to -inf out of place, as before."""

    def __init__(self, per_row: Sequence[np.ndarray]) -> None:
        rows = np.concatenate([np.full(len(items), row, np.int64) for row, items in enumerate(per_row)])
        items = np.concatenate([np.asarray(items, np.int64) for items in per_row])
        order = np.argsort(items, kind="stable")
        self.items, self.rows = items[order], torch.from_numpy(rows[order])
        self.item_tensor = torch.from_numpy(self.items)

    def hide(self, scores: Tensor, first: int) -> Tensor:
        low, high = np.searchsorted(self.items, [first, first + scores.shape[1]])
        if low == high:
            return scores
        columns = self.item_tensor[low:high] - first
        return scores.index_put((self.rows[low:high], columns), scores.new_tensor(float("-inf")))


def old_blocks(hidden: Tensor, weight: Tensor, seen: OldSeenItems) -> Iterator[tuple[int, Tensor]]:
    block = max(1024, OLD_BLOCK_BYTES // (4 * len(hidden)))
    for first in range(1, weight.shape[0], block):
        scores = (hidden @ weight[first : first + block].T).float().nan_to_num(nan=float("-inf"))
        yield first, seen.hide(scores, first)


def old_ranks(hidden: Tensor, weight: Tensor, target_items: Tensor, seen: OldSeenItems) -> Tensor:
    """Several blocks: the target's score from a (rows, rows) product, its own column set to NaN per block."""
    target = (hidden @ weight[target_items].T).diagonal()[:, None].nan_to_num(nan=float("-inf"))
    above = torch.zeros(len(hidden), dtype=torch.int64)
    for first, scores in old_blocks(hidden, weight, seen):
        own = torch.nonzero((target_items >= first) & (target_items < first + scores.shape[1]))[:, 0]
        scores[own, target_items[own] - first] = float("nan")
        above += (scores >= target).sum(1)
    return above + 1


def old_topk(hidden: Tensor, weight: Tensor, k: int, seen: OldSeenItems) -> tuple[Tensor, Tensor]:
    """A running top-K merged with the rows of each block that beat their k-th score."""
    values, items = torch.empty((len(hidden), 0)), torch.empty((len(hidden), 0), dtype=torch.int64)
    for first, scores in old_blocks(hidden, weight, seen):
        filling = values.shape[1] < k  # every row takes part until it holds k items
        rows = torch.arange(len(hidden)) if filling else torch.nonzero((scores > values[:, -1:]).any(1))[:, 0]
        if len(rows) == 0:
            continue
        block_values, columns = old_top_of_block(scores[rows], k)
        merged_values = torch.cat([values[rows], block_values], dim=1)
        merged_items = torch.cat([items[rows], columns + first], dim=1)
        order = merged_values.argsort(dim=1, descending=True, stable=True)[:, :k]
        if filling:
            values, items = merged_values.gather(1, order), merged_items.gather(1, order)
        else:
            values[rows], items[rows] = merged_values.gather(1, order), merged_items.gather(1, order)
    return values, items


def old_top_of_block(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    kth = scores.topk(k, dim=1).values[:, -1:]
    above, tied = scores > kth, scores == kth
    room = k - above.sum(1, keepdim=True)
    if bool((tied.sum(1, keepdim=True) > room).any()):
        tied = tied & (tied.cumsum(1) <= room)
    columns = torch.nonzero(above | tied)[:, 1].view(len(scores), k)
    values = scores.gather(1, columns)
    order = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, order), columns.gather(1, order)


# ---------------------------------------------------------------- the bare products


def bare_gemm(hidden: Tensor, weight: Tensor) -> None:
    """Every score of the new ranking's tiles, computed and dropped: the GEMM and nothing else."""
    chunk = min(len(hidden), topk.ROW_CHUNK)
    block = topk.block_items_for(chunk)
    buffer = torch.empty(chunk * block)
    for first in range(1, weight.shape[0], block):
        items = weight[first : first + block].T
        for row0 in range(0, len(hidden), chunk):
            part = hidden[row0 : row0 + chunk]
            torch.mm(part, items, out=buffer[: len(part) * items.shape[1]].view(len(part), items.shape[1]))


def bare_alloc(hidden: Tensor, weight: Tensor) -> None:
    """The literal product, the whole (rows, items) matrix at once."""
    _ = hidden @ weight[1:].T


# ---------------------------------------------------------------- measuring


def trim_heap() -> None:
    """Give freed heap pages back to the OS, so the next stretch's peak is not hidden by reuse."""
    with contextlib.suppress(OSError):  # not glibc: peaks may read low
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """(seconds, peak rise MB, result) of one call."""
    trim_heap()
    memory = PeakMemory(torch.device("cpu"))
    began = time.perf_counter()
    result = work()
    return time.perf_counter() - began, memory.peak_mb(), result


def cell(rows: int, weight: Tensor, hidden: Tensor, args: argparse.Namespace) -> dict:
    """Every contender on one (rows, items) shape, interleaved over the rounds; new checked against old."""
    num_items = weight.shape[0] - 1
    hidden = hidden[:rows]
    generator = torch.Generator().manual_seed(1)
    target_items = torch.randint(1, num_items + 1, (rows,), generator=generator)
    rng = np.random.default_rng(0)
    per_row = [np.setdiff1d(rng.integers(1, num_items + 1, SEEN_PER_TARGET), [t]) for t in target_items.tolist()]
    seen, old_seen = topk.SeenItems(per_row, hidden.device), OldSeenItems(per_row)
    scores = rows * num_items
    repeats = 1 if scores > args.once_above else args.repeats
    old = not args.no_old and scores <= args.old_max
    fits = scores * 4 <= args.alloc_limit_gb * 2**30
    contenders = {
        "bare": lambda: bare_gemm(hidden, weight),
        "bare_alloc": (lambda: bare_alloc(hidden, weight)) if fits else None,
        "new_ranks": lambda: topk.blockwise_ranks(hidden, weight, target_items, seen),
        "new_topk": lambda: topk.blockwise_topk(hidden, weight, K, seen),
        "old_ranks": (lambda: old_ranks(hidden, weight, target_items, old_seen)) if old else None,
        "old_topk": (lambda: old_topk(hidden, weight, K, old_seen)) if old else None,
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    results: dict[str, object] = {}
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        for name, work in contenders.items():
            if work is not None:
                seconds, peak, results[name] = timed(work)
                runs[name].append((seconds, peak))
    row = {"rows": rows, "items": num_items, "load_before": load_before, "load_after": os.getloadavg()[0]}
    row |= {name: {"seconds": [s for s, _ in done], "peak_mb": [p for _, p in done]} for name, done in runs.items()}
    if "old_ranks" in results:
        row["same_ranks"] = bool(torch.equal(results["new_ranks"], results["old_ranks"]))
        new_values, new_items = results["new_topk"]
        old_values, old_items = results["old_topk"]
        row["same_topk"] = bool(torch.equal(new_items, old_items) and torch.equal(new_values, old_values))
    return row


def seconds(row: dict, name: str) -> str:
    times = row[name]["seconds"]
    return "-" if not times else f"{times[0]:.2f} (1 run)" if len(times) == 1 else median_range(times, 2)


def ratio(row: dict, name: str) -> str:
    if not row[name]["seconds"]:
        return "-"
    return f"{statistics.median(row[name]['seconds']) / statistics.median(row['bare']['seconds']):.2f}"


def peak(row: dict, name: str) -> str:
    return f"{max(row[name]['peak_mb']):.0f}" if row[name]["peak_mb"] else "-"


def print_table(rows: list[dict]) -> None:
    print(f"\nd_model {D_MODEL}, float32, {SEEN_PER_TARGET} seen items per target, top-{K}, ", end="")
    print(f"{torch.get_num_threads()} threads; seconds: median [min-max]; ratio: median / median of bare;")
    print("peak: MB above the table; bare @: the literal hidden @ table.T, allocating the whole matrix\n")
    print("| targets | items | what | new s | old s | new/bare | old/bare | peak new | peak old | same as old |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        shape = f"| {row['rows']:,} | {row['items']:,} "
        for what, same in (("ranks", "same_ranks"), ("topk", "same_topk")):
            new, old = f"new_{what}", f"old_{what}"
            print(
                f"{shape}| {what} | {seconds(row, new)} | {seconds(row, old)} | {ratio(row, new)} | {ratio(row, old)} "
                f"| {peak(row, new)} | {peak(row, old)} | {row.get(same, '-')} |"
            )
        print(f"{shape}| bare | {seconds(row, 'bare')} | bare @: {seconds(row, 'bare_alloc')} | 1 | | | | |")
    print("\nload average (1 min) before -> after each shape: ", end="")
    print(", ".join(f"{r['rows']}x{r['items']}: {r['load_before']:.1f}->{r['load_after']:.1f}" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogues", type=int, nargs="+", default=[20_000, 1_000_000, 4_400_000])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000], help="targets per shape")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--once-above", type=float, default=5e9, help="rows x items from which one round")
    parser.add_argument("--old-max", type=float, default=5e9, help="largest rows x items the old one runs")
    parser.add_argument("--no-old", action="store_true", help="leave the replaced implementation out")
    parser.add_argument("--alloc-limit-gb", type=float, default=4.5, help="largest literal product timed")
    parser.add_argument("--quick", action="store_true", help="small shapes, a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.catalogues, args.rows = [20_000, 100_000], [100, 1_000]
    warm_weight, warm_hidden = torch.randn(100, D_MODEL), torch.randn(2, D_MODEL)
    topk.blockwise_ranks(warm_hidden, warm_weight, torch.tensor([1, 2]))
    topk.blockwise_topk(warm_hidden, warm_weight, K)
    rows = []
    for num_items in args.catalogues:
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(num_items + 1, D_MODEL, generator=generator) * D_MODEL**-0.5
        hidden = torch.randn(max(args.rows), D_MODEL, generator=generator)
        for count in args.rows:
            rows.append(cell(count, weight, hidden, args))
            print(json.dumps({k: v for k, v in rows[-1].items() if not isinstance(v, dict)}), flush=True)
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("ranking_speed_quick.json" if args.quick else "ranking_speed.json")
    settings = {
        "d_model": D_MODEL,
        "seen_per_target": SEEN_PER_TARGET,
        "k": K,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cache_block_bytes": topk.CACHE_BLOCK_BYTES,
        "row_chunk": topk.ROW_CHUNK,
        "torch": torch.__version__,
    }
    path.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
