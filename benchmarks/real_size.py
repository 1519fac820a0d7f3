"""A KuaiRand-1K-shaped log end to end: data layer, one training epoch and the test, each step timed.

    .venv/bin/python benchmarks/real_size.py [--users 1000] [--events 11700000] [--items 4400000]
        [--model recmamba] [--epochs 1] [--extra --train.batch_size 8 ...]

KuaiRand-1K holds 1,000 users, 11.7 M events and 4.37 M items, most of them seen once. The log here has the
same shape: history lengths spread around the mean, a Zipf head of popular items and a tail of one-off items
sized so that the catalogue reaches ``--items``. It is landed as a Parquet file, materialized by the real
data assets (default split config, so the default test protocol), then trained with the command line
(``python -m recmodels.train``: sampled softmax with sparse item updates, memory-mapped histories), whose
progress lines are printed as they come. Prints a table of step wall times; writes
``benchmarks/results/real_size.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
RESULTS = PROJECT / "benchmarks" / "results"
HEAD_ITEMS = 300_000  # items drawn by popularity; the rest of the catalogue are one-off items
YEAR_MS = 365 * 86_400_000
START_MS = 1_650_000_000_000  # 2022-04-15
SPLIT_KEYS = ("num_items", "num_train_events", "num_valid_targets", "num_test_targets", "target_protocol")


def generate(path: Path, users: int, events: int, items: int, seed: int = 0) -> dict:
    """A Parquet log of ``users`` histories, about ``events`` events in all, and about ``items`` items."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(events // users // 2, 3 * events // users // 2, size=users)
    total = int(lengths.sum())
    tail = max(items - HEAD_ITEMS, 0)
    ranks = np.arange(1, HEAD_ITEMS + 1, dtype=np.float64)
    popularity = ranks**-1.05 / np.sum(ranks**-1.05)
    item = rng.choice(HEAD_ITEMS, size=total, p=popularity)
    one_off = rng.choice(total, size=min(tail, total), replace=False)
    item[one_off] = HEAD_ITEMS + np.arange(len(one_off))
    user = np.repeat(np.arange(users), lengths)
    # Each user's events spread over the year in time order, so global cut-offs fall inside histories.
    timestamp = START_MS + rng.integers(0, YEAR_MS, size=total)
    timestamp = timestamp[np.lexsort((timestamp, user))]  # users are already in order: sorts within each
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user_id": user.astype(str), "item_id": item.astype(str), "timestamp": timestamp})
    pq.write_table(table, path)
    return {"users": users, "events": total, "items": len(np.unique(item))}


def materialize_data(home: Path) -> tuple[dict, Path, dict]:
    """The data assets with the default split config: step seconds, export folder, split metadata."""
    os.environ["RECMAMBA_HOME"] = str(home)
    import dagster as dg

    from pipelines.data.assets import DATA_ASSETS
    from pipelines.data.resources import Warehouse

    config = {"raw_events": {"config": {"source": "parquet", "time_unit": "ms", "dataset": "real_size"}}}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(DATA_ASSETS, resources={"warehouse": Warehouse()}, run_config={"ops": config},
                            instance=instance)  # fmt: skip
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
    metadata = result.asset_materializations_for_node("splits")[0].metadata
    export = Path(metadata["export_path"].value)
    return steps, export, json.loads((export / "metadata.json").read_text())


def train(export: Path, home: Path, model: str, epochs: int, extra: list[str]) -> tuple[float, dict]:
    """The command line's wall seconds and its result.json; its progress lines go to this terminal."""
    out = home / "train-out"
    command = [sys.executable, "-m", "recmodels.train", model, "--export", str(export), "--out", str(out),
               "--history_store", str(home / "history_store"), "--train.epochs", str(epochs),
               "--train.loss", "sampled_softmax", "--train.sparse_item_updates", "true", *extra]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began, json.loads((out / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=11_700_000)
    parser.add_argument("--items", type=int, default=4_400_000)
    parser.add_argument("--model", default="recmamba")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more run-config options")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recmamba-real-size-") as tmp:
        home = Path(tmp)
        began = time.perf_counter()
        shape = generate(home / "data" / "landing" / "parquet" / "events.parquet", args.users, args.events, args.items)
        generate_seconds = time.perf_counter() - began
        print(f"generated {shape['events']:,} events, {shape['items']:,} items in {generate_seconds:.0f} s", flush=True)
        began = time.perf_counter()
        steps, export, metadata = materialize_data(home)
        data_seconds = time.perf_counter() - began
        print(f"data layer {data_seconds:.0f} s; protocol {metadata.get('target_protocol')}", flush=True)
        train_wall, result = train(export, home, args.model, args.epochs, args.extra)
    cost, test = result["cost"], result["test"]
    report = {
        "shape": shape,
        "split": {key: metadata.get(key) for key in SPLIT_KEYS},
        "seconds": {
            "generate": generate_seconds,
            "data_layer": data_seconds,
            **{f"data/{step}": seconds for step, seconds in steps.items()},
            "train_command_wall": train_wall,
            "train_epochs": cost["train_seconds_total"],
            "validation_and_test": cost["eval_seconds"],
            "test": test["seconds"],
            "test_encoding_histories": test["encode_seconds"],
            "test_ranking": test["seconds"] - test["encode_seconds"],
        },
        "test": {"num_targets": test["num_targets"], **{k: test["overall"][k] for k in ("ndcg_10", "hr_10")}},
        "cost": cost,
        "model": args.model,
        "run_config": result["config"],
        "cpu_count": os.cpu_count(),
    }
    print(f"\n{'step':<32}{'seconds':>10}")
    for step, seconds in report["seconds"].items():
        print(f"{step:<32}{seconds:>10.1f}")
    print(f"test: {test['num_targets']:,} targets ranked against {metadata['num_items']:,} items, "
          f"NDCG@10 {test['overall']['ndcg_10']:.4f}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_size.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
