"""What the one-off Numba compile does to RecMamba's CPU cost figures, and what ``recmodels.training.warmup`` buys.

Three settings, each a fresh process training RecMamba at smoke scale (d_model 32, 1 layer, max_len 64,
batch 32, 2 epochs) with ``recmodels.training.loop.fit`` on a synthetic export:
  fresh_cache_no_warmup : a new empty NUMBA_CACHE_DIR and no warm-up: the first epoch carries the compile
                          (the figures users used to see);
  fresh_cache_warmup    : a new empty NUMBA_CACHE_DIR, ``warm_up`` before ``fit``: it pays the compile;
  warm_cache_warmup     : the cache the previous setting filled, ``warm_up`` before ``fit``: it only loads.
Reported per setting: warm-up seconds, each epoch's training seconds, fit's peak memory (``PeakMemory``,
started inside fit, i.e. after the warm-up) and the process's RSS just before fit (the part of that peak
that was resident already). Repeated ``--runs`` times; the table shows median [min-max]. JSON goes to
benchmarks/results/compile_cost.json.

    .venv/bin/python benchmarks/compile_cost.py           # 3 runs, ~4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from measured_child import median_range, run_child

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = ("fresh_cache_no_warmup", "fresh_cache_warmup", "warm_cache_warmup")
NUM_USERS, NUM_ITEMS, HISTORY = 600, 1000, 100
MEASURES = ("warmup_seconds", "epoch_1_seconds", "epoch_2_seconds", "peak_memory_mb", "rss_before_fit_mb")


def synthetic_export(folder: Path) -> Path:
    """Users walk the catalogue in small random steps, so there is something to learn."""
    import numpy as np

    from recmodels.data.split_data import write_split_export

    rng = np.random.default_rng(0)
    steps = rng.integers(-3, 4, size=(NUM_USERS, HISTORY))
    histories = (rng.integers(0, NUM_ITEMS, size=(NUM_USERS, 1)) + steps.cumsum(axis=1)) % NUM_ITEMS + 1
    splits = [[0] * (HISTORY - 4) + [1, 1, 2, 2]] * NUM_USERS
    return write_split_export(folder / "export", histories.tolist(), splits, num_items=NUM_ITEMS)


def measure(setting: str, export: Path) -> dict:
    """Runs in the child process."""
    import torch

    from recmodels import build_model
    from recmodels.data.split_data import SplitData
    from recmodels.evaluation.cost import PeakMemory
    from recmodels.training.loop import TrainConfig, fit
    from recmodels.training.threads import apply_thread_budget
    from recmodels.training.warmup import warm_up

    apply_thread_budget()
    data = SplitData.load(export)
    torch.manual_seed(0)
    model = build_model("recmamba", data.num_items, d_model=32, n_layers=1, max_len=64)
    device = torch.device("cpu")
    warmup_seconds = warm_up(model, device) if setting != "fresh_cache_no_warmup" else 0.0
    rss_before_fit = PeakMemory(device).start_mb
    result = fit(model, data, TrainConfig(epochs=2, batch_size=32, patience=0, device="cpu", eval_max_targets=200))
    return {
        "setting": setting,
        "warmup_seconds": warmup_seconds,
        "epoch_1_seconds": result.epochs[0].epoch_seconds,
        "epoch_2_seconds": result.epochs[1].epoch_seconds,
        "peak_memory_mb": result.cost.peak_memory_mb,
        "peak_method": PeakMemory(device).method,
        "rss_before_fit_mb": rss_before_fit,
    }


def run_setting(setting: str, export: Path, cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return run_child(__file__, ["--child", setting, "--export", str(export)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.export)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="compile_cost_") as scratch:
        export = synthetic_export(Path(scratch))
        for run in range(1, args.runs + 1):
            caches = {name: Path(scratch) / f"run{run}_{name}" for name in ("no_warmup", "warmup")}
            for setting in SETTINGS:
                cache = caches["no_warmup" if setting == "fresh_cache_no_warmup" else "warmup"]
                runs.append({"run": run, **run_setting(setting, export, cache)})
                print(json.dumps(runs[-1]), file=sys.stderr)
    print(f"RecMamba smoke scale on CPU, {args.runs} runs, median [min-max]; peak by {runs[0]['peak_method']}")
    print(f"{'setting':<23}" + "".join(f"{name:>22}" for name in MEASURES))
    for setting in SETTINGS:
        rows = [row for row in runs if row["setting"] == setting]
        print(f"{setting:<23}" + "".join(f"{median_range([row[name] for row in rows]):>22}" for name in MEASURES))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compile_cost.json").write_text(json.dumps({"runs": runs}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
