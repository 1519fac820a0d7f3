"""Published-number parity on MovieLens-1M: our models, trained with the published recipes, beside the papers.

    .venv/bin/python scripts/fetch_movielens.py
    .venv/bin/python benchmarks/literature_parity.py [--models sasrec mamba4rec ...] [--max-epochs N]
        [--time-budget-minutes M]

Protocol of the published numbers: RecBole's ``ml-1m.inter`` (landed by the script above), 5-core filter,
leave-one-out (each user's last event is the test target, the one before it validation), ``max_len`` 200,
full ranking over every item, all 6,040 users. Events at one timestamp keep the references' stable order
(time, then source row): a target's history holds the events before its position, even those sharing its
timestamp, where our global time split reads only strictly earlier ones (ARCHITECTURE.md, Contract 1).
The data layer runs through the real Dagster data assets (dataset ``ml-1m``, under ``RECMAMBA_HOME``); each
model then trains through ``recmodels.training.loop.fit`` with its recipe below, validated on every user after
each epoch.

A recipe is never shortened silently: ``--max-epochs`` and ``--time-budget-minutes`` stop a model early,
and its row then says "shortened", with the learning curve so far and the epochs the recipe still asks for.
A shortened run's test numbers are those of its best epoch so far, not the recipe's result.
Intervals are 95% user-bootstrap intervals (``recmodels.evaluation.stats.user_bootstrap``) over the test targets.
Results go to ``benchmarks/results/literature_parity/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.data.assets import DATA_ASSETS  # noqa: E402
from pipelines.data.export import export_dir_for  # noqa: E402
from pipelines.data.resources import Warehouse  # noqa: E402
from recmodels.data.split_data import SplitData  # noqa: E402
from recmodels.evaluation.stats import per_target_metric, user_bootstrap  # noqa: E402
from recmodels.models import build_model  # noqa: E402
from recmodels.training.checkpoint import CHECKPOINT_FILE, load_checkpoint  # noqa: E402
from recmodels.training.config import run_config_class  # noqa: E402
from recmodels.training.loop import EpochReport, FitResult, fit, seed_everything  # noqa: E402
from recmodels.training.threads import apply_thread_budget  # noqa: E402
from recmodels.training.windows import WindowIndex  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "literature_parity"
DATASET = "ml-1m"
MAX_LEN = 200
DATA_CONFIG = {
    "raw_events": {"config": {"source": "recbole", "dataset": DATASET}},
    "events": {"config": {"min_events_per_user": 5, "min_item_occurrences": 5, "k_core": True}},
    "splits": {"config": {"mode": "leave_one_out"}},
}

# generative-recommenders configs/ml-1m/sasrec-sampled-softmax-n128-final.gin (the README's SASRec row):
# 101 epochs, no early stopping, 128 sequences per step, 128 uniform ("local") negatives.
SASREC_RECIPE = {
    "source": "meta-recsys/generative-recommenders configs/ml-1m/sasrec-sampled-softmax-n128-final.gin",
    "model": {"d_model": 50, "n_layers": 2, "n_heads": 1, "ffn_multiplier": 1, "dropout": 0.2},
    "train": {"loss": "sampled_softmax", "negatives": "uniform", "num_negatives": 128, "epochs": 101,
              "patience": 0, "lr": 1e-3, "weight_decay": 0.0},
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "their logits are cosine similarities / temperature 0.05 (L2-normed embeddings), ours dot "
    "products; they train on each user's last 200 events, we on all of a history in 200-event windows",
}  # fmt: skip

# chengkai-liu/Mamba4Rec config.yaml (RecBole, CE loss): 300 epochs at most, early stopping after 10 epochs
# without a better validation NDCG@10, 2048 (prefix, next item) samples per step.
MAMBA4REC_RECIPE = {
    "source": "chengkai-liu/Mamba4Rec config.yaml (RecBole)",
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.2, "d_state": 32, "d_conv": 4, "expand": 2},
    "train": {"loss": "ce", "epochs": 300, "patience": 10, "lr": 1e-3, "weight_decay": 0.0},
    "batch": {"size": 2048, "unit": "targets"},
    "not_matched": "RecBole trains on every prefix (one target each, Adam); we on 200-event windows (every "
    "position a target, AdamW without decay), with windows per step chosen to give ~2048 targets per step",
}  # fmt: skip

# GRU4Rec's published row (Mamba4Rec's table, RecBole, CE) uses the same RecBole training settings.
GRU4REC_RECIPE = {
    **MAMBA4REC_RECIPE,
    "source": "Mamba4Rec paper's RecBole baseline settings (config.yaml's training section)",
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.2},
}
# No published ML-1M number: run with the Mamba4Rec recipe, each with its own architecture fields.
RECMAMBA_RECIPE = {**MAMBA4REC_RECIPE, "source": "no published number: Mamba4Rec's recipe"}
LINREC_RECIPE = {
    **MAMBA4REC_RECIPE,
    "source": "no published ML-1M number here: Mamba4Rec's recipe",
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.2},
}
# yueqirex/LRURec config.py (set_template, ml-1m) and trainer/: AdamW lr 1e-3, weight decay 1e-2 (none on biases
# and norms), 128 sequences of at most 200 events per step, full-softmax CE at every position, gradients clipped
# at norm 5, validation every 500 steps, stopping after 10 validations without a better Recall@10, 500 epochs at most.
LRUREC_RECIPE = {
    "source": "yueqirex/LRURec config.py (set_template for ml-1m) and trainer/",
    "model": {"d_model": 64, "n_layers": 2, "dropout": 0.2, "expand": 2, "ffn_multiplier": 4, "r_min": 0.8,
              "r_max": 0.99},
    "train": {"loss": "ce", "epochs": 500, "patience": 10, "lr": 1e-3, "weight_decay": 1e-2, "grad_clip": 5.0},
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "they validate every 500 steps (several of our epochs on ML-1M) and stop after 10 validations "
    "without a better Recall@10, we after 10 epochs without a better NDCG@10; their AdamW eps is 1e-9, ours 1e-8; "
    "their scores add a learned per-item bias and rank with the user's seen items excluded; a history shorter than "
    "400 events trains on its last 200 there, on every 200-event window here",
}  # fmt: skip
RECIPES = {
    "sasrec": SASREC_RECIPE,
    "gru4rec": GRU4REC_RECIPE,
    "mamba4rec": MAMBA4REC_RECIPE,
    "recmamba": RECMAMBA_RECIPE,
    "linrec": LINREC_RECIPE,
    "lrurec": LRUREC_RECIPE,
}

# Published test NDCG@10 / HR@10 on ML-1M, full ranking, leave-one-out.
PUBLISHED = {
    "sasrec": {"ndcg_10": 0.1603, "hr_10": 0.2853, "where": "generative-recommenders README (sampled softmax)"},
    "hstu": {"ndcg_10": 0.1720, "hr_10": 0.3097, "where": "generative-recommenders README"},
    "mamba4rec": {"ndcg_10": 0.1822, "hr_10": 0.3121, "where": "Mamba4Rec paper, ML-1M table (RecBole, CE)"},
    "gru4rec": {"ndcg_10": 0.1648, "hr_10": 0.2811, "where": "Mamba4Rec paper, ML-1M table (RecBole, CE)"},
    "lrurec": {"ndcg_10": 0.1930, "hr_10": 0.3264, "where": "LRURec paper (Yue et al., WSDM 2024), ML-1M table"},
}
NOT_IMPLEMENTED = ["hstu"]


class BudgetSpent(Exception):
    """Raised between epochs when the next one would not finish inside the time budget."""


def prepare_export() -> Path:
    """ML-1M through the real data assets (ingest, 5-core, leave-one-out, export); the export's folder."""
    result = dg.materialize(DATA_ASSETS, resources={"warehouse": Warehouse()}, run_config={"ops": DATA_CONFIG})
    if not result.success:
        raise SystemExit("the data assets failed; see the log above")
    return export_dir_for(DATASET)


