"""Training's warm start from this architecture's registered ``current`` version, kept honest two ways: it is
refused when that version was trained on another split mode or on later cut-offs than this split's (its weights,
or the epoch its validation chose, would then have seen events of this split's validation or test window), and
every training run records what its weights started from (``PARAM_WARM_START``), which the comparison shows
beside each model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from pipelines.metric_names import COLD_START
from pipelines.registry import CURRENT, adapt_to_catalogue, load_current, registered_name
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit
from pipelines.training.params import split_params
from recmodels.training.loop import build_run_model

CUTOFF_PARAMS = ("data.cutoff_valid", "data.cutoff_test")  # as split_params logs them
LOGGED_MOMENT = "%Y-%m-%d %H:%M:%S UTC"  # split_params' format of a cut-off: to the second


@dataclass(frozen=True)
class WarmStart:
    """The weights the worker starts from (a saved state dict; None: its own initialisation) and, for the
    run's ``PARAM_WARM_START``, the registered version they came from."""

    init_state: str | None = None
    source: str = COLD_START


def warm_start(
    context: dg.AssetExecutionContext,
    tracking: MlflowTracking,
    split: CurrentSplit,
    model_name: str,
    run_config: BaseModel,
    scratch: Path,
) -> WarmStart:
    """The ``current`` version's weights fitted to this catalogue, saved for the worker; from scratch when no
    version is registered. Fails when the version may not start a model of this split (``refusal``)."""
    name = registered_name(split.dataset, model_name)
    current = load_current(tracking.client, name)
    if current is None:
        context.log.info(f"No {model_name} version registered as {CURRENT!r} yet: training from scratch.")
        return WarmStart()
    source = f"{name} v{current.version}"
    reason = refusal(tracking.client.get_run(current.run_id).data.params, split.metadata)
    if reason is not None:
        raise dg.Failure(
            f"Warm start of {model_name} refused: {source} ({name}@{CURRENT}, run {current.run_id[:8]}) {reason}. "
            "Train it from scratch (warm_start: false)."
        )
    model = build_run_model(model_name, run_config, int(split.metadata["num_items"]))
    item_raw_ids = pq.read_table(split.export_dir / "item_map.parquet")["item_raw"].to_pylist()
    state, skipped = adapt_to_catalogue(current, model.state_dict(), item_raw_ids)
    context.log.info(f"Warm start from {model_name}@{CURRENT} ({source}); re-initialised: {skipped or 'nothing'}.")
    path = scratch / "init_state.pt"
    torch.save(state, path)
    return WarmStart(str(path), source)


def refusal(trained_on: Mapping[str, str], split_metadata: Mapping[str, object]) -> str | None:
    """Why a version whose training run logged the params ``trained_on`` may not start a model of the split that
    ``split_metadata`` describes, or None. A cut-off the version's run did not record counts as later."""
    here = split_params(dict(split_metadata))
    mode, trained_mode = here["data.split_mode"], trained_on.get("data.split_mode")
    if trained_mode != mode:
        return f"was trained on {f'a {trained_mode}' if trained_mode else 'an unrecorded'} split, this split is {mode}"
    if mode != "global_time":
        return None
    for key in CUTOFF_PARAMS:
        trained, current, label = trained_on.get(key), here.get(key), key.removeprefix("data.")
        if trained is None or current is None:
            return f"cannot be checked: the {label} of {'its run' if trained is None else 'this split'} is unrecorded"
        if _moment(trained) > _moment(str(current)):
            return (
                f"was trained with {label} {trained}, later than this split's {current}: its weights, or the epoch "
                "its validation chose, have seen events of this split's validation or test window"
            )
    return None


def _moment(logged: str) -> dt.datetime:
    return dt.datetime.strptime(logged, LOGGED_MOMENT)
