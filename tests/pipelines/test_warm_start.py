"""A registered version's weights carried into a model of a grown catalogue, row by raw item id, and only from a
version that cannot have seen this split's validation or test window."""

import shutil
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.metric_names import TAG_MODEL_URI
from pipelines.paths import ProjectPaths
from pipelines.registry import (
    CURRENT,
    ITEM_MAP_ARTIFACT,
    ITEM_TABLE,
    RegisteredWeights,
    adapt_to_catalogue,
    log_model_files,
    register_version,
    registered_name,
)
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit
from pipelines.training.params import split_params
from pipelines.training.warm_start import WarmStart, refusal, warm_start
from recmodels.models import build_model
from recmodels.training.config import run_config_class


def test_embedding_rows_follow_raw_ids_and_new_items_keep_fresh_rows():
    old_table = torch.arange(4 * 2, dtype=torch.float32).reshape(4, 2)  # padding row + items a, b, c
    current = RegisteredWeights({ITEM_TABLE: old_table, "head.weight": torch.ones(3, 2)}, ["a", "b", "c"])
    fresh = {ITEM_TABLE: torch.full((5, 2), -1.0), "head.weight": torch.zeros(3, 2), "new.bias": torch.zeros(2)}

    state, skipped = adapt_to_catalogue(current, fresh, ["c", "x", "a", "b"])  # ids reassigned, "x" is new

    assert torch.equal(state[ITEM_TABLE][1], old_table[3])  # c
    assert torch.equal(state[ITEM_TABLE][2], fresh[ITEM_TABLE][2])  # x: fresh
    assert torch.equal(state[ITEM_TABLE][3], old_table[1])  # a
    assert torch.equal(state[ITEM_TABLE][4], old_table[2])  # b
    assert torch.equal(state["head.weight"], torch.ones(3, 2))
    assert skipped == ["new.bias"]


def test_a_changed_layer_shape_keeps_the_fresh_weights():
    current = RegisteredWeights({"layer.weight": torch.ones(4, 4)}, [])
    state, skipped = adapt_to_catalogue(current, {"layer.weight": torch.zeros(8, 4)}, [])
    assert torch.equal(state["layer.weight"], torch.zeros(8, 4))
    assert skipped == ["layer.weight"]


DATASET = "ds"
V, T = 978307200000, 978652800000  # 2001-01-01 and 2001-01-05, UTC, in ms


def split_metadata(mode: str = "global_time", cutoff_valid_ms: int | None = V, cutoff_test_ms: int | None = T) -> dict:
    cutoffs = {"cutoff_valid_ms": cutoff_valid_ms, "cutoff_test_ms": cutoff_test_ms}
    return {"dataset": DATASET, "num_items": 3, "split_mode": mode, "fingerprint": "f" * 16, **cutoffs}


def register_gru4rec(tmp_path: Path, trained_on: dict) -> MlflowTracking:
    """A gru4rec version registered as ``current`` whose training run logged the split params of ``trained_on``."""
    ProjectPaths.from_env().mlflow.mkdir()
    tracking = MlflowTracking()
    mlflow.set_tracking_uri(tracking.resolved_tracking_uri)
    item_map = tmp_path / "item_map.parquet"
    pq.write_table(pa.table({"item_id": [1, 2, 3], "item_raw": ["a", "b", "c"]}), item_map)
    with mlflow.start_run(experiment_id=tracking.experiment_id(DATASET)) as run:
        mlflow.log_params(split_params(trained_on))
        mlflow.set_tag(TAG_MODEL_URI, log_model_files(tracking.client, build_model("gru4rec", 3, d_model=8), "gru4rec"))
        mlflow.log_artifact(str(item_map), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
    register_version(tracking.client, registered_name(DATASET, "gru4rec"), run.info.run_id, CURRENT)
    return tracking


def start(tracking: MlflowTracking, tmp_path: Path, metadata: dict) -> WarmStart:
    """What the gru4rec asset's warm start does on a split of ``metadata`` (its export holds the item map)."""
    export = tmp_path / "export"
    export.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "item_map.parquet", export / "item_map.parquet")
    split = CurrentSplit(DATASET, metadata["fingerprint"], export, metadata)
    run_config = run_config_class("gru4rec").model_validate({"model": {"d_model": 8}})
    return warm_start(dg.build_op_context(), tracking, split, "gru4rec", run_config, tmp_path)


def test_a_version_trained_on_the_same_or_earlier_cutoffs_starts_the_model_and_names_itself(project_home, tmp_path):
    tracking = register_gru4rec(tmp_path, split_metadata(cutoff_valid_ms=V - 86_400_000))
    warm = start(tracking, tmp_path, split_metadata())
    assert warm.source == "ds-gru4rec v1" and Path(warm.init_state).is_file()


@pytest.mark.parametrize(
    ("trained_on", "reason"),
    [
        (split_metadata(cutoff_valid_ms=V + 1000), "trained with cutoff_valid 2001-01-01 00:00:01 UTC, later than"),
        (split_metadata(cutoff_test_ms=T + 1000), "trained with cutoff_test 2001-01-05 00:00:01 UTC, later than"),
        (split_metadata("leave_one_out", None, None), "trained on a leave_one_out split, this split is global_time"),
    ],
)
def test_a_version_trained_on_later_cutoffs_or_another_split_mode_is_refused(
    project_home, tmp_path, trained_on, reason
):
    tracking = register_gru4rec(tmp_path, trained_on)
    with pytest.raises(dg.Failure, match=f"Warm start of gru4rec refused: ds-gru4rec v1 .*{reason}"):
        start(tracking, tmp_path, split_metadata())


def test_a_version_whose_run_recorded_no_split_is_refused():
    assert refusal({}, split_metadata()) == "was trained on an unrecorded split, this split is global_time"
