"""An LFM-1b-shaped log end to end at two sizes, each step in a process of its own with its peak memory.

    .venv/bin/python benchmarks/lfm1b_scale.py [--events 11700000 109000000] [--memory-limit 6GB]
        [--train-share 0.2] [--targets 10000] [--home DIR]

LFM-1b holds 1.09 B listening events of 120,322 users (about 9,000 each, heavy-tailed) over 32.3 M tracks.
For each ``--events`` size this writes a log in LFM-1b's raw layout (``LFM-1b_LEs``-style tab-separated
``user-id, artist-id, album-id, track-id, timestamp`` files) with that mean per user, a lognormal spread of
history lengths and a catalogue growing with the log (a Zipf head of popular tracks, a tail of one-off
tracks), then runs, each in its own process:

  generate   writing the raw files;
  data       the real data assets through the ``lfm1b`` source, DuckDB's memory limit and spill folder set
             through the ``warehouse`` resource (one row per asset step in the table);
  store      converting the export to the memory-mapped history store the trainer reads (out of core);
  train      ``python -m recmodels.train recmamba``: sampled softmax with popularity negatives, a bfloat16
             item table with row-wise Adagrad, windows of 2,048, one epoch cut to ``--train-share`` of the
             log's events; then validation and the test, each on a seeded sample of ``--targets``
             targets ranked against every item, the test continuing from validation's kept states;
  re-encode  the same test targets' histories encoded from their first event, as before kept states.

Each size keeps about ``--targets`` targets per split (``targets_per_user`` scaled to the user count), so
both sizes test by the same rule. Prints a table per size and the per-event cost ratios of the larger
size against the smaller; writes ``--json`` (``benchmarks/results/lfm1b_scale.json``) after every step;
``--until data`` stops each size after that step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.real_size import train as run_trainer  # noqa: E402
from recmodels.evaluation.cost import max_rss_mb  # noqa: E402
from recmodels.evaluation.evaluate import TargetRanks  # noqa: E402
from recmodels.evaluation.stats import per_target_metric, user_bootstrap  # noqa: E402
from recmodels.train import TEST_RANKS_FILE  # noqa: E402

RESULTS = PROJECT / "benchmarks" / "results"
MEAN_EVENTS_PER_USER = 9_000  # LFM-1b: 1,088,161,692 events / 120,322 users
LENGTH_SIGMA = 1.0  # lognormal spread of history lengths: a few users hold ten times the mean
TRACKS_PER_EVENT = 10_000_000 / 109_000_000  # the catalogue at a tenth of LFM-1b (issue 30's shape)
HEAD_TRACKS = 500_000  # drawn by popularity; the rest of the catalogue are one-off tracks
ROWS_PER_FILE = 10_000_000
START_S, YEAR_S = 1_356_998_400, 365 * 86_400  # 2013-01-01, inside LFM-1b's span
MAX_LEN, BATCH = 2048, 8
DATASET = "lfm1b_scale"
STEPS = ("generate", "data", "store", "train", "re-encode")


def write_log(folder: Path, events: int, seed: int = 0) -> dict:
    """LFM-1b raw files of about ``events`` events; returns the shape written."""
    rng = np.random.default_rng(seed)
    users = max(round(events / MEAN_EVENTS_PER_USER), 1)
    lengths = rng.lognormal(math.log(MEAN_EVENTS_PER_USER) - LENGTH_SIGMA**2 / 2, LENGTH_SIGMA, size=users)
    lengths = np.maximum(np.round(lengths * events / lengths.sum()), 3).astype(np.int64)
    tracks = max(round(events * TRACKS_PER_EVENT), HEAD_TRACKS + 1)
    ranks = np.arange(1, HEAD_TRACKS + 1, dtype=np.float64)
    popularity = np.cumsum(ranks**-1.0)
    popularity /= popularity[-1]
    one_off_share = (tracks - HEAD_TRACKS) / lengths.sum()
    next_one_off, written, files = HEAD_TRACKS, 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.searchsorted(np.cumsum(lengths), np.arange(ROWS_PER_FILE, lengths.sum(), ROWS_PER_FILE))
    for first, last in zip([0, *bounds.tolist()], [*bounds.tolist(), users], strict=True):
        chunk = lengths[first:last]
        size = int(chunk.sum())
        if size == 0:
            continue
        track = np.searchsorted(popularity, rng.random(size)).astype(np.int64)
        one_off = np.flatnonzero(rng.random(size) < one_off_share)
        track[one_off] = next_one_off + np.arange(len(one_off))
        next_one_off += len(one_off)
        user = np.repeat(np.arange(first, last, dtype=np.int64), chunk)
        # Each user's events spread over one year in time order, so global cut-offs fall inside histories.
        offsets = np.sort(rng.integers(0, YEAR_S, size=size) + user * (2 * YEAR_S)) - user * (2 * YEAR_S)
        columns = [user + 1, track // 8 + 1, track // 2 + 1, track + 1, START_S + offsets]
        _write_tsv(folder / f"LFM-1b_LEs_{files:03d}.txt", columns)
        written, files = written + size, files + 1
    return {"users": users, "events": written, "tracks": next_one_off, "files": files}


def _write_tsv(path: Path, columns: list[np.ndarray]) -> None:
    """Integer columns as tab-separated text without a header, through Arrow's CSV writer (numpy's savetxt
    is many times slower)."""
    import pyarrow as pa
    import pyarrow.csv as csv

    table = pa.table({f"c{i}": column for i, column in enumerate(columns)})
    csv.write_csv(table, str(path), csv.WriteOptions(include_header=False, delimiter="\t"))


def step_generate(home: Path, events: int) -> dict:
    began = time.perf_counter()
    shape = write_log(home / "data" / "landing" / "lfm1b", events)
    return {"seconds": time.perf_counter() - began, "shape": shape}


def step_data(home: Path, memory_limit: str, targets: int, users: int) -> dict:
    """The data assets: per-asset seconds and the split's metadata."""
    os.environ["RECMAMBA_HOME"] = str(home)
    import dagster as dg

    from pipelines.data.assets import DATA_ASSETS
    from pipelines.data.resources import Warehouse

    ops = {
        "raw_events": {"config": {"source": "lfm1b", "dataset": DATASET}},
        "splits": {"config": {"targets_per_user": max(round(targets / users), 1)}},
    }
    warehouse = Warehouse(memory_limit=memory_limit, temp_directory=str(home / "duckdb_spill"))
    instance = dg.DagsterInstance.ephemeral()
    began = time.perf_counter()
    result = dg.materialize(DATA_ASSETS, resources={"warehouse": warehouse}, run_config={"ops": ops}, instance=instance)
    seconds = time.perf_counter() - began
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
    export = Path(result.asset_materializations_for_node("splits")[0].metadata["export_path"].value)
    metadata = json.loads((export / "metadata.json").read_text())
    keys = ("num_users", "num_items", "num_train_events", "num_valid_targets", "num_test_targets", "target_protocol")
    return {"seconds": seconds, "steps": steps, "export": str(export), "split": {k: metadata.get(k) for k in keys}}