def windows_per_step(recipe: dict, data: SplitData) -> int:
    """The recipe's batch in our unit (200-event windows): as given for sequences, else ~the same targets."""
    batch = recipe["batch"]
    if batch["unit"] == "sequences":
        return batch["size"]
    windows = WindowIndex.of(data, MAX_LEN)
    return max(1, round(batch["size"] / (windows.num_targets / len(windows))))


def run_config(name: str, recipe: dict, data: SplitData, epochs: int):
    """The validated run config (model and train sections) of ``recipe`` for ``name``."""
    train = {**recipe["train"], "epochs": epochs, "batch_size": windows_per_step(recipe, data)}
    train |= {"eval_max_targets": None, "device": "auto", "seed": 42}
    return run_config_class(name)(model={**recipe["model"], "max_len": MAX_LEN}, train=train)


def train(name: str, recipe: dict, data: SplitData, max_epochs: int | None, budget_s: float | None) -> dict:
    """Train ``name`` by its recipe, stopping between epochs at the budget or ``max_epochs``; the best
    epoch's test ranks, with intervals, and the learning curve."""
    epochs = min(recipe["train"]["epochs"], max_epochs or recipe["train"]["epochs"])
    config = run_config(name, recipe, data, epochs)
    began = time.perf_counter()

    def on_epoch(report: EpochReport) -> None:
        valid = report.valid["ndcg_10"]
        print(f"  {name} epoch {report.epoch}: valid NDCG@10 {valid:.4f}, {report.epoch_seconds:.0f} s", flush=True)
        elapsed = time.perf_counter() - began
        if budget_s is not None and elapsed * (report.epoch + 1) / report.epoch > budget_s:
            raise BudgetSpent

    with tempfile.TemporaryDirectory(prefix=f"parity-{name}-") as checkpoints:
        seed_everything(config.train.seed)
        model = build_model(name, data.num_items, **config.model.model_dump())
        stopped_by_budget = False
        try:
            result = fit(model, data, config.train, on_epoch=on_epoch, checkpoint_dir=checkpoints)
        except BudgetSpent:
            stopped_by_budget = True
            # Resume from the last epoch's checkpoint with no epochs left: restores the best epoch, then tests.
            resumed = config.train.model_copy(update={"epochs": epochs_done(checkpoints)})
            model = build_model(name, data.num_items, **config.model.model_dump())
            result = fit(model, data, resumed, checkpoint_dir=checkpoints)
    return summarize(name, recipe, config, result, stopped_by_budget, time.perf_counter() - began)


