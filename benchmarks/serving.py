"""Serving cost: per-event update + recommendation latency, batched update throughput, state bytes per user,
and the state store (SQLite WAL against DuckDB), RecMamba's O(1) step against SASRec re-encoding.

Setting (issue 13): d_model 64, 2 layers, 20k items, 2 threads, random weights (cost does not depend on
them). Rows:
  latency  : batch 1, one new event then the top 10 of the catalogue, at history length L (the state was
             encoded from L events first): recmamba_fused (the compiled step, what the service runs),
             recmamba_ops (``model.step``, per-operator PyTorch), gru4rec, sasrec_reencode (SASRec with
             max_len L re-encoding the last L events, what the service runs for attention models);
  batched  : one event for each of 256 users per call, events per second;
  store    : --users rows of RecMamba's state: bulk write, point read, one-user update transaction;
  service  : RecommendationService over a built SQLite store (store reads/writes included): POST of one
             event + recommendation, and recommendation alone (p50/p99, requests/s in one thread).
Prints tables, writes benchmarks/results/serving.json.

    .venv/bin/python benchmarks/serving.py                     # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/serving.py --lengths 512 --users 500 --repeats 50
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NUM_ITEMS, D_MODEL, N_LAYERS, TOP_K = 20_000, 64, 2, 10


def timings_ms(step: Callable[[], object], repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(samples, 50)), "p99_ms": float(np.percentile(samples, 99))}


def top_k(embedding: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """What the service does for a known user (``RecommendationService.recommend``) minus the store read."""
    from recmodels.serving.service import top_items

    scores = embedding @ hidden
    scores[0] = -np.inf
    return top_items(scores, TOP_K)


def model(name: str, max_len: int = 512):
    from recmodels.models import build_model

    torch.manual_seed(0)
    return build_model(name, NUM_ITEMS, d_model=D_MODEL, n_layers=N_LAYERS, max_len=max_len, dropout=0.0).eval()


def engine(name: str, max_len: int = 512, fused: bool = True):
    from recmodels.serving.engines import engine_for

    served = engine_for(model(name, max_len))
    if not fused:
        served.fused = None
    return served


def latency_rows(lengths: list[int], repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    engines = {
        "recmamba_fused": engine("recmamba"),
        "recmamba_ops": engine("recmamba", fused=False),
        "gru4rec": engine("gru4rec"),
    }
    for length in lengths:
        history = rng.integers(1, NUM_ITEMS + 1, size=length)
        event = np.array([[int(rng.integers(1, NUM_ITEMS + 1))]])
        for name, served in engines.items():
            states, hidden = served.encode([history])
            embedding = served.model.item_embedding.weight.detach().numpy()

            def update_and_recommend(served=served, states=states, hidden=hidden, embedding=embedding, event=event):
                served.advance(event, states, hidden)
                return top_k(embedding, hidden[0])

            rows.append({"row": name, "L": length, **timings_ms(update_and_recommend, repeats)})
        sasrec = engine("sasrec", max_len=length)
        states, hidden = sasrec.encode([history])
        embedding = sasrec.model.item_embedding.weight.detach().numpy()

        def reencode(states=states, hidden=hidden, sasrec=sasrec, embedding=embedding, event=event):
            sasrec.advance(event, states, hidden)
            return top_k(embedding, hidden[0])

        sasrec_repeats = max(5, repeats // max(1, length // 256))
        rows.append({"row": "sasrec_reencode", "L": length, **timings_ms(reencode, sasrec_repeats, warmup=1)})
        print(f"  latency L={length} done", flush=True)
    return rows


def batched_rows(repeats: int, batch: int = 256) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for name, served in (
        ("recmamba_fused", engine("recmamba")),
        ("recmamba_ops", engine("recmamba", fused=False)),
        ("gru4rec", engine("gru4rec")),
        ("sasrec_reencode_L512", engine("sasrec")),
    ):
        histories = [rng.integers(1, NUM_ITEMS + 1, size=512) for _ in range(batch)]
        states, hidden = served.encode(histories)
        events = rng.integers(1, NUM_ITEMS + 1, size=(batch, 1))
        timed = max(3, repeats // (100 if name.startswith("sasrec") else 10))
        times = timings_ms(lambda s=served, st=states, h=hidden, e=events: s.advance(e, st, h), timed, warmup=1)
        rows.append({"row": name, "batch": batch, **times, "events_per_s": batch / times["p50_ms"] * 1e3})
    return rows


def bytes_rows(lengths: list[int]) -> list[dict]:
    rows = []
    for name in ("recmamba", "gru4rec", "sasrec"):
        for length in lengths:
            served = engine(name, max_len=length if name == "sasrec" else 512)
            state = served.state_width * served.state_dtype.itemsize + served.hidden_width * 4
            rows.append({"row": name, "L": length, "state_bytes_per_user": state})
    return rows


def store_row(name: str, users: int, bulk: float, read: dict, write: dict, size: int) -> dict:
    """One store's row of the table: bulk write, point read and one-user update latency, bytes on disk."""
    return {
        "row": name,
        "users": users,
        "bulk_write_s": bulk,
        "read_p50_ms": read["p50_ms"],
        "read_p99_ms": read["p99_ms"],
        "update_p50_ms": write["p50_ms"],
        "update_p99_ms": write["p99_ms"],
        "bytes_per_user_on_disk": size / users,
    }