def step_store(home: Path, export: str) -> dict:
    """The conversion, and the training windows' count (so the epoch's cut can be sized in events)."""
    from recmodels.data.history_store import open_split
    from recmodels.training.windows import WindowIndex

    began = time.perf_counter()
    data = open_split(export, home / "history_store")
    seconds = time.perf_counter() - began
    windows = WindowIndex.of(data, MAX_LEN)
    return {"seconds": seconds, "windows": len(windows), "window_targets": windows.num_targets}


def step_train(home: Path, export: str, steps: int, targets: int) -> dict:
    """``real_size.py``'s run of the trainer's command line (sampled softmax, sparse item updates, the history
    store) with this benchmark's options; its progress lines go to this process's stderr."""
    out = home / "train-out"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    options = {
        "--model.max_len": MAX_LEN, "--model.item_dtype": "bfloat16", "--train.batch_size": BATCH,
        "--train.negatives": "popularity", "--train.item_optimizer": "rowwise_adagrad",
        "--train.max_steps_per_epoch": steps, "--train.eval_max_targets": targets, "--train.test_max_targets": targets,
    }  # fmt: skip
    extra = [str(part) for option in options.items() for part in option]
    wall, result = run_trainer(Path(export), home, "recmamba", 1, extra)
    cost, test, valid = result["cost"], result["test"], result["valid"]
    ranks = TargetRanks.read(out / TEST_RANKS_FILE)
    intervals = {
        metric: dataclasses.asdict(user_bootstrap(per_target_metric(ranks.rank, metric), ranks.user_id))
        for metric in ("ndcg_10", "hr_10")
    }
    return {
        "seconds": wall,
        "peak_rss_mb": max_rss_mb(resource.RUSAGE_CHILDREN),
        "train_seconds": cost["train_seconds_total"],
        "train_events": round(cost["train_events_per_second"] * cost["train_seconds_total"]),
        "train_events_per_s": cost["train_events_per_second"],
        "valid_seconds": valid["seconds"],
        "valid_encode_seconds": valid["encode_seconds"],
        "test_seconds": test["seconds"],
        "test_encode_seconds": test["encode_seconds"],
        "test_targets": test["num_targets"],
        "test": intervals,
        "compile_seconds": cost["compile_seconds"],
    }


