"""Published-number parity on MovieLens-1M: our models, trained with the published recipes, beside the papers.

    .venv/bin/python scripts/fetch_movielens.py
    .venv/bin/python benchmarks/literature_parity.py [--models sasrec hstu mamba4rec ...] [--max-epochs N]
        [--time-budget-minutes M] [--fresh]

Protocol of the published numbers: RecBole's ``ml-1m.inter`` (landed by the script above), 5-core filter,
leave-one-out (each user's last event is the test target, the one before it validation), ``max_len`` 200,
full ranking over every item, all 6,040 users; each recipe names its reference's ranking rule
(``evaluation``), and every reference here removes the user's already-seen items (``train.exclude_seen``).
Events at one timestamp keep the references' stable order (time, then source row): a target's history holds
the events before its position, even those sharing its timestamp, where our global time split reads only
strictly earlier ones (ARCHITECTURE.md, Contract 1). The data layer runs through the real Dagster data assets
(dataset ``ml-1m``, under ``RECMAMBA_HOME``); each recipe then trains through ``recmodels.training.loop``'s
``train_run`` with its architecture and settings below, validated on every user after each epoch.

A recipe trains to convergence across invocations: its checkpoint lives in
``<RECMAMBA_HOME>/checkpoints/literature_parity/<recipe>/``, so a run killed, or stopped between epochs by
``--max-epochs`` or ``--time-budget-minutes``, continues where it left off when the script runs again (in
this session or another); ``--fresh`` starts a recipe over. A recipe is never shortened silently: a stopped
run's entry says so, with its learning curve, the epochs the recipe still asks for, and test numbers of its
best epoch so far (not the recipe's result). ``converged`` is true only once the recipe's own stopping rule
has fired: its patience, or for a recipe without early stopping its full epoch count.
Intervals are 95% user-bootstrap intervals (``recmodels.evaluation.stats.user_bootstrap``) over the test targets.
Results go to ``benchmarks/results/literature_parity/summary.json``, one entry per recipe, merged with the
entries already there, so that running one recipe keeps the others'.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.data.assets import DATA_ASSETS  # noqa: E402
from pipelines.data.export import export_dir_for  # noqa: E402
from pipelines.data.resources import Warehouse  # noqa: E402
from pipelines.paths import ProjectPaths, inside  # noqa: E402
from recmodels.data.split_data import SplitData  # noqa: E402
from recmodels.evaluation.stats import per_target_metric, user_bootstrap  # noqa: E402
from recmodels.training.checkpoint import CHECKPOINT_FILE, load_checkpoint  # noqa: E402
from recmodels.training.config import run_config_class  # noqa: E402
from recmodels.training.loop import EpochReport, FitResult, train_run  # noqa: E402
from recmodels.training.threads import apply_thread_budget  # noqa: E402
from recmodels.training.windows import WindowIndex  # noqa: E402

SUMMARY = ROOT / "benchmarks" / "results" / "literature_parity" / "summary.json"
RUN_CONFIG_FILE = "run_config.json"  # beside the checkpoint: the run config it belongs to
DATASET = "ml-1m"
MAX_LEN = 200
DATA_CONFIG = {
    "raw_events": {"config": {"source": "recbole", "dataset": DATASET}},
    "events": {"config": {"min_events_per_user": 5, "min_item_occurrences": 5, "k_core": True}},
    "splits": {"config": {"mode": "leave_one_out"}},
}

# Ranking rules of the references (all full ranking over the catalogue, leave-one-out).
GR_EVALUATION = "leave-one-out, full ranking, seen items excluded (generative-recommenders' eval filters seen ids)"
RECBOLE_EVALUATION = "leave-one-out, full ranking, seen items excluded (RecBole's full sort masks history items)"

# generative-recommenders configs/ml-1m/sasrec-sampled-softmax-n128-final.gin (the README's SASRec row):
# 101 epochs, no early stopping, 128 sequences per step, 128 uniform negatives for every position, cosine
# logits over temperature 0.05, Adam with beta2 0.98 and no clipping.
SASREC_RECIPE = {
    "architecture": "sasrec",
    "source": "meta-recsys/generative-recommenders configs/ml-1m/sasrec-sampled-softmax-n128-final.gin",
    "evaluation": GR_EVALUATION,
    "model": {"d_model": 50, "n_layers": 2, "n_heads": 1, "ffn_multiplier": 1, "dropout": 0.2,
              "reference_init": True, "l2_normalize": True, "temperature": 0.05},
    "train": {"loss": "sampled_softmax", "negatives": "uniform", "num_negatives": 128,
              "negatives_per_position": True, "epochs": 101, "patience": 0, "lr": 1e-3, "weight_decay": 0.0,
              "adam_beta2": 0.98, "grad_clip": None, "exclude_seen": True},
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "our block is pre-norm with learned LayerNorm weights, GELU and no attention dropout (theirs: "
    "LN(x) as the query and its residual, a LayerNorm after attention, a ReLU FFN, attention dropout 0.2, no final "
    "LayerNorm before the L2 norm); we train on every 200-event window of a history, they on each user's last 200 "
    "events; our positions count from a window's first event",
}  # fmt: skip

# "SASRec+" (Klenitskiy & Vasilev, RecSys 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than
# SASRec?"), antklen/sasrec-bert4rec-recsys23 src/configs/SASRec.yaml with README's ML-1M override
# (dataset.max_length=200): full cross-entropy, Adam lr 1e-3, 128 sequences per step, at most 100 epochs,
# early stopping after 10 epochs without a better validation NDCG@10, filter_seen True.
SASREC_CE_RECIPE = {
    "architecture": "sasrec",
    "source": "antklen/sasrec-bert4rec-recsys23 src/configs/SASRec.yaml (SASRec+, ML-1M: max_length 200)",
    "evaluation": "leave-one-out, full ranking, seen items excluded (filter_seen: True in SASRec.yaml)",
    "model": {"d_model": 64, "n_layers": 2, "n_heads": 1, "ffn_multiplier": 1, "dropout": 0.1},
    "train": {"loss": "ce", "epochs": 100, "patience": 10, "lr": 1e-3, "weight_decay": 0.0, "adam_beta2": 0.999,
              "grad_clip": None, "exclude_seen": True},
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "their block is pmixer's SASRec (LN(x) as the query and its residual, ReLU FFN, attention "
    "dropout 0.1, final LayerNorm), all weights N(0, 0.02) and inputs times sqrt(d_model), ours pre-norm with GELU "
    "and our default init; they train on each user's last 201 events, we on every 200-event window; their data is "
    "BERT4Rec's preprocessed ml-1m.txt, ours RecBole's ml-1m.inter 5-core; no published ML-1M number is recorded "
    "here (none verified)",
}  # fmt: skip

# generative-recommenders configs/ml-1m/hstu-sampled-softmax-n128-final.gin (the README's HSTU row): trained
# like their SASRec row.
HSTU_RECIPE = {
    "architecture": "hstu",
    "source": "meta-recsys/generative-recommenders configs/ml-1m/hstu-sampled-softmax-n128-final.gin",
    "evaluation": GR_EVALUATION,
    "model": {"d_model": 50, "n_layers": 2, "n_heads": 1, "dropout": 0.2, "reference_init": True,
              "l2_normalize": True, "temperature": 0.05},
    "train": dict(SASREC_RECIPE["train"]),
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "a query's time is its own event's here, the next event's (the request's) there; we train on "
    "every 200-event window of a history, they on each user's last 200 events; our positions count from a "
    "window's first event",
}  # fmt: skip

# chengkai-liu/Mamba4Rec config.yaml (RecBole, CE loss): 300 epochs at most, early stopping after 10 epochs
# without a better validation NDCG@10, 2048 (prefix, next item) samples per step, full-sort evaluation.
MAMBA4REC_RECIPE = {
    "architecture": "mamba4rec",
    "source": "chengkai-liu/Mamba4Rec config.yaml (RecBole)",
    "evaluation": RECBOLE_EVALUATION,
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.2, "d_state": 32, "d_conv": 4, "expand": 2},
    "train": {"loss": "ce", "epochs": 300, "patience": 10, "lr": 1e-3, "weight_decay": 0.0, "exclude_seen": True},
    "batch": {"size": 2048, "unit": "targets"},
    "not_matched": "RecBole trains on every prefix (one target each, Adam); we on 200-event windows (every "
    "position a target, AdamW without decay), with windows per step chosen to give ~2048 targets per step",
}  # fmt: skip

# GRU4Rec's published row (Mamba4Rec's table, RecBole, CE) uses the same RecBole training settings.
GRU4REC_RECIPE = {
    **MAMBA4REC_RECIPE,
    "architecture": "gru4rec",
    "source": "Mamba4Rec paper's RecBole GRU4Rec baseline (config.yaml's training section)",
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.1},
    "not_matched": MAMBA4REC_RECIPE["not_matched"] + "; the baseline's dropout is not in Mamba4Rec's config.yaml "
    "(0.1 is our reading)",
}
# No published ML-1M number: run with the Mamba4Rec recipe, each with its own architecture fields.
RECMAMBA_RECIPE = {**MAMBA4REC_RECIPE, "architecture": "recmamba", "source": "no published number: Mamba4Rec's recipe"}
LINREC_RECIPE = {
    **MAMBA4REC_RECIPE,
    "architecture": "linrec",
    "source": "no published ML-1M number here: Mamba4Rec's recipe",
    "model": {"d_model": 64, "n_layers": 1, "dropout": 0.2},
}
# yueqirex/LRURec config.py (set_template, ml-1m) and trainer/: AdamW lr 1e-3, weight decay 1e-2 (none on biases
# and norms), 128 sequences of at most 200 events per step, full-softmax CE at every position, gradients clipped
# at norm 5, validation every 500 steps, stopping after 10 validations without a better Recall@10, 500 epochs at most.
LRUREC_RECIPE = {
    "architecture": "lrurec",
    "source": "yueqirex/LRURec config.py (set_template for ml-1m) and trainer/",
    "evaluation": "leave-one-out, full ranking, seen items excluded (LRURec's trainer)",
    "model": {"d_model": 64, "n_layers": 2, "dropout": 0.2, "expand": 2, "ffn_multiplier": 4, "r_min": 0.8,
              "r_max": 0.99},
    "train": {"loss": "ce", "epochs": 500, "patience": 10, "lr": 1e-3, "weight_decay": 1e-2, "grad_clip": 5.0,
              "exclude_seen": True},
    "batch": {"size": 128, "unit": "sequences"},
    "not_matched": "they validate every 500 steps (several of our epochs on ML-1M) and stop after 10 validations "
    "without a better Recall@10, we after 10 epochs without a better NDCG@10; their AdamW eps is 1e-9, ours 1e-8; "
    "their scores add a learned per-item bias; a history shorter than 400 events trains on its last 200 there, "
    "on every 200-event window here",
}  # fmt: skip
RECIPES = {
    "sasrec": SASREC_RECIPE,
    "sasrec_ce": SASREC_CE_RECIPE,
    "hstu": HSTU_RECIPE,
    "gru4rec": GRU4REC_RECIPE,
    "mamba4rec": MAMBA4REC_RECIPE,
    "recmamba": RECMAMBA_RECIPE,
    "linrec": LINREC_RECIPE,
    "lrurec": LRUREC_RECIPE,
}

# Published test NDCG@10 / HR@10 on ML-1M, full ranking, leave-one-out, by recipe name.
PUBLISHED = {
    "sasrec": {"ndcg_10": 0.1603, "hr_10": 0.2853, "where": "generative-recommenders README (sampled softmax)"},
    "hstu": {"ndcg_10": 0.1720, "hr_10": 0.3097, "where": "generative-recommenders README"},
    "mamba4rec": {"ndcg_10": 0.1822, "hr_10": 0.3121, "where": "Mamba4Rec paper, ML-1M table (RecBole, CE)"},
    "gru4rec": {"ndcg_10": 0.1648, "hr_10": 0.2811, "where": "Mamba4Rec paper, ML-1M table (RecBole, CE)"},
    "lrurec": {"ndcg_10": 0.1930, "hr_10": 0.3264, "where": "LRURec paper (Yue et al., WSDM 2024), ML-1M table"},
}


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


def run_config(recipe: dict, data: SplitData, epochs: int):
    """The validated run config (model and train sections) of ``recipe`` for its architecture."""
    train = {**recipe["train"], "epochs": epochs, "batch_size": windows_per_step(recipe, data)}
    # Every epoch a full pass, every validation over all users: the published protocols, whatever the defaults.
    train |= {"eval_max_targets": None, "max_steps_per_epoch": None, "device": "auto", "seed": 42}
    return run_config_class(recipe["architecture"])(model={**recipe["model"], "max_len": MAX_LEN}, train=train)


def checkpoint_dir(name: str) -> Path:
    """Where recipe ``name`` keeps its checkpoint between invocations: under ``RECMAMBA_HOME``, so that with
    it set the hours of training live outside the work tree."""
    return ProjectPaths.from_env().checkpoints / "literature_parity" / name


def forget(name: str) -> None:
    """Delete recipe ``name``'s checkpoint folder (``--fresh``): its next run starts from epoch 1."""
    folder = checkpoint_dir(name)
    if folder.exists():
        shutil.rmtree(inside(ProjectPaths.from_env().home, folder))