def store_rows(users: int, repeats: int) -> list[dict]:
    """The state store (SQLite WAL + memory-mapped state rows) against DuckDB (BLOB column), same operations."""
    import duckdb

    from recmodels.serving.store import StateStore, UserRow, rows_path

    served = engine("recmamba")
    rng = np.random.default_rng(2)
    states = rng.standard_normal((users, served.state_width)).astype(np.float32)  # distinct rows: no dedup
    hidden = rng.standard_normal(D_MODEL).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore.create(Path(folder) / "s.sqlite", np.float32, served.state_width, {"model": "recmamba"})
        records = [UserRow(f"u{i}", states[i], hidden, 0, np.zeros(1, np.int32), 100) for i in range(users)]
        start = time.perf_counter()
        with store.write():
            store.put_many(records)
        bulk = time.perf_counter() - start
        picks = [f"u{i}" for i in rng.integers(0, users, size=repeats + 3)]
        read_iter = iter(picks)
        read = timings_ms(lambda: store.get(next(read_iter)), repeats)
        update_iter = iter(picks)

        def update() -> None:
            user = next(update_iter)
            with store.write():
                row = store.get(user)
                row.events += 1
                store.put_many([row])

        write = timings_ms(update, repeats)
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(store.path) + os.stat(rows_path(store.path)).st_blocks * 512  # rows: sparse
        rows.append(store_row("sqlite_wal+rows", users, bulk, read, write, size))
        store.close()

        con = duckdb.connect(str(Path(folder) / "s.duckdb"))
        con.execute("CREATE TABLE users (user VARCHAR PRIMARY KEY, state BLOB, hidden BLOB, events BIGINT)")
        hidden_blob = hidden.tobytes()
        start = time.perf_counter()
        con.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?)",
            [(f"u{i}", states[i].tobytes(), hidden_blob, 100) for i in range(users)],
        )
        bulk = time.perf_counter() - start
        read_iter = iter(picks)
        read = timings_ms(
            lambda: con.execute("SELECT state, hidden FROM users WHERE user = ?", [next(read_iter)]).fetchone(), repeats
        )
        update_iter = iter(picks)

        def duck_update() -> None:
            user = next(update_iter)
            con.execute("BEGIN")
            got = con.execute("SELECT state, events FROM users WHERE user = ?", [user]).fetchone()
            con.execute("UPDATE users SET state = ?, events = ? WHERE user = ?", [got[0], got[1] + 1, user])
            con.execute("COMMIT")

        write = timings_ms(duck_update, repeats)
        con.execute("CHECKPOINT")
        con.close()
        size = os.path.getsize(Path(folder) / "s.duckdb")
        rows.append(store_row("duckdb", users, bulk, read, write, size))
    return rows


def service_rows(users: int, repeats: int) -> list[dict]:
    """The whole service path (store included) for RecMamba, minus HTTP."""
    from recmodels.serving.build import build_folder
    from recmodels.serving.bundle import CONFIG_FILE, STATE_DICT_FILE, Catalogue
    from recmodels.serving.service import RecommendationService

    recmamba = model("recmamba")
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder) / "files"
        files.mkdir()
        torch.save(recmamba.state_dict(), files / STATE_DICT_FILE)
        config = {"d_model": D_MODEL, "n_layers": N_LAYERS, "dropout": 0.0}
        (files / CONFIG_FILE).write_text(json.dumps({"model": "recmamba", "num_items": NUM_ITEMS, "config": config}))
        names = [f"u{i}" for i in range(users)]
        histories = [rng.integers(1, NUM_ITEMS + 1, size=64) for _ in names]
        stamps = [np.arange(64) for _ in names]
        catalogue = Catalogue([f"i{i}" for i in range(1, NUM_ITEMS + 1)], np.arange(NUM_ITEMS + 1))
        build_folder(
            Path(folder) / "served", recmamba, files, catalogue, names, histories, stamps, {"model": "recmamba"}
        )
        service = RecommendationService(Path(folder) / "served")
        clock = iter(range(1_000, 1_000_000))

        def post_and_recommend() -> None:
            user = names[int(rng.integers(users))]
            service.post_events([(user, f"i{int(rng.integers(1, NUM_ITEMS + 1))}", next(clock))])
            service.recommend(user, TOP_K, exclude_seen=True)

        both = timings_ms(post_and_recommend, repeats)
        recommend = timings_ms(lambda: service.recommend(names[int(rng.integers(users))], TOP_K, True), repeats)
        service.close()
    return [
        {"row": "post_event+recommend", **both, "per_s": 1e3 / both["p50_ms"]},
        {"row": "recommend", **recommend, "per_s": 1e3 / recommend["p50_ms"]},
    ]


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--users", type=int, default=2000, help="users in the store and service rows")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="torch and Numba threads (issue 13: 2 cores)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    results = {
        "setting": {
            "num_items": NUM_ITEMS,
            "d_model": D_MODEL,
            "n_layers": N_LAYERS,
            "threads": args.threads,
            "users": args.users,
            "repeats": args.repeats,
            "load_average": os.getloadavg(),
        },
        "latency": latency_rows(args.lengths, args.repeats),
        "batched": batched_rows(args.repeats),
        "bytes": bytes_rows(args.lengths),
        "store": store_rows(args.users, args.repeats),
        "service": service_rows(args.users, args.repeats),
    }
    for section in ("latency", "batched", "bytes", "store", "service"):
        print_table(section, results[section])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