def epochs_done(checkpoint_dir: str) -> int:
    """Epochs the checkpoint in ``checkpoint_dir`` has trained."""
    saved = load_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE)
    return int(saved["progress"]["next_epoch"]) - 1


def summarize(name: str, recipe: dict, config, result: FitResult, by_budget: bool, wall_s: float) -> dict:
    """One model's row: test metrics with intervals at the best epoch, the curve, and what is left to run."""
    ranks = result.test.ranks
    intervals = {
        metric: dataclasses.asdict(user_bootstrap(per_target_metric(ranks.rank, metric), ranks.user_id))
        for metric in ("ndcg_10", "hr_10")
    }
    epochs_run = len(result.epochs)
    recipe_epochs = recipe["train"]["epochs"]
    complete = result.stopped_early or epochs_run >= recipe_epochs
    seconds = [e.epoch_seconds for e in result.epochs]
    return {
        "model": name,
        "recipe": recipe,
        "run_config": config.model_dump(),
        "status": "complete" if complete else ("shortened: time budget" if by_budget else "shortened: max-epochs"),
        "epochs_run": epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds_per_epoch": float(np.mean(seconds)) if seconds else math.nan,
        "wall_seconds": wall_s,
        "curve": [{"epoch": e.epoch, "train_loss": e.train_loss, "valid_ndcg_10": e.valid["ndcg_10"],
                   "valid_hr_10": e.valid["hr_10"], "epoch_seconds": e.epoch_seconds} for e in result.epochs],
        "test": intervals,
        "test_num_targets": result.test.num_targets,
        "epochs_left": epochs_left(recipe, result, complete),
        "published": PUBLISHED.get(name),
    }  # fmt: skip


