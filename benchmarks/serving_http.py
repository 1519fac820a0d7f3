"""HTTP load on the recommendation service (``python -m recmodels.serve``) with wrk, beside the same work in-process.

Setting: RecMamba with random weights (cost does not depend on them), 20k items, d_model 64, 2 layers, served
from a folder built under a temporary RECMAMBA_HOME (``data/serving/bench/recmamba``) for two groups of users:
--short-users with 500 events and --long-users with 20,000 (the state row has a fixed size, and neither an
update nor a recommendation reads a user's seen items whole, so both should cost the same for either group).
The real service runs as a subprocess in its own process group on a free port, once per worker count:
--workers, and 2 as well. wrk (keep-alive, ``benchmarks/wrk/serving.lua``) runs every cell --repeats times
for --duration seconds, repeats interleaved; each number is reported as min-max:
  get       : GET /users/{user}/recommendations?k=10 for a random user of the group, 1, 8 and 32 connections;
  post      : POST /events of --batch events, one for each of as many distinct users, timestamps increasing
              per user, 1 and 2 connections (events/s = requests/s x batch); and, for the update cost against
              history length, both groups at one batch size (--batch, at most --long-users), 1 connection;
  mixed     : 90% GETs, 10% POSTs of 100 events, 1, 8 and 32 connections; wrk keeps one latency histogram,
              so a mixed row's latency is over both kinds together;
  in-process: ``RecommendationService`` on the same folder, no HTTP and no server running, in a worker thread
              as uvicorn runs the handlers: ``post_events`` of the same batches, ``recommend``, and the engine
              alone (``engine.advance``, --batch users x 1 event); the POST table shows HTTP/in-process events/s.
Every answer is checked: non-2xx answers and socket errors per row, and the sums of the service's applied,
stale and duplicate counts against the events posted. Requests still in flight when wrk stops a cell run to
the end in the service, so each cell waits until the service is idle before the next starts, and once a
service has stopped, its store's journal counts every event it applied, those never answered included.
wrk runs on the same cores as the service (threads <= connections, <= 2). --service-env sets variables for
the service only (the service already scores on one torch thread per worker: on 2 cores, multi-threaded
matrix products from concurrent requests stalled the GETs tenfold).

    .venv/bin/python benchmarks/serving_http.py              # about 7 minutes on 2 cores, 4 more with 2 workers
    .venv/bin/python benchmarks/serving_http.py --quick      # about 2.5 minutes, 2 more with 2 workers: a check
    .venv/bin/python benchmarks/serving_http.py --duration 10 --long-users 1000   # longer, 7 more minutes to build

Needs wrk (Debian: ``apt-get install -y wrk``). Prints tables, writes benchmarks/results/serving_http.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recmodels.serving.service import RecommendationService

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LUA_SCRIPT = ROOT / "benchmarks" / "wrk" / "serving.lua"
NUM_ITEMS, D_MODEL, N_LAYERS, TOP_K = 20_000, 64, 2, 10
DATASET, MODEL = "bench", "recmamba"
CONNECTIONS = (1, 8, 32)
MIXED_BATCH, MIXED_POST_PERCENT = 100, 10
CLOCK_START = 10**12  # ms, after every built history's timestamps (0 .. length - 1)
CLOCK_SPAN = 10**7  # timestamps reserved per wrk run: one per post and thread, far more than a run sends
WRK_TIMEOUT_S = 60  # wrk's default (2 s) would count a slow batch as a socket timeout, not a latency
IDLE_WINDOW_S, IDLE_CPU_SHARE, IDLE_TIMEOUT_S = 0.5, 0.05, 120  # between cells: under 5% of a core for 0.5 s
WRITE_TOKEN = secrets.token_urlsafe(32)  # in the service's and wrk's environments, on no command line


@dataclass(frozen=True)
class Group:
    name: str  # short or long
    prefix: str  # user ids are prefix + 0 .. users - 1
    users: int
    length: int  # events per history when built


@dataclass(frozen=True)
class Cell:
    section: str  # get, post or mixed
    group: str
    connections: int
    batch: int = 0  # events per POST
    post_percent: int = 0  # share of POSTs in mixed traffic

    @property
    def threads(self) -> int:
        return min(2, self.connections)


class Clock:
    """Event timestamps (ms) handed out in increasing, disjoint spans, so a user's events never go back."""

    def __init__(self, start: int) -> None:
        self.next = start

    def span(self, size: int) -> int:
        first, self.next = self.next, self.next + size
        return first


