"""Training step speed of every model, and how much of the machine's arithmetic it uses.

    .venv/bin/python benchmarks/train_speed.py [--models sasrec hstu] [--runs 3] [--compare REF] [--json PATH]
    .venv/bin/python benchmarks/train_speed.py --length 2048 --batch 8 --loss bce    # the lifelong shape

Defaults are MovieLens-1M's shape: 3,706 items, windows of 200 events, 128 windows per step, d_model 64, full
softmax (``ce``). Each model runs in a process of its own (its own peak RSS, thread budget and kernel cache),
which times the training step exactly as ``train_run`` executes it: the trainer's own epoch function over
batches cut by its own window index, with its optimizer, loss and warm-up, so every setting of the default
path (compilation, precision, fusion) is in the time. The histories are synthetic, every window full
(``length`` inputs), items uniform over the catalogue, a few minutes apart.

Per model: seconds per step (median and range over ``--runs`` runs of ``--steps`` steps, after one untimed
step), events (targets) per second, the useful work per step (``gflop_per_step``: FlopCounterMode over one
eager forward + backward of the model and the plain loss: for ``ce`` a full-softmax cross-entropy that stores
its logits and recomputes nothing; so neither recomputation nor compilation changes the count; custom
kernels that FlopCounterMode cannot see, RecMamba's scan, are not counted), the rate it achieves, that rate
as a fraction of a float32 matrix product's on the same threads measured in the same run (top-level
``matmul_gflops``), and the process's peak RSS. ``--compare REF`` runs the same at a git ref in a temporary
worktree, so before and after come from one run on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measured_child import median_range, run_child

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("recmamba", "sasrec", "gru4rec", "hstu", "mamba4rec", "linrec", "lrurec")
MATMUL_SIZE = 2048


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--items", type=int, default=3706)
    parser.add_argument("--length", type=int, default=200, help="events per training window (model.max_len)")
    parser.add_argument("--batch", type=int, default=128, help="windows per step (train.batch_size)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--loss", choices=("ce", "sampled_softmax", "bce"), default="ce")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", metavar="REF", help="also measure this git ref (a temporary worktree)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "train_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a model name: measure it in this process
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # the tree to import
    return parser.parse_args(argv)


def matmul_gflops(repeats: int = 5) -> float:
    """The best float32 matrix-product rate of this process's threads, GFLOP/s."""
    import torch

    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * MATMUL_SIZE**3 / best / 1e9


def _seconds(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def trainer_api():
    """The trainer's module at the tree being measured: ``recmodels.training.loop`` (or, before the package
    was split into rooms, ``recmodels.train``), with its next-item loss class."""
    try:
        from recmodels.training import loop
        from recmodels.training.next_item_loss import NextItemLoss
    except ImportError:
        import recmodels.train as loop

        NextItemLoss = loop.NextItemLoss
    return loop, NextItemLoss


def synthetic_windows(loop, args: argparse.Namespace, users: int, timestamps: bool):
    """A window index over ``users`` histories of ``length + 1`` training events (every window full)."""
    import numpy as np

    generator = np.random.default_rng(0)
    events = args.length + 1
    items = generator.integers(1, args.items + 1, users * events).astype(np.int32)
    offsets = np.arange(users + 1, dtype=np.int64) * events
    times = None
    if timestamps:
        gaps = generator.integers(1_000, 600_000, users * events)
        times = 1_600_000_000_000 + np.cumsum(gaps).astype(np.int64)
    return loop.WindowIndex(items, offsets, args.length, times)


def useful_gflop(model, batch, loss_fn) -> float:
    """GFLOP of one eager forward + backward of ``model`` and its plain loss on ``batch``: for ``ce`` a
    full-softmax cross-entropy that stores its logits, else the trainer's own objective (``loss_fn``), which
    is already plain for ``bce`` and ``sampled_softmax``."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    inputs, targets = batch.inputs, batch.targets
    with FlopCounterMode(display=False) as counter:
        hidden = model(inputs, batch.timestamps) if model.uses_timestamps else model(inputs)
        if loss_fn.kind == "ce":
            present = targets != 0
            loss = F.cross_entropy(model.scores(hidden[present]), targets[present])
        else:
            loss = loss_fn(model, hidden, targets)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def measure_model(args: argparse.Namespace) -> dict:
    """Time ``args.child``'s training step in this process (``args.root``'s code) and count its work."""
    sys.path.insert(0, str(args.root))
    import numpy as np
    import torch

    loop, NextItemLoss = trainer_api()
    threads = loop.apply_thread_budget()
    rate = matmul_gflops()
    run_config = loop.run_config_class(args.child).model_validate(
        {
            "model": {"d_model": args.d_model, "max_len": args.length},
            "train": {"batch_size": args.batch, "loss": args.loss, "device": "cpu"},
        }
    )
    config, device = run_config.train, torch.device("cpu")
    model = loop.build_run_model(args.child, run_config, args.items)
    windows = synthetic_windows(loop, args, args.batch * (1 + args.steps * args.runs), model.uses_timestamps)
    batches = windows.batches(args.batch, np.random.default_rng(0))
    counted_loss = NextItemLoss(config, np.ones(args.items + 1), torch.Generator().manual_seed(1))
    work = useful_gflop(model, next(windows.batches(args.batch, np.random.default_rng(1))), counted_loss)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    optimizer = loop.build_optimizer(model, config)
    loss_fn = NextItemLoss(config, np.ones(args.items + 1), torch.Generator().manual_seed(0))
    loop.warm_up(model, device)
    ranks = loop.current_ranks()

    def steps(count: int) -> float:
        progress = loop.ProgressLog("benchmark", count * args.batch * args.length, "events")
        chosen = itertools.islice(batches, count)
        return _seconds(
            lambda: loop._train_epoch(model, model, chosen, loss_fn, optimizer, config, device, ranks, progress)
        )

    compile_and_first = steps(1)
    per_step = [steps(args.steps) / args.steps for _ in range(args.runs)]
    seconds = statistics.median(per_step)
    return {
        "threads": threads,
        "matmul_gflops": rate,
        "first_step_seconds": compile_and_first,
        "seconds_per_step": per_step,
        "seconds_per_step_median": seconds,
        "events_per_s": args.batch * args.length / seconds,
        "gflop_per_step": work,
        "gflops": work / seconds,
        "fraction_of_matmul": work / seconds / rate,
        "fraction_of_matmul_range": [work / max(per_step) / rate, work / min(per_step) / rate],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_over_start_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss,
    }


def measure_tree(args: argparse.Namespace, root: Path) -> dict:
    """Every chosen model measured in a child process importing ``root``'s code."""
    results = {}
    for model in args.models:
        options = ["--child", model, "--root", str(root), "--items", str(args.items), "--length", str(args.length)]
        options += ["--batch", str(args.batch), "--d-model", str(args.d_model), "--loss", args.loss]
        options += ["--steps", str(args.steps), "--runs", str(args.runs)]
        results[model] = run_child(str(Path(__file__).resolve()), options, {**os.environ, "PYTHONPATH": str(root)})
        print(f"  {root.name}: {model} {results[model]['seconds_per_step_median']:.3f} s/step", file=sys.stderr)
    return results