def claim(folder: Path, config) -> None:
    """Record ``config`` beside the checkpoint in ``folder``; refuse to resume a checkpoint of another run
    config (its epoch count aside, which ``--max-epochs`` changes), so a changed recipe never continues
    weights trained by the old one."""
    wanted = config.model_dump()
    wanted["train"].pop("epochs")
    path = folder / RUN_CONFIG_FILE
    if (folder / CHECKPOINT_FILE).exists() and path.exists():
        saved = json.loads(path.read_text())
        # Read through today's run config, so a field added since the checkpoint counts at its default.
        saved = type(config).model_validate(saved).model_dump()
        saved["train"].pop("epochs")
        if saved != wanted:
            raise SystemExit(
                f"{folder} holds a checkpoint of another run config ({path}: {saved}, this recipe: {wanted}); "
                "rerun with --fresh to start this recipe over"
            )
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2))


def epochs_done(folder: Path) -> int:
    """Epochs the checkpoint in ``folder`` has trained (0 without one)."""
    saved = load_checkpoint(folder / CHECKPOINT_FILE)
    return 0 if saved is None else int(saved["progress"]["next_epoch"]) - 1


def train(
    name: str,
    recipe: dict,
    data: SplitData,
    max_epochs: int | None = None,
    budget_s: float | None = None,
    fresh: bool = False,
) -> dict:
    """Train recipe ``name`` from its checkpoint (if any) on, stopping between epochs at the budget or
    ``max_epochs``; its summary entry: the best epoch's test numbers with intervals, and the learning curve."""
    epochs = recipe["train"]["epochs"] if max_epochs is None else min(recipe["train"]["epochs"], max_epochs)
    config = run_config(recipe, data, epochs)
    folder = checkpoint_dir(name)
    if fresh:
        forget(name)
    claim(folder, config)
    done_before = epochs_done(folder)
    began = time.perf_counter()
    trained_here = 0

    def on_epoch(report: EpochReport) -> None:
        nonlocal trained_here
        trained_here += 1
        valid = report.valid["ndcg_10"]
        print(f"  {name} epoch {report.epoch}: valid NDCG@10 {valid:.4f}, {report.epoch_seconds:.0f} s", flush=True)
        elapsed = time.perf_counter() - began
        more = report.epoch < config.train.epochs
        if budget_s is not None and more and elapsed * (trained_here + 1) / trained_here > budget_s:
            raise BudgetSpent  # after fit saved this epoch's checkpoint: the next invocation resumes there

    architecture = recipe["architecture"]
    try:
        result = train_run(architecture, config, data, on_epoch=on_epoch, checkpoint_dir=folder).result
        by_budget = False
    except BudgetSpent:
        by_budget = True
        # No epochs left past the checkpoint: fit restores the best epoch and tests it.
        tested = config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs_done(folder)})})
        result = train_run(architecture, tested, data, checkpoint_dir=folder).result
    entry = summarize(name, recipe, config, result, by_budget)
    entry |= {"epochs_this_run": len(result.epochs) - done_before, "wall_seconds": time.perf_counter() - began}
    return entry


