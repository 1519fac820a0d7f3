"""Training step and full-ranking evaluation at catalogue scale (KuaiRand-1K has 4.37 M items, LFM-1b 32.3 M).

    .venv/bin/python benchmarks/catalogue_scale.py [--catalogues 20000 1000000 4400000] [--repeats 3]
    .venv/bin/python benchmarks/catalogue_scale.py --catalogues 32291134 --item-dtype bfloat16 \
        --item-optimizer rowwise_adagrad --targets 200

Training: one RecMamba layer, d_model 64, windows of max_len 2048 (random items), the median of 5 steps
(1 for ce) after a warm-up step, with ``sampled_softmax`` (1,024 popularity negatives, log-Q, sparse item
updates; the table stored as ``--item-dtype`` and trained by ``--item-optimizer``) and with ``ce`` (full
softmax, dense AdamW, float32 tables only) where it finishes within ``--ce-timeout`` seconds.
Evaluation: the exact rank (3 runs; what ``evaluate`` computes) and top-10 (1 run) of ``--targets``
targets over the whole catalogue, blockwise, with seen-item filtering; its peak memory is the rise above
the embedding table, and a subset is checked against dense scores.

Each measurement runs in a process of its own (``benchmarks/measured_child.py``); peak memory is the rise
of the resident set (VmHWM reset, ``recmodels.evaluation.cost.PeakMemory``) and ``peak_rss_mb`` the whole
resident peak of the process from its start, table and optimizer state included. Writes
benchmarks/results/catalogue_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measured_child import median_range, run_child  # noqa: E402
from recmodels import build_model  # noqa: E402
from recmodels.evaluation.cost import PeakMemory  # noqa: E402
from recmodels.evaluation.topk import SeenItems, blockwise_ranks, blockwise_topk  # noqa: E402
from recmodels.models.base import ITEM_DTYPES  # noqa: E402
from recmodels.training.config import TrainConfig  # noqa: E402
from recmodels.training.loop import build_optimizer  # noqa: E402
from recmodels.training.next_item_loss import NextItemLoss  # noqa: E402
from recmodels.training.sparse_optim import clip_grad_norm  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "catalogue_scale.json"
MAX_LEN, D_MODEL, NEGATIVES = 2048, 64, 1024


def train_step(num_items: int, loss: str, batch: int, steps: int, item_dtype: str, item_optimizer: str) -> dict:
    """Median seconds of ``steps`` training steps (forward, loss, backward, clip, optimizer), peak memory."""
    torch.manual_seed(0)
    model = build_model(
        "recmamba", num_items, d_model=D_MODEL, n_layers=1, max_len=MAX_LEN, dropout=0.0, item_dtype=item_dtype
    )
    sampled = loss == "sampled_softmax"
    config = TrainConfig(
        loss=loss,
        num_negatives=NEGATIVES,
        sparse_item_updates=sampled,
        item_optimizer=item_optimizer if sampled else "adam",
    )
    optimizer = build_optimizer(model, config)
    counts = np.random.default_rng(0).zipf(1.3, num_items + 1).clip(max=10**6)
    loss_fn = NextItemLoss(config, counts, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)

    def step() -> float:
        items = torch.randint(1, num_items + 1, (batch, MAX_LEN + 1), generator=generator)
        began = time.perf_counter()
        value = loss_fn(model, model(items[:, :-1]), items[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if sampled:
            clip_grad_norm(list(model.parameters()), 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - began

    step()  # warm-up: kernels, optimizer state allocated
    setup_peak = resident_peak_mb()  # the table and the sampler made: before the meter resets the peak
    memory = PeakMemory(torch.device("cpu"))
    seconds = statistics.median(step() for _ in range(steps))
    table = model.item_embedding.weight
    return {
        "seconds": seconds,
        "peak_rise_mb": memory.peak_mb(),
        "peak_rss_mb": max(setup_peak, resident_peak_mb()),
        "table_mb": table.numel() * table.element_size() / 2**20,
    }


def resident_peak_mb() -> float:
    """The process's resident peak (VmHWM) in MB: since its start, or since PeakMemory last reset it."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def random_table(num_items: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """(num_items + 1, D_MODEL) N(0, 1/D) in ``dtype``, filled a million rows at a time: no float32 copy of a
    bfloat16 table."""
    weight = torch.empty(num_items + 1, D_MODEL, dtype=dtype)
    for start in range(0, num_items + 1, 2**20):
        rows = weight[start : start + 2**20]
        rows.copy_(torch.randn(rows.shape, generator=generator) * D_MODEL**-0.5)
    return weight


def evaluation(num_items: int, targets: int, check: int, what: str, item_dtype: str) -> dict:
    """Exact ranks (what ``evaluate`` computes) or top-10 of ``targets`` random hidden states, blockwise, with
    200 seen items per target filtered; the first ``check`` targets are compared with dense scores."""
    generator = torch.Generator().manual_seed(0)
    weight = random_table(num_items, ITEM_DTYPES[item_dtype], generator)
    hidden = torch.randn(targets, D_MODEL, generator=generator)
    target_items = torch.randint(1, num_items + 1, (targets,), generator=generator)
    rng = np.random.default_rng(0)
    seen = [np.setdiff1d(rng.integers(1, num_items + 1, 200), [t]) for t in target_items.tolist()]
    setup_peak = resident_peak_mb()  # the table and the sampler made: before the meter resets the peak
    memory = PeakMemory(torch.device("cpu"))
    began = time.perf_counter()
    if what == "ranks":
        result = blockwise_ranks(hidden, weight, target_items, SeenItems(seen, hidden.device))
    else:
        result = blockwise_topk(hidden, weight, 10, SeenItems(seen, hidden.device))
    seconds, peak = time.perf_counter() - began, memory.peak_mb()
    dense = torch.cat(
        [hidden[:check] @ weight[1 + start : 1 + start + 2**20].float().T for start in range(0, num_items, 2**20)],
        dim=1,
    )  # (check, num_items): the reference

    for row in range(check):
        dense[row, torch.from_numpy(seen[row]) - 1] = float("-inf")
    # A GEMM's rounding depends on its shape, so scores may differ from the dense ones in the last bit:
    # ranks and top-10 items must be equal, top-10 scores equal to float32 rounding.
    if what == "ranks":
        target_scores = dense.gather(1, target_items[:check, None] - 1)
        exact = torch.equal(result[:check], (dense > target_scores).sum(1) + (dense == target_scores).sum(1))
    else:
        top = dense.topk(10, dim=1)
        exact = torch.equal(result[1][:check], top.indices + 1) and torch.allclose(
            result[0][:check], top.values, rtol=0, atol=1e-5
        )
    table_mb = weight.numel() * weight.element_size() / 2**20
    return {
        "seconds": seconds,
        "peak_rise_mb": peak,
        "peak_rss_mb": max(setup_peak, resident_peak_mb()),
        "table_mb": table_mb,
        "exact": bool(exact),
    }


def child(args: argparse.Namespace) -> None:
    if args.child == "train":
        steps = 5 if args.loss == "sampled_softmax" else 1
        result = train_step(args.items, args.loss, args.batch, steps, args.item_dtype, args.item_optimizer)
    else:
        result = evaluation(args.items, args.targets, args.check, args.child, args.item_dtype)
    print(json.dumps(result))


def measure(args: argparse.Namespace, extra: list[str], timeout: float | None = None) -> dict | None:
    """One child run; None when it exceeded ``timeout`` seconds."""
    command = [__file__, *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if timeout is None:
        return run_child(command[0], command[1:], env)
    try:
        output = subprocess.run(
            [sys.executable, *command], env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=timeout
        ).stdout
    except subprocess.TimeoutExpired:
        return None
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogues", type=int, nargs="+", default=[20_000, 1_000_000, 4_400_000])
    parser.add_argument("--batch", type=int, default=2, help="windows of max_len 2048 per step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ce-timeout", type=float, default=300.0)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--check", type=int, default=50, help="targets checked against dense scores")
    parser.add_argument("--item-dtype", choices=sorted(ITEM_DTYPES), default="float32")
    parser.add_argument("--item-optimizer", choices=["adam", "rowwise_adagrad"], default="adam")
    parser.add_argument("--child", choices=["train", "ranks", "topk"])
    parser.add_argument("--items", type=int)
    parser.add_argument("--loss")
    args = parser.parse_args()
    if args.child:
        return child(args)

    table = ["--item-dtype", args.item_dtype, "--item-optimizer", args.item_optimizer]
    rows = []
    for items in args.catalogues:
        for loss in ("sampled_softmax", "ce") if args.item_dtype == "float32" else ("sampled_softmax",):
            extra = ["--child", "train", "--items", str(items), "--loss", loss, "--batch", str(args.batch), *table]
            repeats = args.repeats if loss == "sampled_softmax" else 1
            runs = [
                measure(args, extra, None if loss == "sampled_softmax" else args.ce_timeout) for _ in range(repeats)
            ]
            done = [run for run in runs if run is not None]
            rows.append(
                {"kind": "train", "items": items, "loss": loss, "runs": done, "timed_out": len(done) < len(runs)}
            )
            print(rows[-1], flush=True)
    for what, repeats in (("ranks", args.repeats), ("topk", 1)):  # ranks: what evaluate computes
        items = args.catalogues[-1]
        extra = ["--child", what, "--items", str(items), "--targets", str(args.targets), "--check", str(args.check)]
        extra += table
        runs = [measure(args, extra) for _ in range(repeats)]
        rows.append({"kind": f"eval_{what}", "items": items, "targets": args.targets, "runs": runs})
        print(rows[-1], flush=True)

    print(
        f"\nbatch {args.batch} x max_len {MAX_LEN}, d_model {D_MODEL}, 1 RecMamba layer, item table "
        f"{args.item_dtype} ({args.item_optimizer} for sampled_softmax); median [min-max]"
    )
    print("| what | items | loss | step/eval s | peak rise MB | peak RSS MB | table MB | note |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if not row["runs"]:
            timed_out = f"> {args.ce_timeout:.0f} (timed out)"
            print(f"| {row['kind']} | {row['items']:,} | {row.get('loss', '')} | {timed_out} | - | - | - | |")
            continue
        seconds = median_range([run["seconds"] for run in row["runs"]], 2)
        peak = median_range([run["peak_rise_mb"] for run in row["runs"]], 0)
        rss = median_range([run["peak_rss_mb"] for run in row["runs"]], 0)
        note = f"exact={all(run['exact'] for run in row['runs'])}" if row["kind"] != "train" else ""
        print(
            f"| {row['kind']} | {row['items']:,} | {row.get('loss', '')} | {seconds} | {peak} | {rss} | "
            f"{row['runs'][0]['table_mb']:.0f} | {note} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    settings = {"batch": args.batch, "max_len": MAX_LEN, "item_dtype": args.item_dtype}
    settings["item_optimizer"] = args.item_optimizer
    RESULTS.write_text(json.dumps({**settings, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
