"""Why SASRec stayed at NDCG@10 .005 under the published sampled-softmax recipe: the same ML-1M run with the
reference's options switched on one at a time, a few epochs each.

    .venv/bin/python scripts/fetch_movielens.py
    .venv/bin/python benchmarks/sasrec_ablation.py [--epochs 5] [--json PATH]

Every variant is ``literature_parity.SASREC_RECIPE`` (generative-recommenders' ML-1M recipe) with some of its
parametrisation taken back to what this project had before it had the options: candidates shared by the
step instead of drawn per position, our init (items N(0, d^-1/2), no input scaling) instead of the
reference's, a dot product over a layer-normed state instead of cosine / 0.05, and Adam's (0.9, 0.999) with
clipping at 1 instead of (0.9, 0.98) without. Same data, split, seed, epochs and evaluation (validation
NDCG@10 on every user, seen items excluded) for every variant; each starts from scratch in its own
checkpoint folder under ``RECMAMBA_HOME``. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import literature_parity as parity  # noqa: E402

from recmodels.data.split_data import SplitData  # noqa: E402
from recmodels.training.threads import apply_thread_budget  # noqa: E402

OURS = {
    "shared negatives": {"train": {"negatives_per_position": False}},
    "our init": {"model": {"reference_init": False}},
    "dot product": {"model": {"l2_normalize": False, "temperature": 1.0}},
    "our Adam": {"train": {"adam_beta2": 0.999, "grad_clip": 1.0}},
}
# (name, the parts of OURS applied): the old recipe, each reference option alone on it, then the whole reference.
VARIANTS = [
    ("before: all ours", list(OURS)),
    ("+ per-position negatives", ["our init", "dot product", "our Adam"]),
    ("+ reference init", ["shared negatives", "dot product", "our Adam"]),
    ("+ cosine / 0.05", ["shared negatives", "our init", "our Adam"]),
    ("reference (all four)", []),
]


def variant(parts: list[str], epochs: int) -> dict:
    """SASREC_RECIPE with the named parts of ``OURS`` put back, trained for ``epochs``."""
    recipe = {**parity.SASREC_RECIPE, "model": dict(parity.SASREC_RECIPE["model"])}
    recipe["train"] = {**parity.SASREC_RECIPE["train"], "epochs": epochs}
    for part in parts:
        for section, values in OURS[part].items():
            recipe[section] = {**recipe[section], **values}
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "sasrec_ablation.json")
    args = parser.parse_args()
    apply_thread_budget()
    data = SplitData.load(parity.prepare_export())
    rows = []
    for index, (name, parts) in enumerate(VARIANTS):
        entry = parity.train(f"sasrec_ablation_{index}", variant(parts, args.epochs), data, fresh=True)
        rows.append({"variant": name, "ours": parts, **{key: entry[key] for key in ("ndcg_10", "hr_10", "curve")}})
        rows[-1]["seconds_per_epoch"] = entry["train_seconds_per_epoch"]
        print(f"{name}: valid NDCG@10 by epoch {', '.join(f'{v:.4f}' for v in entry['curve'])}", flush=True)
    print(f"\n| variant | valid NDCG@10 by epoch (1..{args.epochs}) | test NDCG@10 | test HR@10 | s/epoch |")
    print("|---|---|---|---|---|")
    for row in rows:
        curve = " ".join(f"{value:.4f}" for value in row["curve"])
        numbers = f"{row['ndcg_10']:.4f} | {row['hr_10']:.4f} | {row['seconds_per_epoch']:.0f}"
        print(f"| {row['variant']} | {curve} | {numbers} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
