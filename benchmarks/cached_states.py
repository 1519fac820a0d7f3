"""The test of a streaming model from validation's kept states against encoding every history again.

    .venv/bin/python benchmarks/cached_states.py [--users 200] [--length 4000] [--models recmamba gru4rec lrurec]
        [--runs 3] [--json PATH]

A lifelong-shaped export (``--users`` histories of ``--length`` events over 20,000 items, the last 2% of each
history validation targets and the 2% after them test targets, as a global time split leaves them), an
untrained model of the main job's size (d_model 64, 2 layers), and per model and run: validation with
``UserStates``, then the test continued from them and the test encoded from scratch, with their encoding
seconds. Both tests' hidden states are compared (largest absolute difference: float rounding, since a GEMM's
blocking depends on the sequence's length), and so are their ranks: an untrained model's scores are close
together, so a rounding difference can swap near-tied items. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measured_child import median_range  # noqa: E402
from recmodels import build_model  # noqa: E402
from recmodels.data.split_data import SplitData, write_split_export  # noqa: E402
from recmodels.evaluation.evaluate import encode_targets, evaluate, select_targets  # noqa: E402
from recmodels.evaluation.states import UserStates  # noqa: E402
from recmodels.training.threads import apply_thread_budget  # noqa: E402

ITEMS = 20_000


def lifelong_export(folder: Path, users: int, length: int) -> SplitData:
    rng = np.random.default_rng(0)
    held_out = max(1, length // 50)
    histories = [rng.integers(1, ITEMS + 1, length).tolist() for _ in range(users)]
    splits = [[0] * (length - 2 * held_out) + [1] * held_out + [2] * held_out for _ in range(users)]
    return SplitData.load(write_split_export(folder, histories, splits, num_items=ITEMS))


def measure(name: str, data: SplitData) -> dict:
    torch.manual_seed(0)
    model = build_model(name, ITEMS, d_model=64, n_layers=2, max_len=200, dropout=0.0).eval()
    states = UserStates(model, data.num_users)
    valid = evaluate(model, data, "valid", states=states)
    continued = evaluate(model, data, "test", states=states)
    again = evaluate(model, data, "test")
    fresh = UserStates(model, data.num_users)  # the hidden states themselves, once more each way
    cpu = torch.device("cpu")
    encode_targets(model, data, select_targets(data, "valid"), cpu, states=fresh)
    test = select_targets(data, "test")
    difference = encode_targets(model, data, test, cpu, states=fresh) - encode_targets(model, data, test, cpu)
    return {
        "valid_encode_s": valid.encode_seconds,
        "test_continued_encode_s": continued.encode_seconds,
        "test_again_encode_s": again.encode_seconds,
        "test_continued_s": continued.seconds,
        "test_again_s": again.seconds,
        "hidden_max_abs_difference": float(difference.abs().max()),
        "ranks_differing": float(np.mean(continued.ranks.rank != again.ranks.rank)),
        "ndcg_10_continued": continued.overall["ndcg_10"],
        "ndcg_10_again": again.overall["ndcg_10"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--length", type=int, default=4000)
    parser.add_argument("--models", nargs="+", default=["recmamba", "gru4rec", "lrurec"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cached_states.json")
    args = parser.parse_args()
    apply_thread_budget()
    with tempfile.TemporaryDirectory() as folder:
        data = lifelong_export(Path(folder) / "export", args.users, args.length)
        runs = {name: [measure(name, data) for _ in range(args.runs)] for name in args.models}
    print(f"{args.users} users x {args.length} events, {ITEMS:,} items; median [min-max] of {args.runs} runs")
    print(
        "| model | test encoding, again s | test encoding, continued s | speed-up | test total again / continued s "
        "| max abs hidden difference | ranks differing | NDCG@10 again / continued |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        again = [r["test_again_encode_s"] for r in results]
        continued = [r["test_continued_encode_s"] for r in results]
        ratio = [a / c for a, c in zip(again, continued, strict=True)]
        totals = f"{median_range([r['test_again_s'] for r in results], 2)} / "
        totals += median_range([r["test_continued_s"] for r in results], 2)
        print(f"| {name} | {median_range(again, 2)} | {median_range(continued, 3)} | {median_range(ratio, 1)}x "
              f"| {totals} | {max(r['hidden_max_abs_difference'] for r in results):.1e} "
              f"| {max(r['ranks_differing'] for r in results):.2%} "
              f"| {results[0]['ndcg_10_again']:.5f} / {results[0]['ndcg_10_continued']:.5f} |")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"users": args.users, "length": args.length, "runs": runs}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
