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

from pipelines.lifelong.checkpoints import StrategyCheckpoints
from pipelines.lifelong.config import WalkForwardOptions
from pipelines.lifelong.histories import EventLog, recent_events, training_split
from pipelines.registry import ITEM_TABLE
from recmodels import SequentialRecommender
from recmodels.training.loop import build_run_model, resolve_device, train_run

INITIAL = "initial"  # the frozen strategy's one state


@dataclass
class Prepared:
    """A model as it stands before a window, and what preparing it cost."""

    model_name: str
    model: SequentialRecommender
    trained_until_ms: int
    train_seconds: float


def prepare(
    strategy: str,
    name: str,
    config: WalkForwardOptions,
    log: EventLog,
    start_ms: int,
    num_items: int,
    checkpoints: StrategyCheckpoints,
    key: str,
) -> Prepared:
    """The model ``strategy`` evaluates on the window starting at ``start_ms``."""
    before = log.where(log.timestamps < start_ms)
    if strategy == "retrain":
        return _from_scratch(name, config, before, num_items)
    if strategy == "frozen":
        saved = checkpoints.load(INITIAL)
        if saved is not None:
            return Prepared(name, _restore(name, config, saved, num_items), int(saved["trained_until_ms"]), 0.0)
        prepared = _from_scratch(name, config, before, num_items)
        checkpoints.save(INITIAL, prepared.model, prepared.trained_until_ms)
        return prepared
    previous = checkpoints.latest_before(key)
    if previous is None:
        return _from_scratch(name, config, before, num_items)
    saved = checkpoints.load(previous)
    prepared = Prepared(name, _restore(name, config, saved, num_items), int(saved["trained_until_ms"]), 0.0)
    missed = before.timestamps > prepared.trained_until_ms
    if missed.any():  # windows skipped since that state: catch up on them first
        return fine_tune(prepared, config, before, int(before.timestamps[missed].min()))
    return prepared


def fine_tune(prepared: Prepared, config: WalkForwardOptions, log: EventLog, since_ms: int) -> Prepared:
    """``prepared`` trained further on the events of ``log`` at or after ``since_ms`` (with their context),
    over the catalogue the model already has."""
    recent = recent_events(log, since_ms, config.fine_tune_context)
    trained = train_run(
        prepared.model_name,
        config.fine_tune_run_config(prepared.model_name),
        training_split(recent, prepared.model.num_items),
        init_state_dict=prepared.model.state_dict(),
    )
    until = max(prepared.trained_until_ms, int(recent.timestamps.max()))
    seconds = prepared.train_seconds + trained.result.cost.train_seconds_total  # training steps only
    return Prepared(prepared.model_name, trained.model, until, seconds)


def _from_scratch(name: str, config: WalkForwardOptions, log: EventLog, num_items: int) -> Prepared:
    trained = train_run(name, config.run_config(name), training_split(log, num_items))
    return Prepared(name, trained.model, int(log.timestamps.max()), trained.result.cost.train_seconds_total)


def _restore(name: str, config: WalkForwardOptions, saved: dict, num_items: int) -> SequentialRecommender:
    """A model over ``num_items`` items (more if it was saved with more) with the saved weights, on its training
    device; rows of items born since keep their fresh init."""
    run_config = config.run_config(name)
    model = build_run_model(name, run_config, max(num_items, saved["state_dict"][ITEM_TABLE].shape[0] - 1))
    state = model.state_dict()
    try:
        for key, value in saved["state_dict"].items():
            if key == ITEM_TABLE:
                state[key][: value.shape[0]] = value
            else:
                state[key] = value
        model.load_state_dict(state)
    except RuntimeError as error:  # sizes changed since the state was saved (e.g. the defaults of before)
        raise ValueError(
            f"a saved walk-forward state of {name} does not fit walk_forward.config.{name}.model "
            f"({run_config.model}): set the sizes it was trained with there, or remove the saved states. "  # type: ignore[attr-defined]
            f"{str(error).strip().splitlines()[-1].strip()}"
        ) from error
    return model.to(resolve_device(run_config.train.device))  # type: ignore[attr-defined]
