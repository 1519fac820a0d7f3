"""Raw CSV -> splits export, against a bare DuckDB floor, on the same synthetic KuaiRand-layout files.

    .venv/bin/python benchmarks/data_pipeline.py [--events 10000000] [--memory-limit 4GB]

Generates the events once, then runs each side in its own process (so peak RSS and CPU time are its own):
the floor is ``read_csv -> ORDER BY -> COPY TO parquet``; the pipeline materializes raw_events, events,
sequences and splits with Dagster. Prints a table and writes ``benchmarks/results/data_pipeline.json``.
CPU seconds and the load average are reported beside wall seconds: on a shared machine the wall-clock
ratio moves with whatever else runs, the CPU ratio much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from recmodels.evaluation.cost import max_rss_mb  # noqa: E402

RESULTS = PROJECT / "benchmarks" / "results"


def generate(landing: Path, events: int) -> dict:
    from pipelines.data.sources import synthetic

    users = max(1, events // 3333)
    spec = synthetic.spec_for("default", seed=0, users=users, min_events=3000, max_events=3667)
    start = time.perf_counter()
    synthetic.ensure_landing(spec, "kuairand", landing)
    files = sorted(landing.glob("*.csv"))
    return {"users": users, "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "seconds": time.perf_counter() - start}  # fmt: skip


def run_floor(landing: Path, workdir: Path, memory_limit: str) -> dict:
    import duckdb

    files = [str(f) for f in sorted(landing.glob("*.csv"))]
    start = time.perf_counter()
    with duckdb.connect(str(workdir / "floor.duckdb"), config={"memory_limit": memory_limit}) as con:
        query = "SELECT * FROM read_csv($files, header = true) ORDER BY user_id, time_ms"
        con.sql(query, params={"files": files}).write_parquet(str(workdir / "floor.parquet"))
    return {"seconds": time.perf_counter() - start}


def run_pipeline(landing: Path, workdir: Path, memory_limit: str) -> dict:
    os.environ["RECMAMBA_HOME"] = str(workdir / "home")
    import dagster as dg

    from pipelines.data.assets import DATA_ASSETS
    from pipelines.data.resources import Warehouse

    config = {"raw_events": {"config": {"source": "kuairand", "landing_dir": str(landing)}}}
    instance = dg.DagsterInstance.ephemeral()
    resources = {"warehouse": Warehouse(memory_limit=memory_limit)}
    start = time.perf_counter()
    result = dg.materialize(DATA_ASSETS, resources=resources, run_config={"ops": config}, instance=instance)
    seconds = time.perf_counter() - start
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
    meta = result.asset_materializations_for_node("splits")[0].metadata
    return {"seconds": seconds, "steps": steps, "events": meta["num_train_events"].value
            + meta["num_valid_targets"].value + meta["num_test_targets"].value}  # fmt: skip


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(kind: str, landing: Path, workdir: Path, memory_limit: str) -> None:
    """Entry point of a measured child process: prints its result with its own peak RSS and CPU time."""
    start = cpu_seconds()
    out = (run_floor if kind == "floor" else run_pipeline)(landing, workdir, memory_limit)
    out["cpu_seconds"] = cpu_seconds() - start  # imports included: a few tenths of a second
    out["peak_rss_mb"] = max_rss_mb()
    print("RESULT " + json.dumps(out))


def measure(kind: str, landing: Path, workdir: Path, memory_limit: str) -> dict:
    args = [sys.executable, __file__, "--child", kind, "--landing", str(landing), "--workdir", str(workdir),
            "--memory-limit", memory_limit]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--child", choices=["floor", "pipeline"])
    parser.add_argument("--landing", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.landing, args.workdir, args.memory_limit)
        return
    with tempfile.TemporaryDirectory(prefix="recmamba-bench-") as tmp:
        root = Path(tmp)
        landing = root / "home" / "data" / "landing" / "kuairand"  # landing folders live under RECMAMBA_HOME
        data = generate(landing, args.events)
        load_before = os.getloadavg()[0]
        floor = measure("floor", landing, root, args.memory_limit)
        pipeline = measure("pipeline", landing, root, args.memory_limit)
        load_after = os.getloadavg()[0]
    report = {"events_requested": args.events, "memory_limit": args.memory_limit, "cpu_count": os.cpu_count(),
              "load_average_1min": [load_before, load_after], "data": data, "floor": floor, "pipeline": pipeline,
              "ratio": pipeline["seconds"] / floor["seconds"],
              "cpu_ratio": pipeline["cpu_seconds"] / floor["cpu_seconds"]}  # fmt: skip
    print(f"{args.events:,} events requested, {pipeline['events']:,} ingested; {data['files']} CSV files, "
          f"{data['bytes'] / 1e6:.0f} MB; DuckDB memory_limit {args.memory_limit}; "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'run':<28}{'seconds':>10}{'peak RSS MB':>14}{'CPU s':>10}")
    for label, side in (("floor: read_csv+sort+parquet", floor), ("pipeline: CSV -> export", pipeline)):
        print(f"{label:<28}{side['seconds']:>10.1f}{side['peak_rss_mb']:>14.0f}{side['cpu_seconds']:>10.1f}")
    for step, seconds in pipeline["steps"].items():
        print(f"{'  ' + step:<28}{seconds:>10.1f}")
    print(f"{'ratio pipeline / floor':<28}{report['ratio']:>10.2f}{'':>14}{report['cpu_ratio']:>10.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_pipeline.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
