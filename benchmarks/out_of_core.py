"""Trainer memory on a big export: histories loaded into RAM against memory-mapped ones.

    .venv/bin/python benchmarks/out_of_core.py [--events 20000000] [--users 20000] [--repeats 3] [--modes ...]

Writes a synthetic Contract-1 export (``histories.parquet`` in row groups of 1,000 users, written
directly with pyarrow rather than by the data layer, to keep the benchmark minutes long), then measures in
a fresh process each the trainer's data path for one epoch of batches (batch 16, max_len 2048):
``in_memory`` is ``SplitData.load`` + ``WindowIndex`` (the trainer without a store), ``out_of_core`` is
``open_split`` (the store converted beforehand, once) + ``WindowIndex``. Peak
memory is split into anonymous memory (what the process holds) and file pages (the mapped store, which the
kernel can drop), each as the peak seen between batches. Writes benchmarks/results/out_of_core_<N>M.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measured_child import median_range, run_child  # noqa: E402
from recmodels.data.history_store import open_split  # noqa: E402
from recmodels.data.split_data import SplitData  # noqa: E402
from recmodels.training.windows import WindowIndex  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MAX_LEN, BATCH, NUM_ITEMS, USERS_PER_GROUP = 2048, 16, 1_000_000, 1000


def write_export(folder: Path, events: int, users: int) -> None:
    """Users with equal-sized histories, the last 2 % of each a validation or test target."""
    rng = np.random.default_rng(0)
    length = events // users
    split = np.zeros(length, np.int8)
    split[int(length * 0.98) :] = 1
    split[int(length * 0.99) :] = 2
    schema = pa.schema(
        [
            ("user_id", pa.int32()),
            ("items", pa.list_(pa.int32())),
            ("timestamps", pa.list_(pa.int64())),
            ("split", pa.list_(pa.int8())),
        ]
    )
    with pq.ParquetWriter(folder / "histories.parquet", schema) as writer:
        for first in range(0, users, USERS_PER_GROUP):
            count = min(USERS_PER_GROUP, users - first)
            offsets = pa.array(np.arange(count + 1, dtype=np.int32) * length)
            items = rng.integers(1, NUM_ITEMS + 1, count * length, dtype=np.int32)
            stamps = np.tile(np.arange(length, dtype=np.int64) * 1000 + 1_600_000_000_000, count)
            columns = [
                pa.array(np.arange(first + 1, first + count + 1, dtype=np.int32)),
                pa.ListArray.from_arrays(offsets, pa.array(items)),
                pa.ListArray.from_arrays(offsets, pa.array(stamps)),
                pa.ListArray.from_arrays(offsets, pa.array(np.tile(split, count))),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    metadata = {"dataset": "bench", "num_users": users, "num_items": NUM_ITEMS, "fingerprint": f"bench-{events}"}
    (folder / "metadata.json").write_text(json.dumps(metadata))


def _rss_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(line.split()[1]) / 2**10
    return fields


def epoch(mode: str, export: Path, store: Path) -> dict:
    """One epoch of batches; the peak anonymous and file-backed RSS seen after each batch."""
    began = time.perf_counter()
    peak = {"RssAnon": 0.0, "RssFile": 0.0}
    data = SplitData.load(export) if mode == "in_memory" else open_split(export, store)
    batches = WindowIndex.of(data, MAX_LEN).batches(BATCH, np.random.default_rng(0))
    count = 0
    for _ in batches:
        count += 1
        if count % 50 == 1:
            peak = {name: max(peak[name], value) for name, value in _rss_mb().items()}
    return {"seconds": time.perf_counter() - began, "batches": count, **{f"peak_{k}_mb": v for k, v in peak.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--modes", nargs="+", default=["out_of_core", "in_memory"], help="in_memory holds the whole export in RAM"
    )
    parser.add_argument("--child", choices=["in_memory", "out_of_core"])
    parser.add_argument("--export", type=Path)
    parser.add_argument("--store", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(epoch(args.child, args.export, args.store)))
        return
    with tempfile.TemporaryDirectory(prefix="out-of-core-") as scratch:
        export, store = Path(scratch) / "export", Path(scratch) / "store"
        export.mkdir()
        write_export(export, args.events, args.users)
        began = time.perf_counter()
        open_split(export, store)
        convert_seconds = time.perf_counter() - began
        sizes = {"parquet_mb": (export / "histories.parquet").stat().st_size / 2**20}
        sizes["store_mb"] = sum(f.stat().st_size for f in store.rglob("*.bin")) / 2**20
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        rows = {}
        for mode in args.modes:
            extra = ["--child", mode, "--export", str(export), "--store", str(store)]
            rows[mode] = [run_child(__file__, extra, env) for _ in range(args.repeats)]
    print(f"\n{args.events:,} events, {args.users:,} users, batch {BATCH} x max_len {MAX_LEN}; median [min-max]")
    print(
        f"parquet {sizes['parquet_mb']:.0f} MB, store {sizes['store_mb']:.0f} MB, converted in {convert_seconds:.1f} s"
    )
    print("| path | epoch s | batches | peak anon RSS MB | peak file RSS MB |\n|---|---|---|---|---|")
    for mode, runs in rows.items():
        cells = [median_range([run[key] for run in runs], 0) for key in ("peak_RssAnon_mb", "peak_RssFile_mb")]
        print(f"| {mode} | {median_range([r['seconds'] for r in runs])} | {runs[0]['batches']} | {' | '.join(cells)} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"events": args.events, "users": args.users, "convert_seconds": convert_seconds, **sizes, "rows": rows}
    path = RESULTS / f"out_of_core_{args.events // 10**6}M.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
