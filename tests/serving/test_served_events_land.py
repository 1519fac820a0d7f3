"""Events the service acknowledged become part of the dataset's log: posted over real HTTP, landed as day files,
compacted out of the journal, ingested by raw_events, and in the rebuilt store exactly once; real Dagster runs of
the data assets and user_states over a real warehouse, MLflow registry and state stores."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx
import mlflow
import pytest
import torch

from pipelines.data.assets import DATA_ASSETS
from pipelines.data.resources import Warehouse
from pipelines.metric_names import TAG_MODEL_URI
from pipelines.paths import ProjectPaths
from pipelines.registry import CURRENT, ITEM_MAP_ARTIFACT, log_model_files, register_version, registered_name
from pipelines.resources import MlflowTracking
from pipelines.serving.assets import user_states
from pipelines.serving.jobs import compact_served
from pipelines.serving.landing import day_file, utc_day
from recmodels.models import build_model
from recmodels.serving.app import create_app
from recmodels.serving.service import ServedFolder
from tests.data.conftest import TINY, table
from tests.serving.test_http import WRITE_TOKEN, bearer, running

DATASET = "synthetic"


def materialize_data(instance: dg.DagsterInstance) -> Path:
    """raw_events .. splits of the tiny synthetic log; the export folder written."""
    result = dg.materialize(
        DATA_ASSETS, resources={"warehouse": Warehouse()}, run_config={"ops": TINY}, instance=instance
    )
    return Path(str(result.asset_materializations_for_node("splits")[0].metadata["export_path"].value))


def register_recmamba(export: Path, paths: ProjectPaths) -> None:
    """A trained-model stand-in over the export's items, registered as current as reporting does."""
    num_items = json.loads((export / "metadata.json").read_text())["num_items"]
    torch.manual_seed(0)
    model = build_model("recmamba", num_items, d_model=16, n_layers=1, max_len=16)
    mlflow.set_tracking_uri(paths.mlflow_tracking_uri)
    client = mlflow.MlflowClient(paths.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=MlflowTracking().experiment_id(DATASET)) as run:
        mlflow.set_tag(TAG_MODEL_URI, log_model_files(client, model, "recmamba"))
        mlflow.log_artifact(str(export / "item_map.parquet"), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
    register_version(client, registered_name(DATASET, "recmamba"), run.info.run_id, CURRENT)


def materialize_user_states(instance: dg.DagsterInstance, **config: object) -> dg.ExecuteInProcessResult:
    resources = {"mlflow_tracking": MlflowTracking(), "warehouse": Warehouse()}
    run_config = {"ops": {"user_states": {"config": {"models": ["recmamba"], **config}}}}
    return dg.materialize([user_states], instance=instance, resources=resources, run_config=run_config)


def user_events(paths: ProjectPaths, user: str) -> list[tuple[str, int]]:
    """(raw item, ts) of ``user`` in the warehouse's events table, in time order."""
    query = f"""
        SELECT CAST(m.item_raw AS VARCHAR), e.ts FROM events e JOIN user_map u USING (user_id)
        JOIN item_map m USING (item_id) WHERE CAST(u.user_raw AS VARCHAR) = '{user}' ORDER BY e.ts, e.row_id"""
    return table(paths, query, DATASET)


def by_time(event: tuple[str, int]) -> tuple[int, str]:
    return event[1], event[0]


@pytest.fixture
def served(project_home: Path):
    paths = ProjectPaths.from_env()
    paths.mlflow.mkdir(parents=True)
    with dg.DagsterInstance.ephemeral() as instance:
        register_recmamba(materialize_data(instance), paths)
        materialize_user_states(instance, journal_max_rows=1)
        yield instance, paths


def test_acknowledged_events_reach_raw_events_and_the_rebuilt_store_exactly_once(served):
    instance, paths = served
    link = paths.serving / DATASET / "recmamba"
    service = ServedFolder(link)
    horizon = int(service.get().meta["split_horizon_ms"])
    (early_user, early_last), *_ = table(
        paths,
        "SELECT CAST(u.user_raw AS VARCHAR), max(e.ts) AS last FROM events e JOIN user_map u USING (user_id)"
        " GROUP BY 1 ORDER BY last LIMIT 1",
        DATASET,
    )
    late_user = table(paths, "SELECT CAST(max(user_raw) AS VARCHAR) FROM user_map", DATASET)[0][0]
    items = service.get().catalogue.item_raw
    before = {user: user_events(paths, user) for user in (early_user, late_user)}
    posted = [
        (early_user, items[0], early_last + 1),  # before the split's horizon: compaction may delete it
        (early_user, items[1], early_last + 2),
        (late_user, items[2], horizon + 1_000),  # after the horizon: kept in the journal for a rebuild
    ]
    assert early_last + 2 < horizon
    with running(create_app(link, write_token=WRITE_TOKEN)) as base_url:
        client = httpx.Client(base_url=base_url, headers=bearer(WRITE_TOKEN), timeout=60)
        body = {"events": [{"user": user, "item": item, "timestamp": ts} for user, item, ts in posted]}
        assert client.post("/events", json=body).json()["applied"] == 3
        text_user = {"events": [{"user": "ann", "item": items[0], "timestamp": horizon}]}
        refused = client.post("/events", json=text_user)  # the dataset's ids are integers: its log could not hold it
        assert refused.status_code == 422 and refused.json()["detail"].startswith("events[0].user: ")
        client.close()

    compacted = compact_served(service, paths.served_events(DATASET))  # lands, then deletes what it may
    assert compacted["journal_deleted"] == 2
    service.get().close()
    landed = day_file(paths.served_events(DATASET), utc_day(horizon + 1_000)).read_text()
    assert f"{late_user},{items[2]},{horizon + 1_000}" in landed.splitlines()

    materialize_data(instance)
    served_rows = table(
        paths,
        "SELECT CAST(user_raw AS VARCHAR), CAST(item_raw AS VARCHAR), ts FROM raw_events"
        " WHERE source_file LIKE '%served_events_%' ORDER BY ts",
        DATASET,
    )
    assert served_rows == sorted(posted, key=lambda e: e[2])
    for user in (early_user, late_user):
        expected = before[user] + [(item, ts) for who, item, ts in posted if who == user]
        assert sorted(user_events(paths, user), key=by_time) == sorted(expected, key=by_time)

    rebuilt = materialize_user_states(instance).asset_materializations_for_node("user_states")[0].metadata
    assert rebuilt["recmamba/events_carried_over"].value == 0  # the late event is in the new split: a duplicate
    assert rebuilt["recmamba/carried_duplicates"].value == 1
    new = ServedFolder(link).get()
    for user in (early_user, late_user):
        assert new.store.get(user).events == len(user_events(paths, user))  # each event applied once
    assert new.store.get(late_user).last_ts == horizon + 1_000
    new.close()