def spread(values: list[float]) -> dict[str, object]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


def number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def span_text(values: list[float]) -> str:
    low, high = min(values), max(values)
    return number(low) if number(low) == number(high) else f"{number(low)}–{number(high)}"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


# --- the served folder --------------------------------------------------------------------------------------


def random_model():
    import torch

    from recmodels.models import build_model

    torch.manual_seed(0)
    return build_model(MODEL, NUM_ITEMS, d_model=D_MODEL, n_layers=N_LAYERS, dropout=0.0).eval()


def build_served(home: Path, groups: list[Group], seed: int = 0) -> tuple[Path, dict]:
    """``<home>/data/serving/bench/recmamba``, a link to a folder holding every group's users, encoded."""
    import torch

    from recmodels.serving.build import build_folder
    from recmodels.serving.bundle import CONFIG_FILE, SERVING_FOLDER, STATE_DICT_FILE, Catalogue, publish

    model = random_model()
    files = home / "model-files"
    files.mkdir(parents=True)
    torch.save(model.state_dict(), files / STATE_DICT_FILE)
    config = {"d_model": D_MODEL, "n_layers": N_LAYERS, "dropout": 0.0}
    (files / CONFIG_FILE).write_text(json.dumps({"model": MODEL, "num_items": NUM_ITEMS, "config": config}))
    rng = np.random.default_rng(seed)
    users = [f"{g.prefix}{i}" for g in groups for i in range(g.users)]
    histories = [rng.integers(1, NUM_ITEMS + 1, size=g.length) for g in groups for _ in range(g.users)]
    stamps = [np.arange(len(history), dtype=np.int64) for history in histories]
    counts = np.concatenate([[0], rng.integers(1, 1000, size=NUM_ITEMS)])
    catalogue = Catalogue([f"i{i}" for i in range(1, NUM_ITEMS + 1)], counts)
    link = home / SERVING_FOLDER / DATASET / MODEL
    folder = link.with_name(f"{MODEL}-built")
    meta = {"model": MODEL, "version": "random-weights", "dataset": DATASET}
    began = time.perf_counter()
    summary = build_folder(folder, model, files, catalogue, users, histories, stamps, meta)
    publish(link, folder)
    return folder, {**asdict(summary), "build_s": time.perf_counter() - began}


def journal_events(folder: Path) -> int:
    """Events the store applied so far (one journal row each)."""
    from recmodels.serving.bundle import STORE_FILE

    with contextlib.closing(sqlite3.connect(f"file:{folder / STORE_FILE}?mode=ro", uri=True)) as con:
        return int(con.execute("SELECT count(*) FROM journal").fetchone()[0])


# --- in-process ---------------------------------------------------------------------------------------------


def timed_loop(step: Callable[[], object], seconds: float, at_least: int) -> list[float]:
    """Seconds of each call of ``step``, called until ``seconds`` have passed and at least ``at_least`` times."""
    samples: list[float] = []
    while sum(samples) < seconds or len(samples) < at_least:
        began = time.perf_counter()
        step()
        samples.append(time.perf_counter() - began)
    return samples


class EventBatches:
    """Batches of one event for each of ``batch`` distinct users of a group, users taken in turn."""

    def __init__(self, group: Group, batch: int, clock: Clock, rng: np.random.Generator) -> None:
        self.group, self.batch, self.clock, self.rng, self.cursor = group, batch, clock, rng, 0

    def next(self) -> list[tuple[str, str, int]]:
        ts = self.clock.span(1)
        users = (self.cursor + np.arange(self.batch)) % self.group.users
        self.cursor = int(users[-1] + 1) % self.group.users
        items = self.rng.integers(1, NUM_ITEMS + 1, size=self.batch)
        return [(f"{self.group.prefix}{u}", f"i{i}", ts) for u, i in zip(users, items, strict=True)]


