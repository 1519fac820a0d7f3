"""Training throughput with 1 and with N data-parallel processes (torchrun, gloo on CPU), side by side.

    .venv/bin/python benchmarks/ddp_throughput.py [--export data/exports/synthetic] [--repeats 3] [--nproc 2]

Each configuration trains one epoch of each model through ``python -m recmodels.train`` (the same global
batch and seed), ``--repeats`` times, interleaved so that machine noise hits both alike. Prints the range
of training events per second and the ratio, and writes ``benchmarks/results/ddp_throughput.json``.
On a machine with N cores, N processes share them with the single process's intra-op threads: the ratio
shows what DDP costs (or gains) there, not what it gains across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"
MODELS = ("gru4rec", "recmamba")
ARGS = ["--train.epochs", "1", "--train.batch_size", "16", "--train.eval_max_targets", "200", "--model.max_len", "256"]


def train_events_per_second(export: Path, model: str, processes: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [*(launcher if processes > 1 else [sys.executable]), "-m", "recmodels.train", model]
        command += ["--export", str(export), "--out", out, *ARGS]
        done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return json.loads((Path(out) / "result.json").read_text())["cost"]["train_events_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    home = Path(os.environ.get("RECMAMBA_HOME", PROJECT))
    parser.add_argument("--export", type=Path, default=home / "data" / "exports" / "synthetic")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, dict[int, list[float]]] = {model: {1: [], args.nproc: []} for model in MODELS}
    for _ in range(args.repeats):
        for model in MODELS:
            for processes in (1, args.nproc):
                runs[model][processes].append(train_events_per_second(args.export, model, processes))
    print(f"{'model':<10}{'1 process (events/s)':>26}{f'{args.nproc} processes (events/s)':>28}{'ratio':>16}")
    report = {"export": str(args.export), "cpu_count": os.cpu_count(), "nproc": args.nproc, "models": {}}
    for model, by_processes in runs.items():
        one, many = by_processes[1], by_processes[args.nproc]
        ratios = [b / a for a, b in zip(one, many, strict=True)]
        print(f"{model:<10}{min(one):>12,.0f} - {max(one):>10,.0f}{min(many):>14,.0f} - {max(many):>11,.0f}"
              f"{min(ratios):>9.2f} - {max(ratios):.2f}")  # fmt: skip
        report["models"][model] = {"one_process": one, "many_processes": many, "ratios": ratios}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ddp_throughput.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
