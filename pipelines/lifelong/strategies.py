"""How each update strategy gets the model it evaluates on a window, and keeps it for the next one.

- ``frozen``: trained once from scratch on everything before the first window it meets, never updated.
- ``fine_tune``: the previous window's weights, trained on the new window's events (each active user's
  new events plus ``fine_tune_context`` events before them, replayed) after the window is evaluated.
- ``retrain``: trained from scratch on everything before the window, at every window.

Every model remembers ``trained_until_ms``, the time of the latest event it was ever trained on, so the
leakage check can prove that no target of a window was seen in training. Item ids are stable, so a
model trained on a smaller catalogue grows new, untrained item rows and keeps every learned one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.lifelong.checkpoints import StrategyCheckpoints as StateStore
from pipelines.lifelong.config import WalkForwardConfig
from pipelines.lifelong.histories import EventLog, recent_events, training_split
from pipelines.registry import ITEM_TABLE
from recmodels import SequentialRecommender, build_model
from recmodels.config import TrainConfig
from recmodels.train import fit

INITIAL = "initial"  # the frozen strategy's one state


@dataclass
class Prepared:
    """A model as it stands before a window, and what preparing it cost."""

    model: SequentialRecommender
    trained_until_ms: int
    train_seconds: float


def prepare(
    strategy: str,
    name: str,
    config: WalkForwardConfig,
    log: EventLog,
    start_ms: int,
    num_items: int,
    store: StateStore,
    key: str,
) -> Prepared:
    """The model ``strategy`` evaluates on the window starting at ``start_ms``."""
    before = log.where(log.timestamps < start_ms)
    if strategy == "retrain":
        return _from_scratch(name, config, before, num_items)
    if strategy == "frozen":
        saved = store.load(INITIAL)
        if saved is not None:
            return Prepared(_restore(name, config, saved, num_items), int(saved["trained_until_ms"]), 0.0)
        prepared = _from_scratch(name, config, before, num_items)
        store.save(INITIAL, prepared.model, prepared.trained_until_ms)
        return prepared
    previous = store.latest_before(key)
    if previous is None:
        return _from_scratch(name, config, before, num_items)
    saved = store.load(previous)
    prepared = Prepared(_restore(name, config, saved, num_items), int(saved["trained_until_ms"]), 0.0)
    missed = before.timestamps > prepared.trained_until_ms
    if missed.any():  # windows skipped since that state: catch up on them first
        return fine_tune(prepared, config, before, int(before.timestamps[missed].min()), num_items)
    return prepared


def fine_tune(prepared: Prepared, config: WalkForwardConfig, log: EventLog, since_ms: int, num_items: int) -> Prepared:
    """``prepared`` trained further on the events of ``log`` at or after ``since_ms`` (with their context)."""
    recent = recent_events(log, since_ms, config.fine_tune_context)
    seconds = _fit(prepared.model, config, recent, num_items, config.fine_tune_epochs)
    until = max(prepared.trained_until_ms, int(recent.timestamps.max()))
    return Prepared(prepared.model, until, prepared.train_seconds + seconds)


def _from_scratch(name: str, config: WalkForwardConfig, log: EventLog, num_items: int) -> Prepared:
    model = _build(name, config, num_items)
    seconds = _fit(model, config, log, num_items, config.retrain_epochs)
    return Prepared(model, int(log.timestamps.max()), seconds)


def _fit(model: SequentialRecommender, config: WalkForwardConfig, log: EventLog, num_items: int, epochs: int) -> float:
    """Train in place; returns the seconds spent in training steps (not compiling or validating)."""
    train = TrainConfig(
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=0,
        device=config.device,
        seed=config.seed,
        eval_max_targets=500,
    )
    return fit(model, training_split(log, num_items), train).cost.train_seconds_total


def _build(name: str, config: WalkForwardConfig, num_items: int) -> SequentialRecommender:
    torch.manual_seed(config.seed)
    return build_model(name, num_items, max_len=config.max_len, d_model=config.d_model, n_layers=config.n_layers)


def _restore(name: str, config: WalkForwardConfig, saved: dict, num_items: int) -> SequentialRecommender:
    """A model over ``num_items`` items (more if it was saved with more) with the saved weights; rows of items
    born since keep their fresh init."""
    model = _build(name, config, max(num_items, saved["state_dict"][ITEM_TABLE].shape[0] - 1))
    state = model.state_dict()
    for key, value in saved["state_dict"].items():
        if key == ITEM_TABLE:
            state[key][: value.shape[0]] = value
        else:
            state[key] = value
    model.load_state_dict(state)
    return model