def post_repeat(service: RecommendationService, batches: EventBatches, seconds: float) -> dict:
    samples, reports = [], []
    while sum(samples) < seconds or len(samples) < 3:
        events = batches.next()
        began = time.perf_counter()
        reports.append(service.post_events(events))
        samples.append(time.perf_counter() - began)
    return {
        "events_per_s": batches.batch * len(samples) / sum(samples),
        "p50_ms": float(np.percentile(samples, 50)) * 1e3,
        "applied": sum(r.applied for r in reports),
        "expected": batches.batch * len(samples),
        "stale": sum(r.stale for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
    }


def recommend_repeat(service: RecommendationService, group: Group, seconds: float, rng: np.random.Generator) -> dict:
    users = itertools.cycle([f"{group.prefix}{u}" for u in rng.integers(0, group.users, size=4096)])
    samples = timed_loop(lambda: service.recommend(next(users), TOP_K, True), seconds, at_least=20)
    return {
        "per_s": len(samples) / sum(samples),
        "p50_ms": float(np.percentile(samples, 50)) * 1e3,
        "p99_ms": float(np.percentile(samples, 99)) * 1e3,
    }


def engine_repeat(
    service: RecommendationService, group: Group, batch: int, seconds: float, rng: np.random.Generator
) -> dict:
    rows = service.store.get_many(f"{group.prefix}{u}" for u in range(batch))
    states = np.stack([row.state for row in rows.values()])
    hidden = np.stack([row.hidden for row in rows.values()])
    items = rng.integers(1, NUM_ITEMS + 1, size=(len(rows), 1))
    samples = timed_loop(lambda: service.engine.advance(items, states, hidden), seconds, at_least=3)
    return {"events_per_s": len(rows) * len(samples) / sum(samples), "p50_ms": float(np.median(samples)) * 1e3}


def in_process_rows(
    folder: Path, groups: dict[str, Group], post_shapes: list[tuple[str, int]], args: argparse.Namespace, clock: Clock
) -> list[dict]:
    """Rows like the HTTP ones, measured on ``RecommendationService`` itself (repeats interleaved), in a worker
    thread as uvicorn runs the service's (sync) handlers: under CPU contention, torch's small matrix products
    of the step were 3-4x slower in the main thread than in another one (22 against 6 ms a 20-event batch)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(measure_in_process, folder, groups, post_shapes, args, clock).result()


def measure_in_process(
    folder: Path, groups: dict[str, Group], post_shapes: list[tuple[str, int]], args: argparse.Namespace, clock: Clock
) -> list[dict]:
    from recmodels.serving.service import RecommendationService

    rng = np.random.default_rng(1)
    service = RecommendationService(folder)
    batches = {shape: EventBatches(groups[shape[0]], shape[1], clock, rng) for shape in post_shapes}
    runs: dict[tuple, list[dict]] = {}
    try:
        service.post_events(EventBatches(groups["short"], 16, clock, rng).next())  # compiles the step
        for repeat in range(args.repeats):
            for group, batch in post_shapes:
                run = post_repeat(service, batches[(group, batch)], args.duration)
                runs.setdefault(("post_events", group, batch), []).append(run)
            for group in groups.values():
                run = recommend_repeat(service, group, args.duration, rng)
                runs.setdefault(("recommend", group.name, 0), []).append(run)
            run = engine_repeat(service, groups["short"], args.batch, args.duration, rng)
            runs.setdefault(("engine.advance", "short", args.batch), []).append(run)
            print(f"  in-process repeat {repeat + 1}/{args.repeats} done", flush=True)
    finally:
        service.close()
    return [
        {"row": row, "group": group, "batch": batch, "runs": found, **summarize(found)}
        for (row, group, batch), found in runs.items()
    ]


def summarize(runs: list[dict]) -> dict[str, dict]:
    keys = [key for key, value in runs[0].items() if isinstance(value, (int, float))]
    return {key: spread([run[key] for run in runs]) for key in keys}


# --- the service over HTTP ----------------------------------------------------------------------------------


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not on PATH: install it (Debian/Ubuntu: apt-get install -y wrk), then run again")
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True)  # exits 1 after printing its version
    return (done.stdout + done.stderr).splitlines()[0]


def service_env(extra: Sequence[str] = ()) -> dict[str, str]:
    """This environment with the project on PYTHONPATH, the write token, no read token (reads stay open, as
    measured), and ``extra`` KEY=VALUE settings."""
    path = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k != "RECMAMBA_READ_TOKEN"} | {"RECMAMBA_WRITE_TOKEN": WRITE_TOKEN}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    return env | dict(item.split("=", 1) for item in extra)


def serve_has_workers_flag() -> bool:
    command = [sys.executable, "-m", "recmodels.serve", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=service_env(), timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return "--workers" in done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ACCESS_LINE = re.compile(r'^INFO: +[\d.]+:\d+ - "')  # uvicorn's access log, one line per request


def log_tail(log: Path, lines: int = 40) -> str:
    """The service's last output lines other than its access log (where a traceback would be)."""
    kept = [line for line in log.read_text(errors="replace").splitlines() if not ACCESS_LINE.match(line)]
    return "\n".join(kept[-lines:])


class ServiceDied(RuntimeError):
    pass


def check_alive(process: subprocess.Popen, log: Path) -> None:
    if process.poll() is not None:
        raise ServiceDied(
            f"the service exited with status {process.returncode}; last output (no access log):\n{log_tail(log)}"
        )


def wait_until_ready(process: subprocess.Popen, url: str, log: Path, workers: int, timeout_s: float) -> dict:
    """The first /health answer; with several workers, also wait until each has logged its startup."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(process, log)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                health = json.load(answer)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceDied(f"no answer from {url}/health after {timeout_s:.0f} s:\n{log_tail(log)}") from None
            time.sleep(0.25)
    while log.read_text(errors="replace").count("Application startup complete") < workers:
        check_alive(process, log)
        if time.monotonic() > deadline:
            print(f"  warning: fewer than {workers} workers logged their startup in {log}", flush=True)
            break
        time.sleep(0.25)
    return health


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by every process of a process group (Linux ``/proc``)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command: state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_idle(process: subprocess.Popen, log: Path) -> float:
    """Seconds until the service is idle. Requests still in flight when wrk stops keep running in the
    service (a client that goes away does not cancel a handler) and would slow the next cell down."""
    began = time.monotonic()
    used = group_cpu_seconds(process.pid)
    while time.monotonic() - began < IDLE_TIMEOUT_S:
        time.sleep(IDLE_WINDOW_S)
        check_alive(process, log)
        now = group_cpu_seconds(process.pid)
        if now - used < IDLE_CPU_SHARE * IDLE_WINDOW_S:
            break
        used = now
    return time.monotonic() - began


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the service's process group (uvicorn and any workers), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Bench:
    """What every HTTP cell needs: wrk, the served folder and its home, the user groups, the timestamps."""

    wrk: str
    home: Path
    folder: Path
    groups: dict[str, Group]
    clock: Clock
    pass_workers: bool  # recmodels.serve takes --workers
    args: argparse.Namespace


@contextlib.contextmanager
def running_service(bench: Bench, workers: int, log: Path) -> Iterator[tuple[str, subprocess.Popen, dict]]:
    """``python -m recmodels.serve`` on a free port in its own process group, stopped whatever happens."""
    port = free_port()
    command = [sys.executable, "-m", "recmodels.serve", "--home", str(bench.home), "--model", MODEL]
    command += ["--dataset", DATASET, "--port", str(port)]
    command += ["--workers", str(workers)] if bench.pass_workers else []
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=service_env(bench.args.service_env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = wait_until_ready(process, url, log, workers, bench.args.startup_timeout)
        yield url, process, health
    finally:
        stop_group(process)


def run_wrk(bench: Bench, url: str, cell: Cell, seconds: float) -> dict:
    """One wrk run of ``cell`` in the service's environment (the script posts its write token); the Lua
    script's JSON line with requests/s and events/s added."""
    group = bench.groups[cell.group]
    script_args = [cell.section, group.prefix, group.users, cell.batch, cell.post_percent]
    script_args += [bench.clock.span(CLOCK_SPAN), NUM_ITEMS, cell.threads, TOP_K]
    command = [bench.wrk, "-t", str(cell.threads), "-c", str(cell.connections), "-d", f"{seconds:g}s", "--latency"]
    command += ["--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(LUA_SCRIPT), url, "--", *map(str, script_args)]
    limit_s = seconds + WRK_TIMEOUT_S + 60
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit_s, env=service_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    result = json.loads(line.removeprefix("WRK_JSON "))
    result["requests_per_s"] = result["requests"] / result["duration_s"]
    result["events_posted"] = result["posts"] * cell.batch
    result["events_per_s"] = result["events_posted"] / result["duration_s"]
    result["errors"] = sum(result["socket_errors"].values())
    return result


def plan_cells(args: argparse.Namespace, groups: dict[str, Group]) -> tuple[list[Cell], list[tuple[str, int]]]:
    """Every HTTP cell, and the (group, batch) shapes of its POSTs (measured in-process too)."""
    cells = [Cell("get", g, c) for g in groups for c in CONNECTIONS]
    length_batch = min(args.batch, groups["long"].users)
    post_shapes = list(dict.fromkeys([("short", args.batch), ("short", length_batch), ("long", length_batch)]))
    cells += [Cell("post", "short", 1, args.batch)]
    if groups["short"].users >= 2 * args.batch:  # each of wrk's 2 threads posts for its own half of the users
        cells += [Cell("post", "short", 2, args.batch)]
    cells += [Cell("post", group, 1, batch) for group, batch in post_shapes[1:]]
    if groups["short"].users >= 2 * MIXED_BATCH:
        cells += [Cell("mixed", "short", c, MIXED_BATCH, MIXED_POST_PERCENT) for c in CONNECTIONS]
    return cells, post_shapes


def http_rows(bench: Bench, workers: int, cells: list[Cell]) -> tuple[list[dict], dict]:
    """Every cell against one service of ``workers`` processes, and the check of the events it applied."""
    args = bench.args
    log = bench.home / f"serve-workers{workers}.log"
    journal_before = journal_events(bench.folder)
    runs: dict[Cell, list[dict]] = {cell: [] for cell in cells}
    warmup = [Cell("mixed", "short", 8, MIXED_BATCH, 50), Cell("get", "long", 2)]
    with running_service(bench, workers, log) as (url, process, health):
        print(f"  service ready at {url} ({workers} worker(s)): {health}", flush=True)
        warm = []
        for cell in warmup:
            warm.append(run_wrk(bench, url, cell, args.warmup))
            wait_until_idle(process, log)
        for repeat in range(args.repeats):
            for cell in cells:
                run = run_wrk(bench, url, cell, args.duration)
                run["idle_wait_s"] = wait_until_idle(process, log)
                runs[cell].append(run)
            print(f"  workers={workers}: repeat {repeat + 1}/{args.repeats} done", flush=True)
    every_run = warm + [run for found in runs.values() for run in found]
    totals = ("events_posted", "applied", "stale", "duplicates", "new_users", "non2xx", "errors")
    check = {"workers": workers, **{key: sum(run[key] for run in every_run) for key in totals}}
    check["applied_in_store"] = journal_events(bench.folder) - journal_before
    check["applied_unanswered"] = check["applied_in_store"] - check["applied"]
    check["server_log"] = server_log_summary(log)
    check["warmup"] = [{**asdict(cell), **run} for cell, run in zip(warmup, warm, strict=True)]
    rows = [{"workers": workers, **asdict(cell), "runs": found, **summarize(found)} for cell, found in runs.items()]
    return rows, check


def server_log_summary(log: Path) -> dict:
    """HTTP statuses in uvicorn's access log, and the tracebacks the service printed."""
    text = log.read_text(errors="replace")
    statuses = Counter(re.findall(r'HTTP/1\.1" (\d{3})', text))
    return {"statuses": dict(sorted(statuses.items())), "tracebacks": text.count("Traceback")}


# --- tables -------------------------------------------------------------------------------------------------


def values(row: dict, key: str) -> list[float]:
    return row[key]["runs"]


def ranges(row: dict, *keys: str) -> list[str]:
    return [span_text(values(row, key)) for key in keys]


def fraction(row: dict, part: str, whole: str) -> str:
    return f"{sum(values(row, part)):.0f}/{sum(values(row, whole)):.0f}"


def ratio_text(http: list[float], local: list[float]) -> str:
    """HTTP over in-process, the widest range their runs allow (the runs are not paired)."""
    return f"{min(http) / max(local):.2f}–{max(http) / min(local):.2f}"


GET_COLUMNS = ["workers", "group", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "sock err"]
POST_COLUMNS = ["workers", "group", "batch", "conns", "req/s", "events/s", "p50 ms", "p99 ms", "in-proc ev/s"]
POST_COLUMNS += ["HTTP/in-proc", "applied", "stale", "dup", "non-2xx", "sock err"]
MIXED_COLUMNS = ["workers", "conns", "req/s", "events/s", "p50 ms", "p99 ms", "posts", "applied", "stale"]
MIXED_COLUMNS += ["non-2xx", "sock err"]
IN_PROCESS_COLUMNS = ["row", "group", "batch", "events/s | calls/s", "p50 ms", "p99 ms", "applied"]
CHECK_COLUMNS = ["workers", "posted", "applied", "stale", "dup", "new users", "in store", "unanswered"]
CHECK_COLUMNS += ["non-2xx", "sock err", "log statuses", "tracebacks"]


def get_line(r: dict) -> list[str]:
    head = [str(r["workers"]), r["group"], str(r["connections"])]
    return [*head, *ranges(r, "requests_per_s", "p50_ms", "p99_ms", "non2xx", "errors")]


def post_line(r: dict, local: list[float]) -> list[str]:
    head = [str(r["workers"]), r["group"], str(r["batch"]), str(r["connections"])]
    http = ranges(r, "requests_per_s", "events_per_s", "p50_ms", "p99_ms")
    versus = [span_text(local), ratio_text(values(r, "events_per_s"), local)]
    checks = ranges(r, "stale", "duplicates", "non2xx", "errors")
    return [*head, *http, *versus, fraction(r, "applied", "events_posted"), *checks]


def mixed_line(r: dict) -> list[str]:
    head = [str(r["workers"]), str(r["connections"])]
    http = ranges(r, "requests_per_s", "events_per_s", "p50_ms", "p99_ms", "posts")
    return [*head, *http, fraction(r, "applied", "events_posted"), *ranges(r, "stale", "non2xx", "errors")]


def in_process_line(r: dict) -> list[str]:
    rate = ranges(r, "events_per_s" if "events_per_s" in r else "per_s", "p50_ms")
    p99 = span_text(values(r, "p99_ms")) if "p99_ms" in r else ""
    applied = fraction(r, "applied", "expected") if "applied" in r else ""
    return [r["row"], r["group"], str(r["batch"] or ""), *rate, p99, applied]


def check_line(c: dict) -> list[str]:
    keys = ("workers", "events_posted", "applied", "stale", "duplicates", "new_users", "applied_in_store")
    keys += ("applied_unanswered", "non2xx", "errors")
    log = c["server_log"]
    return [*(str(c[k]) for k in keys), json.dumps(log["statuses"]), str(log["tracebacks"])]


def print_tables(in_process: list[dict], http: list[dict], checks: list[dict]) -> None:
    local = {(r["group"], r["batch"]): values(r, "events_per_s") for r in in_process if r["row"] == "post_events"}
    section = {name: [r for r in http if r["section"] == name] for name in ("get", "post", "mixed")}
    print_table(
        "In-process (RecommendationService on the same folder, no HTTP)",
        IN_PROCESS_COLUMNS,
        [in_process_line(r) for r in in_process],
    )
    print_table(
        "GET /users/{user}/recommendations?k=10 over HTTP (min–max over repeats)",
        GET_COLUMNS,
        [get_line(r) for r in section["get"]],
    )
    print_table(
        "POST /events, one event per distinct user: HTTP, in-process post_events, HTTP/in-process events/s",
        POST_COLUMNS,
        [post_line(r, local[(r["group"], r["batch"])]) for r in section["post"]],
    )
    print_table(
        f"Mixed: {100 - MIXED_POST_PERCENT}% GET, {MIXED_POST_PERCENT}% POST of {MIXED_BATCH} events, short"
        " users (one latency histogram: p50/p99 over both kinds)",
        MIXED_COLUMNS,
        [mixed_line(r) for r in section["mixed"]],
    )
    print_table(
        "Events per service: answers' sums (warm-up included) against the store's journal",
        CHECK_COLUMNS,
        [check_line(c) for c in checks],
    )


# --- main ---------------------------------------------------------------------------------------------------


QUICK = {"short_users": 1000, "long_users": 20, "batch": 200, "duration": 1.0, "warmup": 1.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-users", type=int, default=2000, help="users with 500 events (default 2000)")
    parser.add_argument("--long-users", type=int, default=100, help="users with 20,000 events (default 100)")
    parser.add_argument("--batch", type=int, default=1000, help="events per POST, one per distinct user")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk cell and in-process row")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every cell (ranges are min-max)")
    parser.add_argument("--workers", type=int, default=1, help="service processes (2 is run too when supported)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load per service start")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for /health")
    parser.add_argument("--quick", action="store_true", help="1000 + 20 users, batch 200, 1 s cells: checks the script")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the service's processes, repeatable (e.g. OMP_NUM_THREADS=1)",
    )
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary RECMAMBA_HOME and server logs")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving_http.json")
    args = parser.parse_args()
    for key, value in QUICK.items() if args.quick else ():
        if getattr(args, key) == parser.get_default(key):  # flags given explicitly win
            setattr(args, key, value)
    if any("=" not in item for item in args.service_env):
        parser.error(f"--service-env takes KEY=VALUE (got {args.service_env})")
    if args.repeats < 1 or args.batch < 1 or args.short_users < args.batch:
        found = f"--repeats {args.repeats}, --short-users {args.short_users}, --batch {args.batch}"
        parser.error(f"need --repeats >= 1 and --short-users >= --batch >= 1 (got {found})")
    return args


