"""One new day against a full rebuild of 60 days, in the same run, on the drifting synthetic stream.

    python benchmarks/incremental_ingest.py [--repeats 3] [--users 100]

Lands 61 days, rebuilds days 1-60 into a fresh warehouse (one ingest over all of them, what a single-run
backfill does), then ingests day 61 into it; and, as a floor, reads the same 60 files with bare DuckDB,
sorts them by user and time and writes a table. Repeated, with the median and range printed and written
to benchmarks/results/incremental_ingest.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

RESULTS = Path(__file__).resolve().parent / "results"
FLOOR = (
    "CREATE TABLE floor AS SELECT user_id, video_id, time_ms FROM read_csv($files, header = true) "
    "ORDER BY user_id, time_ms"
)


def floor_seconds(database: Path, files: list[str]) -> float:
    """Bare DuckDB: read the files, sort by user and time, write a table."""
    with duckdb.connect(str(database)) as con:
        began = time.perf_counter()
        con.execute(FLOOR, {"files": files})
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    os.environ["RECMAMBA_HOME"] = tempfile.mkdtemp(prefix="incremental-ingest-")
    from pipelines.data.sources import drift
    from pipelines.lifelong.daily_ingest import DailyEventsConfig, ingest_days, landing_folder
    from pipelines.paths import ProjectPaths

    paths = ProjectPaths.from_env()
    spec = dataclasses.replace(drift.SCALES["default"], days=61, users=args.users)
    events = drift.generate(spec)
    config = DailyEventsConfig()
    landed = drift.land_days(events, landing_folder(config, paths), "kuairand", range(61))
    days = [drift.day_key(day) for day in range(61)]
    rebuild, one_day, floor = [], [], []
    for repeat in range(args.repeats):
        floor.append(floor_seconds(paths.data / f"floor-{repeat}.duckdb", [str(p) for p in landed[:60]]))
        with duckdb.connect(str(paths.data / f"bench-{repeat}.duckdb")) as con:
            began = time.perf_counter()
            ingest_days(con, config, paths, days[:60])
            rebuild.append(time.perf_counter() - began)
            began = time.perf_counter()
            ingest_days(con, config, paths, days[60:])
            one_day.append(time.perf_counter() - began)
    ratios = [day / full for day, full in zip(one_day, rebuild, strict=True)]
    over_floor = [full / bare for full, bare in zip(rebuild, floor, strict=True)]
    result = {
        "events": events.num_rows,
        "rebuild_60_days_s": rebuild,
        "one_day_s": one_day,
        "floor_s": floor,
        "one_day_over_rebuild": ratios,
        "rebuild_over_floor": over_floor,
    }
    print(f"{events.num_rows} events over 61 days, {args.repeats} repeats (median, range):")
    print("| step | seconds or ratio |\n|---|---|")
    rows = [
        ("full rebuild, 60 days", rebuild),
        ("one new day", one_day),
        ("floor: read+sort+write 60 days", floor),
        ("one day / rebuild", ratios),
        ("rebuild / floor", over_floor),
    ]
    for name, values in rows:
        print(f"| {name} | {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "incremental_ingest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