def epochs_left(recipe: dict, result: FitResult, complete: bool) -> dict:
    """How many more epochs the recipe asks for: exact for a fixed count; for early stopping, at least the
    patience after the best epoch so far (more if the curve still rises) and at most the recipe's maximum."""
    run, total, patience = len(result.epochs), recipe["train"]["epochs"], recipe["train"]["patience"]
    if complete:
        return {"at_least": 0, "at_most": 0}
    if patience == 0:
        return {"at_least": total - run, "at_most": total - run}
    waited = run - result.best_epoch
    return {"at_least": min(patience - waited, total - run), "at_most": total - run}


def gap(ours: float, published: float) -> str:
    return f"{(ours - published) / published:+.1%}"


def table(rows: list[dict]) -> str:
    """The parity table: ours with intervals beside the published numbers, and the run's status."""
    lines = [
        "| model | recipe | epochs run (best) | status | s/epoch | our NDCG@10 [95%] | published | gap "
        "| our HR@10 [95%] | published | gap | epochs left |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        n, h, pub = row["test"]["ndcg_10"], row["test"]["hr_10"], row["published"]
        left = row["epochs_left"]
        left_text = (
            str(left["at_least"]) if left["at_least"] == left["at_most"] else (f"{left['at_least']}..{left['at_most']}")
        )
        pub_n = f"{pub['ndcg_10']:.4f}" if pub else "none"
        pub_h = f"{pub['hr_10']:.4f}" if pub else "none"
        lines.append(
            f"| {row['model']} | {row['recipe']['source'][:48]} | {row['epochs_run']} ({row['best_epoch']}) "
            f"| {row['status']} | {row['train_seconds_per_epoch']:.0f} "
            f"| {n['estimate']:.4f} [{n['low']:.4f}, {n['high']:.4f}] | {pub_n} "
            f"| {gap(n['estimate'], pub['ndcg_10']) if pub else '-'} "
            f"| {h['estimate']:.4f} [{h['low']:.4f}, {h['high']:.4f}] | {pub_h} "
            f"| {gap(h['estimate'], pub['hr_10']) if pub else '-'} | {left_text} |"
        )
    for name in NOT_IMPLEMENTED:
        pub = PUBLISHED[name]
        lines.append(
            f"| {name} | not implemented | - | - | - | - | {pub['ndcg_10']:.4f} | - | - | {pub['hr_10']:.4f} | - | - |"
        )
    return "\n".join(lines)


def curves(rows: list[dict]) -> str:
    return "\n".join(
        f"{row['model']}: valid NDCG@10 by epoch "
        + ", ".join(f"{point['valid_ndcg_10']:.4f}" for point in row["curve"])
        for row in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--max-epochs", type=int, default=None, help="cap every recipe's epochs (marked shortened)")
    parser.add_argument(
        "--time-budget-minutes", type=float, default=None, help="per model: stop between epochs at this budget"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "parity.json")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    apply_thread_budget()
    data = SplitData.load(prepare_export())
    print(f"ML-1M export: {data.num_users} users, {data.num_items} items, {len(data.items)} events")
    budget_s = None if args.time_budget_minutes is None else args.time_budget_minutes * 60
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        rows.append(train(name, RECIPES[name], data, args.max_epochs, budget_s))
        args.out.write_text(json.dumps({"protocol": DATA_CONFIG, "max_len": MAX_LEN, "rows": rows}, indent=2))
    print(table(rows))
    print(curves(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