def worker_counts(requested: int) -> tuple[list[int], bool]:
    """The worker counts to run, and whether ``recmodels.serve`` takes ``--workers``."""
    has_flag = serve_has_workers_flag()
    if not has_flag and requested != 1:
        raise SystemExit(f"--workers {requested}: python -m recmodels.serve has no --workers flag (see its --help)")
    return ([requested, 2] if has_flag and requested != 2 else [requested]), has_flag


def main() -> None:
    args = parse_args()
    wrk = find_wrk()
    counts, has_flag = worker_counts(args.workers)
    groups = {
        "short": Group("short", "s", args.short_users, 500),
        "long": Group("long", "l", args.long_users, 20_000),
    }
    cells, post_shapes = plan_cells(args, groups)
    home = Path(tempfile.mkdtemp(prefix="serving-http-"))
    print(f"RECMAMBA_HOME {home}; workers {counts}; {len(cells)} cells x {args.repeats} x {args.duration:g} s each")
    setting = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    setting |= {
        "num_items": NUM_ITEMS,
        "d_model": D_MODEL,
        "n_layers": N_LAYERS,
        "top_k": TOP_K,
        "wrk": wrk_version(wrk),
    }
    setting |= {"workers_run": counts, "serve_has_workers_flag": has_flag, "cpus": os.cpu_count()}
    setting |= {"load_average_at_start": os.getloadavg()}
    try:
        print(f"building the served folder ({args.short_users} x 500 + {args.long_users} x 20,000 events)", flush=True)
        folder, build = build_served(home, list(groups.values()))
        print(f"  built in {build['build_s']:.0f} s", flush=True)
        clock = Clock(CLOCK_START)
        in_process = in_process_rows(folder, groups, post_shapes, args, clock)
        bench = Bench(wrk, home, folder, groups, clock, has_flag, args)
        http, checks = [], []
        for workers in counts:
            rows, check = http_rows(bench, workers, cells)
            http += rows
            checks.append(check)
    except ServiceDied as error:
        raise SystemExit(str(error)) from None
    finally:
        if args.keep_home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print_tables(in_process, http, checks)
    unanswered = [r for r in http if min(values(r, "requests")) == 0]
    for r in unanswered:
        cell = f"{r['section']} {r['group']} at {r['connections']} connection(s), {r['workers']} worker(s)"
        print(f"warning: a run of {cell} got no answer in {args.duration:g} s: raise --duration")
    setting["load_average_at_end"] = os.getloadavg()
    results = {"setting": setting, "build": build, "in_process": in_process, "http": http, "checks": checks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