@contextlib.contextmanager
def worktree(ref: str):
    """A temporary detached worktree of ``ref``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="train-speed-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=ROOT, check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True)
        shutil.rmtree(folder.parent, ignore_errors=True)


def summary(models: dict) -> dict:
    """The per-model figures the issue asks for, from one tree's measurements."""
    return {
        name: {
            key: result[key]
            for key in (
                "events_per_s",
                "gflop_per_step",
                "gflops",
                "fraction_of_matmul",
                "fraction_of_matmul_range",
                "seconds_per_step",
                "seconds_per_step_median",
                "first_step_seconds",
                "peak_rss_mb",
                "peak_rss_over_start_mb",
            )
        }
        for name, result in models.items()
    }


def print_table(current: dict, before: dict | None) -> None:
    header = (
        f"{'model':<10} {'s/step [range]':>22} {'events/s':>9} {'GFLOP':>6} {'GFLOP/s':>8} {'frac':>12} {'peak MB':>8}"
    )
    if before:
        header += f" {'before s/step':>22} {'frac before':>12} {'speed-up':>9}"
    print(header)
    for name, now in current.items():
        row = (
            f"{name:<10} {median_range(now['seconds_per_step'], 3):>22} {now['events_per_s']:>9.0f} "
            f"{now['gflop_per_step']:>6.1f} {now['gflops']:>8.1f} {_range(now['fraction_of_matmul_range']):>12} "
            f"{now['peak_rss_mb']:>8.0f}"
        )
        if before and name in before:
            then = before[name]
            speedup = then["seconds_per_step_median"] / now["seconds_per_step_median"]
            row += (
                f" {median_range(then['seconds_per_step'], 3):>22} {_range(then['fraction_of_matmul_range']):>12}"
                f" {speedup:>8.2f}x"
            )
        print(row)


def _range(pair: list[float]) -> str:
    return f"{pair[0]:.2f}-{pair[1]:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure_model(args)))
        return 0
    current = measure_tree(args, ROOT)
    before = None
    if args.compare:
        with worktree(args.compare) as tree:
            before = measure_tree(args, tree)
    report = {
        "shape": {k: getattr(args, k) for k in ("items", "length", "batch", "d_model", "loss", "steps", "runs")},
        "threads": next(iter(current.values()))["threads"],
        "matmul_gflops": statistics.median(result["matmul_gflops"] for result in current.values()),
        "models": summary(current),
    }
    if before is not None:
        report["compare"] = {"ref": args.compare, "models": summary(before)}
        report["speedup"] = {
            name: before[name]["seconds_per_step_median"] / current[name]["seconds_per_step_median"] for name in current
        }
    print(f"matmul {report['matmul_gflops']:.0f} GFLOP/s on {report['threads']} threads; shape {report['shape']}")
    print_table(report["models"], report.get("compare", {}).get("models"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
