"""CPU time of a short RecMamba training loop with and without ``recmodels.training.threads.apply_thread_budget``.

Settings, each in a fresh process, interleaved round by round so that other load on a shared machine
falls on all of them alike:
  default      : library defaults (torch and Numba each use every core; libgomp workers spin when idle);
  budget       : apply_thread_budget() in the process (reaches Numba's libgomp, not torch's: see threads.py);
  budget+env   : the same, with OMP_WAIT_POLICY=PASSIVE in the environment the process starts with;
  one_thread   : apply_thread_budget(1).
A step is RecMamba (d_model 64, 2 layers) forward + the training ce loss + backward + AdamW on a random
(32, 200) batch over 3000 items; two untimed steps first (compile/cache load), then ``--steps`` timed.
Prints median [min-max] of wall, user, sys seconds, minor page faults and involuntary context switches,
and writes JSON to benchmarks/results/thread_budget.json.

    .venv/bin/python benchmarks/thread_budget.py            # 3 rounds x 4 settings, ~3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from measured_child import median_range, run_child

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = ("default", "budget", "budget+env", "one_thread")
NUM_ITEMS, BATCH, LENGTH = 3000, 32, 200
MEASURES = ("wall", "user", "sys", "minor_faults", "involuntary_switches")


def measure(setting: str, steps: int) -> dict:
    """Runs in the child process."""
    import numpy as np
    import torch

    from recmodels import build_model
    from recmodels.training.config import TrainConfig
    from recmodels.training.next_item_loss import NextItemLoss
    from recmodels.training.threads import apply_thread_budget

    threads = {"default": None, "budget": 0, "budget+env": 0, "one_thread": 1}[setting]
    if threads is not None:
        apply_thread_budget(threads or None)
    torch.manual_seed(0)
    model = build_model("recmamba", NUM_ITEMS, d_model=64, n_layers=2, max_len=LENGTH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = NextItemLoss(TrainConfig(), np.ones(NUM_ITEMS + 1), torch.Generator().manual_seed(0))

    def step() -> None:
        items = torch.randint(1, NUM_ITEMS + 1, (BATCH, LENGTH))
        targets = torch.randint(1, NUM_ITEMS + 1, (BATCH, LENGTH))
        loss = loss_fn(model, model(items), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(), step()
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - began
    return {
        "setting": setting,
        "torch_threads": torch.get_num_threads(),
        "wall": wall,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "involuntary_switches": after.ru_nivcsw - before.ru_nivcsw,
    }


def run_setting(setting: str, steps: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if setting == "budget+env":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return run_child(__file__, ["--child", setting, "--steps", str(steps)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps)))
        return
    runs = []
    for round_number in range(1, args.rounds + 1):
        for setting in SETTINGS:
            runs.append({"round": round_number, **run_setting(setting, args.steps)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    print(f"{args.steps} training steps, {args.rounds} rounds, median [min-max], load avg {os.getloadavg()[0]:.1f}")
    print(f"{'setting':<12}" + "".join(f"{name:>24}" for name in MEASURES))
    for setting in SETTINGS:
        rows = [run for run in runs if run["setting"] == setting]
        print(
            f"{setting:<12}"
            + "".join(f"{median_range([row[name] for row in rows], digits=2):>24}" for name in MEASURES)
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "thread_budget.json").write_text(json.dumps({"steps": args.steps, "runs": runs}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