def step_reencode(home: Path, export: str, targets: int) -> dict:
    """The test's histories encoded from their first event by the trained weights (no kept states)."""
    import torch

    from recmodels import build_model
    from recmodels.data.history_store import open_split
    from recmodels.evaluation.evaluate import encode_targets, select_targets
    from recmodels.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from recmodels.training.loop import prepare_process

    prepare_process("cpu", fill_kernel_cache=False)
    out = home / "train-out"
    config = json.loads((out / "result.json").read_text())["config"]["model"]
    data = open_split(export, home / "history_store")
    model = build_model("recmamba", data.num_items, **config)
    model.load_state_dict(load_checkpoint(out / CHECKPOINT_FILE)["best_state"])
    model.eval()
    chosen = select_targets(data, "test", targets)
    began = time.perf_counter()
    with torch.no_grad():
        encode_targets(model, data, chosen, torch.device("cpu"), what="test: encoding again")
    seconds = time.perf_counter() - began
    encoded = np.zeros(data.num_users, dtype=np.int64)  # each user's history is encoded once, to its last target
    np.maximum.at(encoded, chosen.rows, chosen.history_lengths)
    return {"seconds": seconds, "events": int(encoded.sum())}


def child(args: argparse.Namespace) -> dict:
    home, size = Path(args.child_home), json.loads(args.child_size)
    if args.child == "generate":
        report = step_generate(home, size["events"])
    elif args.child == "data":
        report = step_data(home, args.memory_limit, args.targets, size["users"])
    elif args.child == "store":
        report = step_store(home, size["export"])
    elif args.child == "train":
        report = step_train(home, size["export"], size["train_steps"], args.targets)
    else:
        report = step_reencode(home, size["export"], args.targets)
    return {**report, "peak_rss_mb": max(max_rss_mb(), report.get("peak_rss_mb", 0.0))}


def run_step(args: argparse.Namespace, step: str, home: Path, size: dict) -> dict:
    """One step in its own process; its progress lines pass through, its report is the last stdout line."""
    command = [sys.executable, __file__, "--child", step, "--child-home", str(home), "--child-size", json.dumps(size)]
    command += ["--memory-limit", args.memory_limit, "--targets", str(args.targets)]
    completed = subprocess.run(command, cwd=PROJECT, stdout=subprocess.PIPE, text=True, check=True)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  {step}: {report['seconds']:.0f} s, peak {report['peak_rss_mb']:,.0f} MB", flush=True)
    return report


def measure_size(args: argparse.Namespace, events: int, home: Path, report: dict) -> dict:
    size: dict = {"events": events}
    steps: dict = {}
    report["sizes"][str(events)] = {"steps": steps}
    for step in STEPS[: STEPS.index(args.until) + 1]:
        steps[step] = run_step(args, step, home, size)
        if step == "generate":
            size |= {"users": steps[step]["shape"]["users"], "events_written": steps[step]["shape"]["events"]}
        if step == "data":
            size["export"] = steps[step]["export"]
        if step == "store":  # windows are cropped at history ends, so a step holds fewer than MAX_LEN * BATCH
            per_step = BATCH * steps[step]["window_targets"] / steps[step]["windows"]
            size["train_steps"] = math.ceil(args.train_share * size["events_written"] / per_step)
        report["sizes"][str(events)]["shape"] = size
        write(report)
    return report["sizes"][str(events)]


