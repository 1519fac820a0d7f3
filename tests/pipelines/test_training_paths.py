"""One way to train: the command line, the Pipes worker, the length sweep (through the worker) and the
walk-forward all train through ``recmodels.training.loop.train_run``, so one run config on one split gives the same
weights, losses and validation whichever of them started it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from pipelines.data.sources import drift
from pipelines.lifelong.checkpoints import StrategyCheckpoints
from pipelines.lifelong.config import WalkForwardConfig
from pipelines.lifelong.histories import EventLog, training_split
from pipelines.lifelong.strategies import prepare
from pipelines.sweep.config import LengthSweepConfig
from pipelines.sweep.points import Point
from pipelines.training.config import ASSET_TRAIN_DEFAULTS, training_config_class
from pipelines.training.worker import TrainingJob, train
from recmodels.data.split_data import SplitData, write_split_export
from recmodels.train import main
from recmodels.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from recmodels.training.config import run_config_class
from recmodels.training.loop import TrainedRun
from recmodels.training.threads import apply_thread_budget

MODEL = "gru4rec"
# Only fields the sweep can set too (it sets d_model, n_layers and max_len of the model section).
SIZES = {"max_len": 16, "d_model": 8, "n_layers": 1}
# Every field on which the training assets' defaults (the main job's budget) differ from recmodels' is given,
# so that the command line and the sweep, which keep recmodels' defaults, train with the same config.
TRAIN = {**ASSET_TRAIN_DEFAULTS, "epochs": 1, "batch_size": 32, "device": "cpu", "eval_max_targets": None}


def drift_log() -> EventLog:
    """The walk-forward tests' tiny drifting stream as the log the walk-forward reads: (user, time) order,
    items 1-based."""
    events = drift.generate(drift.SCALES["tiny"])
    users, items, times = (events[name].to_numpy() for name in ("user_id", "video_id", "time_ms"))
    order = np.lexsort((times, users))
    dense_items = np.unique(items, return_inverse=True)[1] + 1
    return EventLog(users[order].astype(np.int32), dense_items[order].astype(np.int32), times[order].astype(np.int64))


def write_export(data: SplitData, folder: Path) -> Path:
    """``data`` as a Contract-1 export, what the command line and the worker read."""

    def per_user(values: np.ndarray) -> list[list[int]]:
        return [values[start:end].tolist() for start, end in zip(data.offsets[:-1], data.offsets[1:], strict=True)]

    return write_split_export(
        folder, per_user(data.items), per_user(data.split), per_user(data.timestamps), num_items=data.num_items
    )


def worker_trains(extras: dict) -> TrainedRun:
    """What the Pipes worker does with a job: read it, validate its run config, train."""
    job = TrainingJob.from_extras(extras)
    trained, _ = train(job, run_config_class(job.model_name).model_validate(job.run_config), on_epoch=None)
    return trained


def worker_extras(run_config: dict, export: Path, checkpoints: Path) -> dict:
    """The Pipes extras the training asset sends its worker (no MLflow needed to train)."""
    return {
        "model_name": MODEL,
        "run_config": run_config,
        "export_dir": str(export),
        "checkpoint_dir": str(checkpoints),
        "error_dir": str(checkpoints / "errors"),
        "init_state": None,
        "tracking_uri": "",
        "mlflow_run_id": "",
    }


def command_line_flags() -> list[str]:
    values = {f"--model.{k}": v for k, v in SIZES.items()} | {f"--train.{k}": v for k, v in TRAIN.items()}
    return [str(item) if item is not None else "null" for flag in values.items() for item in flag]


def same_fit(result: dict, other: dict) -> bool:
    """Equal losses, validation and test: everything of a fit result but its timings."""

    def learned(fit: dict) -> tuple:
        epochs = [(epoch["train_loss"], epoch["valid"]) for epoch in fit["epochs"]]
        return fit["best_epoch"], epochs, fit["valid"]["overall"], fit["test"]["overall"]

    return learned(result) == learned(other)


def assert_same_weights(state: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> None:
    assert state.keys() == other.keys()
    for name, value in state.items():
        assert torch.equal(value.cpu(), other[name].cpu()), name


def test_every_way_to_train_gives_the_same_model_from_the_same_run_config(tmp_path: Path):
    apply_thread_budget()  # as every training process does first: one thread count for all four
    log = drift_log()
    walk = WalkForwardConfig(models=[MODEL], strategies=["retrain"], **{MODEL: {"model": SIZES, "train": TRAIN}})
    run_config = walk.run_config(MODEL)
    export = write_export(training_split(log, log.num_items), tmp_path / "export")

    store = StrategyCheckpoints(tmp_path / "walk_forward", MODEL, "retrain")
    after_the_log = int(log.timestamps.max()) + 1
    walked = prepare("retrain", MODEL, walk, log, after_the_log, log.num_items, store, "2022-01-07")

    assert main([MODEL, "--export", str(export), "--out", str(tmp_path / "cli"), *command_line_flags()]) == 0
    printed = json.loads((tmp_path / "cli" / "result.json").read_text())
    from_command_line = load_checkpoint(tmp_path / "cli" / CHECKPOINT_FILE)["best_state"]

    launchpad = training_config_class(MODEL)(model=SIZES, train=TRAIN).run_config(MODEL)
    worker = worker_trains(worker_extras(launchpad.model_dump(), export, tmp_path / "worker"))

    sweep_config = LengthSweepConfig(models=[MODEL], max_lens=[SIZES["max_len"]], d_model=8, n_layers=1, train=TRAIN)
    point = Point(f"{MODEL}-L{SIZES['max_len']}", MODEL, sweep_config.run_config(MODEL, SIZES["max_len"]).model_dump())
    sweep = worker_trains(point.worker_job(export, tmp_path / "sweep", tmp_path / "errors", tracking_uri="", run_id=""))

    for other in (printed["config"], launchpad.model_dump(), point.run_config):
        assert other == run_config.model_dump()
    assert same_fit(worker.result.as_dict(), printed) and same_fit(sweep.result.as_dict(), printed)
    assert walked.train_seconds > 0
    for state in (from_command_line, worker.model.state_dict(), sweep.model.state_dict()):
        assert_same_weights(walked.model.state_dict(), state)


@pytest.mark.parametrize(("field", "moved_to"), [("max_len", "model.max_len"), ("retrain_epochs", "train.epochs")])
def test_an_old_flat_walk_forward_config_names_the_moved_field(field, moved_to):
    message = f"config field '{field}' has moved into each model's run section: <model>.{moved_to}, e.g. gru4rec."
    with pytest.raises(pydantic.ValidationError, match=re.escape(message + moved_to)):
        WalkForwardConfig(**{field: 3})


def test_the_walk_forward_trains_from_the_training_assets_defaults():
    """No defaults of its own: a training from scratch is the training assets' run config (the main job's
    budget), a fine_tune update the same with fine_tune_epochs full passes."""
    defaults = training_config_class("sasrec")().run_config("sasrec")
    config = WalkForwardConfig(fine_tune_epochs=2)
    assert config.run_config("sasrec") == defaults
    fine_tune = config.fine_tune_run_config("sasrec")
    assert fine_tune.train == defaults.train.model_copy(update={"epochs": 2, "max_steps_per_epoch": None})
    assert fine_tune.model == defaults.model