def stopping(recipe: dict, result: FitResult, by_budget: bool) -> tuple[bool, str]:
    """(converged, status): converged only when the recipe's own rule stopped it (patience, or all epochs of a
    recipe without early stopping)."""
    run, total, patience = len(result.epochs), recipe["train"]["epochs"], recipe["train"]["patience"]
    if result.stopped_early:
        return True, f"converged: {patience} epochs without a better valid NDCG@10 after epoch {result.best_epoch}"
    if run >= total:
        if patience == 0:
            return True, f"converged: the recipe's {total} epochs run"
        return False, f"complete: the recipe's {total} epochs run before its patience ({patience}) fired"
    why = "the time budget" if by_budget else "--max-epochs"
    return False, f"stopped by {why} after {run} of {total} epochs: run again to resume"


def summarize(name: str, recipe: dict, config, result: FitResult, by_budget: bool) -> dict:
    """Recipe ``name``'s summary entry: test metrics with intervals at the best epoch, the curve, published
    numbers and the relative gap to them, and whether the recipe's stopping rule has fired."""
    ranks = result.test.ranks
    test = {
        metric: user_bootstrap(per_target_metric(ranks.rank, metric), ranks.user_id) for metric in ("ndcg_10", "hr_10")
    }
    published = PUBLISHED.get(name, {})
    converged, status = stopping(recipe, result, by_budget)
    seconds = [report.epoch_seconds for report in result.epochs]
    entry = {"architecture": recipe["architecture"]}
    for metric, interval in test.items():
        ours, theirs = interval.estimate, published.get(metric)
        entry |= {
            metric: ours,
            f"{metric}_ci": [interval.low, interval.high],
            f"published_{metric}": theirs,
            f"gap_{metric}": None if theirs is None else (ours - theirs) / theirs,
        }
    return entry | {
        "published_where": published.get("where"),
        "epochs": len(result.epochs),
        "best_epoch": result.best_epoch,
        "converged": converged,
        "status": status,
        "epochs_left": epochs_left(recipe, result, converged),
        "exclude_seen": config.train.exclude_seen,
        "train_seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "curve": [report.valid["ndcg_10"] for report in result.epochs],
        "test_num_targets": result.test.num_targets,
        "source": recipe["source"],
        "evaluation": recipe["evaluation"],
        "not_matched": recipe["not_matched"],
        "run_config": config.model_dump(),
        "epoch_reports": [dataclasses.asdict(report) for report in result.epochs],
    }