def per_event_rows(size: dict) -> dict[str, tuple[float, float, float]]:
    """Step -> (seconds, events/s, peak MB) for the steps measured; the data layer's asset steps each get a row."""
    steps, events = size["steps"], size["shape"]["events_written"]
    rows: dict[str, tuple[float, int | None, float]] = {}
    if "generate" in steps:
        rows["generate"] = (steps["generate"]["seconds"], events, steps["generate"]["peak_rss_mb"])
    for name, seconds in steps.get("data", {}).get("steps", {}).items():
        rows[f"data/{name}"] = (seconds, events, steps["data"]["peak_rss_mb"])
    if "store" in steps:
        rows["history store"] = (steps["store"]["seconds"], events, steps["store"]["peak_rss_mb"])
    if "train" in steps:
        train = steps["train"]
        rows["train"] = (train["train_seconds"], train["train_events"], train["peak_rss_mb"])
        rows["validation"] = (train["valid_seconds"], None, train["peak_rss_mb"])
        rows["test (kept states)"] = (train["test_seconds"], None, train["peak_rss_mb"])
        rows["test encoding, kept states"] = (train["test_encode_seconds"], None, train["peak_rss_mb"])
    if "re-encode" in steps:
        again = steps["re-encode"]
        rows["test encoding, again"] = (again["seconds"], again["events"], again["peak_rss_mb"])
    return {name: (s, n / s if n and s else float("nan"), mb) for name, (s, n, mb) in rows.items()}


def print_tables(report: dict) -> None:
    sizes = report["sizes"]
    for key, size in sizes.items():
        test = size["steps"].get("train", {}).get("test", {})
        interval = test.get("ndcg_10", {})
        print(f"\n{int(key):,} events ({size['shape'].get('users', 0):,} users): test NDCG@10 {interval}")
        print(f"{'step':<32}{'seconds':>10}{'events/s':>14}{'peak MB':>10}")
        for name, (seconds, rate, mb) in per_event_rows(size).items():
            print(f"{name:<32}{seconds:>10.1f}{rate:>14,.0f}{mb:>10,.0f}")
    if len(sizes) == 2:
        small, large = (per_event_rows(size) for size in sizes.values())
        ratios = {name: small[name][1] / large[name][1] for name in small if name in large}
        report["per_event_cost_ratio"] = ratios
        print("\nper-event cost, larger / smaller (1.0: linear):")
        for name, ratio in ratios.items():
            print(f"  {name:<30}{ratio:>6.2f}")


def write(report: dict) -> None:
    path = Path(report["json"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[11_700_000, 109_000_000])
    parser.add_argument("--memory-limit", default="6GB", help="the warehouse resource's DuckDB memory_limit")
    parser.add_argument("--train-share", type=float, default=0.2, help="of the log's events, trained in one epoch")
    parser.add_argument("--targets", type=int, default=10_000, help="validation and test targets, seeded")
    parser.add_argument("--home", type=Path, help="where each size's RECMAMBA_HOME goes (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=RESULTS / "lfm1b_scale.json")
    parser.add_argument("--until", choices=STEPS, default=STEPS[-1], help="the last step measured")
    parser.add_argument("--child", choices=STEPS)
    parser.add_argument("--child-home")
    parser.add_argument("--child-size")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    report = {"argv": sys.argv[1:], "json": str(args.json), "cpu_count": os.cpu_count(), "sizes": {}}
    base = args.home or Path(tempfile.mkdtemp(prefix="recmamba-lfm1b-scale-"))
    for events in args.events:
        print(f"{events:,} events:", flush=True)
        home = base / f"{events}"
        shutil.rmtree(home, ignore_errors=True)
        measure_size(args, events, home, report)
        shutil.rmtree(home / "data" / "landing", ignore_errors=True)  # the raw text is the largest part
    print_tables(report)
    write(report)
    if args.home is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
