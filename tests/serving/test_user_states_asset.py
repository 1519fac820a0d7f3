"""The user_states asset and the advance job, materialized by Dagster against a real export, a real DuckDB
warehouse and real MLflow registry champions."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.data.resources import Warehouse
from pipelines.metric_names import TAG_MODEL_URI
from pipelines.paths import ProjectPaths
from pipelines.registry import CURRENT, ITEM_MAP_ARTIFACT, log_model_files, register_version, registered_name
from pipelines.resources import MlflowTracking
from pipelines.serving.assets import user_states
from pipelines.serving.jobs import advance_user_states
from pipelines.serving.sensors import user_events_sensor
from recmodels.data.split_data import write_split_export
from recmodels.models import build_model
from recmodels.serving.service import RecommendationService

DATASET = "handmade"
NUM_ITEMS = 30


def item_raw(dense: int) -> str:
    return f"sku{dense:03d}"


def make_export(paths: ProjectPaths) -> Path:
    rng = np.random.default_rng(0)
    histories = [list(rng.integers(1, NUM_ITEMS + 1, size=n)) for n in (3, 12, 70)]
    splits = [[0] * (len(h) - 2) + [1, 2] for h in histories]
    stamps = [list(range(1000, 1000 + len(h))) for h in histories]
    export = write_split_export(paths.export_versions(DATASET) / "v1", histories, splits, stamps, NUM_ITEMS, DATASET)
    items = pa.table({"item_id": pa.array(range(1, NUM_ITEMS + 1), pa.int32()),
                      "item_raw": [item_raw(i) for i in range(1, NUM_ITEMS + 1)]})  # fmt: skip
    pq.write_table(items, export / "item_map.parquet")
    paths.warehouses.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(paths.warehouse(DATASET))) as con:
        con.execute(
            "CREATE TABLE user_map AS SELECT * FROM (VALUES (1, 'ann'), (2, 'bob'), (3, 'cy')) t(user_id, user_raw)"
        )
    return export


def register(export: Path, paths: ProjectPaths, model_name: str) -> None:
    """A trained-model stand-in: a model logged and registered as current the way training and reporting do."""
    torch.manual_seed(1)
    model = build_model(model_name, NUM_ITEMS, d_model=16, n_layers=1, max_len=8)
    mlflow.set_tracking_uri(paths.mlflow_tracking_uri)
    client = mlflow.MlflowClient(paths.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=MlflowTracking().experiment_id(DATASET)) as run:  # artifacts in the home
        mlflow.set_tag(TAG_MODEL_URI, log_model_files(client, model, model_name))
        mlflow.log_artifact(str(export / "item_map.parquet"), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
    register_version(client, registered_name(DATASET, model_name), run.info.run_id, CURRENT)


@pytest.fixture
def served(project_home: Path):
    paths = ProjectPaths.from_env()
    paths.mlflow.mkdir(parents=True)
    export = make_export(paths)
    for name in ("recmamba", "sasrec"):
        register(export, paths, name)
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization("splits", metadata={"export_path": str(export)}))
    yield instance, paths
    instance.dispose()


def materialize(instance: dg.DagsterInstance, **config: object) -> dg.ExecuteInProcessResult:
    resources = {"mlflow_tracking": MlflowTracking(), "warehouse": Warehouse()}
    run_config = {"ops": {"user_states": {"config": {"models": ["recmamba", "gru4rec", "sasrec"], **config}}}}
    return dg.materialize([user_states], instance=instance, resources=resources, run_config=run_config)


def test_user_states_serves_each_current_version_and_rebuilds_idempotently(served):
    instance, paths = served
    result = materialize(instance)
    metadata = result.asset_materializations_for_node("user_states")[0].metadata
    assert metadata["users"].value == 3 and metadata["recmamba/version"].value == "handmade-recmamba v1"
    assert metadata["recmamba/bytes_per_user"].value == (16 * 2 * 3 + 16 * 2 * 16 + 16) * 4
    assert "gru4rec/version" not in metadata  # no version registered as current: skipped, not failed
    service = RecommendationService(paths.serving / DATASET / "recmamba")
    assert service.health()["users"] == 3 and service.meta["split_fingerprint"].startswith(DATASET)
    before = service.recommend("cy", 5, exclude_seen=True)
    assert not before.fallback and service.post_events([("cy", item_raw(4), 5000)]).applied == 1
    after = service.recommend("cy", 5, exclude_seen=True)
    service.close()

    again = materialize(instance).asset_materializations_for_node("user_states")[0].metadata
    assert again["recmamba/events_carried_over"].value == 1  # the posted event survives the rebuild
    rebuilt = RecommendationService(paths.serving / DATASET / "recmamba")
    assert rebuilt.recommend("cy", 5, exclude_seen=True) == after
    assert len(os.listdir(paths.serving / DATASET / ".versions" / "recmamba")) == 2
    rebuilt.close()


def test_advance_job_applies_inbox_files_once_and_refuses_bad_ones(served):
    instance, paths = served
    materialize(instance)
    inbox = paths.serving / DATASET / "inbox"
    inbox.mkdir()
    context = dg.build_sensor_context(instance=instance)
    assert isinstance(user_events_sensor(context), dg.SkipReason)
    (inbox / "day1.csv").write_text(
        f"user,item,timestamp\nann,{item_raw(2)},9000\nnew,{item_raw(3)},9001\nann,zzz,9002\n"
    )
    (inbox / "day2.csv.part").write_text("user,item,timestamp\n")  # not published yet: ignored
    assert isinstance(user_events_sensor(context), dg.RunRequest)
    result = advance_user_states.execute_in_process(instance=instance)
    observed = result.asset_observations_for_node("advance_user_states_op")[0].metadata
    assert observed["recmamba/applied"].value == 2 and observed["recmamba/unknown_items"].value == 1
    assert observed["sasrec/new_users"].value == 1
    assert sorted(p.name for p in inbox.iterdir()) == [".done", "day2.csv.part"]
    service = RecommendationService(paths.serving / DATASET / "sasrec")
    assert service.store.get("ann").events == 3 + 1 and not service.recommend("new", 3, True).fallback
    service.close()

    (inbox / "bad.csv").write_text(f"user,item,timestamp\nann,{item_raw(2)},yesterday\n")
    result = advance_user_states.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert "bad.csv: line 2, column timestamp: 'yesterday' is not an integer" in str(result.all_events)
    assert (inbox / "bad.csv").exists()


def test_advance_job_compacts_each_journal_by_the_policy_the_asset_was_configured_with(served):
    instance, paths = served
    materialize(instance, journal_max_rows=1)  # the split's newest event is at 1069
    inbox = paths.serving / DATASET / "inbox"
    inbox.mkdir()
    (inbox / "day1.csv").write_text(
        f"user,item,timestamp\nzed,{item_raw(2)},500\nzed,{item_raw(3)},600\n"
        f"ann,{item_raw(4)},9000\nann,{item_raw(5)},9001\n"
    )
    result = advance_user_states.execute_in_process(instance=instance)
    observed = result.asset_observations_for_node("advance_user_states_op")[0].metadata
    assert observed["recmamba/applied"].value == 4
    assert observed["recmamba/journal_deleted"].value == 2  # zed's events: not newer than the split
    assert observed["recmamba/journal_kept_for_rebuild"].value == 1  # ann at 9000: past max_rows, newer than the split
    service = RecommendationService(paths.serving / DATASET / "recmamba")
    assert service.store.journal("ann") == [(4, 9000), (5, 9001)] and service.store.journal("zed") == []
    service.close()