def epochs_left(recipe: dict, result: FitResult, converged: bool) -> dict:
    """How many more epochs the recipe asks for: exact for a fixed count; for early stopping, at least the
    patience after the best epoch so far (more if the curve still rises) and at most the recipe's maximum."""
    run, total, patience = len(result.epochs), recipe["train"]["epochs"], recipe["train"]["patience"]
    if converged or run >= total:
        return {"at_least": 0, "at_most": 0}
    if patience == 0:
        return {"at_least": total - run, "at_most": total - run}
    waited = run - result.best_epoch
    return {"at_least": min(patience - waited, total - run), "at_most": total - run}


def write_summary(path: Path, entries: dict[str, dict]) -> dict:
    """Merge ``entries`` (recipe name -> entry) into the summary at ``path``, keeping the other recipes'
    entries, and replace the file atomically; the merged summary."""
    models = json.loads(path.read_text())["models"] if path.exists() else {}
    summary = {"protocol": DATA_CONFIG, "max_len": MAX_LEN, "models": {**models, **entries}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary, indent=2))
    os.replace(partial, path)
    return summary


def table(models: dict[str, dict]) -> str:
    """The parity table: ours with intervals beside the published numbers, and each run's status."""
    lines = [
        "| recipe | architecture | epochs (best) | converged | s/epoch | our NDCG@10 [95%] | published | gap "
        "| our HR@10 [95%] | published | gap | epochs left | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in models.items():
        left = entry["epochs_left"]
        left_text = (
            str(left["at_least"]) if left["at_least"] == left["at_most"] else f"{left['at_least']}..{left['at_most']}"
        )
        seconds = entry["train_seconds_per_epoch"]
        cells = [name, entry["architecture"], f"{entry['epochs']} ({entry['best_epoch']})", str(entry["converged"])]
        cells.append("-" if seconds is None else f"{seconds:.0f}")
        for metric in ("ndcg_10", "hr_10"):
            low, high = entry[f"{metric}_ci"]
            published, gap = entry[f"published_{metric}"], entry[f"gap_{metric}"]
            cells.append(f"{entry[metric]:.4f} [{low:.4f}, {high:.4f}]")
            cells += ["none", "-"] if published is None else [f"{published:.4f}", f"{gap:+.1%}"]
        lines.append("| " + " | ".join([*cells, left_text, entry["status"]]) + " |")
    return "\n".join(lines)


def curves(models: dict[str, dict]) -> str:
    return "\n".join(
        f"{name}: valid NDCG@10 by epoch " + ", ".join(f"{value:.4f}" for value in entry["curve"])
        for name, entry in models.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES), help="recipe names")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="stop each recipe after this many epochs in all (resumable)"
    )
    parser.add_argument(
        "--time-budget-minutes", type=float, default=None, help="per recipe: stop between epochs at this budget"
    )
    parser.add_argument("--fresh", action="store_true", help="delete each chosen recipe's checkpoint: start over")
    parser.add_argument("--out", type=Path, default=SUMMARY)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    apply_thread_budget()
    data = SplitData.load(prepare_export())
    print(f"ML-1M export: {data.num_users} users, {data.num_items} items, {len(data.items)} events")
    budget_s = None if args.time_budget_minutes is None else args.time_budget_minutes * 60
    for name in args.models:
        print(f"{name}: checkpoints in {checkpoint_dir(name)}", flush=True)
        entry = train(name, RECIPES[name], data, args.max_epochs, budget_s, args.fresh)
        summary = write_summary(args.out, {name: entry})
    print(table(summary["models"]))
    print(curves(summary["models"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
