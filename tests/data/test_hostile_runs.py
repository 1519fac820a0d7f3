"""Datasets stay apart and runs never mix: each run builds on its own upstream tables and exports, exports
are versioned behind one atomically swapped link, and a nonsense split never replaces a good export."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.data import export_dir_for
from pipelines.data.assets import DATA_ASSETS
from pipelines.data.export import KEEP_VERSIONS
from pipelines.data.resources import Warehouse
from pipelines.instance import prepare_dagster_home
from pipelines.metric_names import TAG_MODEL_URI
from pipelines.paths import ProjectPaths
from pipelines.registry import (
    CONFIG_FILE,
    CURRENT,
    ITEM_MAP_ARTIFACT,
    STATE_DICT_FILE,
    load_current,
    log_model_files,
    register_version,
)
from pipelines.resources import MlflowTracking
from recmodels import build_model
from tests.dagster_cli import alembic_versions, start_materialize, wait_ok
from tests.data.conftest import (
    TINY,
    check_outcomes,
    kuairand_config,
    kuairand_landing,
    materialize,
    ops_config,
    table,
)

DATA_SELECTION = "raw_events,events,sequences,splits"


def data_job() -> dg.JobDefinition:
    """The data assets as one in-process job, reconstructable so that a test can re-execute one of its steps."""
    defs = dg.Definitions(
        assets=DATA_ASSETS,
        resources={"warehouse": Warehouse()},
        jobs=[dg.define_asset_job("data", executor_def=dg.in_process_executor)],
    )
    return defs.resolve_job_def("data")


def export_metadata(dataset: str) -> dict:
    return json.loads((export_dir_for(dataset) / "metadata.json").read_text())


def test_each_dataset_has_its_own_warehouse_and_export(paths):
    materialize(kuairand_config(kuairand_landing(paths)))
    materialize(TINY)
    kuairand, synthetic = export_metadata("kuairand"), export_metadata("synthetic")
    assert (kuairand["dataset"], synthetic["dataset"]) == ("kuairand", "synthetic")
    assert kuairand["num_users"] != synthetic["num_users"]
    assert table(paths, "SELECT count(*) FROM raw_events", dataset="kuairand") == [(85,)]
    assert table(paths, "SELECT count(DISTINCT user_raw) FROM raw_events", dataset="synthetic") == [(30,)]


def test_downstream_steps_follow_the_dataset_of_their_upstream(paths):
    """A run of ``events``..``splits`` alone works on the dataset the latest ``raw_events`` ingested."""
    materialize(TINY)
    materialize(kuairand_config(kuairand_landing(paths)))
    before = export_metadata("synthetic")
    result = materialize({"events": {"config": {"min_events_per_user": 2}}}, selection="events*")
    assert result.asset_materializations_for_node("splits")[0].metadata["dataset"].value == "kuairand"
    assert export_metadata("synthetic") == before


def test_a_run_whose_upstream_was_rewritten_by_another_run_fails_clearly(paths):
    config = {"ops": kuairand_config(kuairand_landing(paths))}
    stalled = {"ops": {**config["ops"], "events": {"config": {"min_events_per_user": 10_000}}}}
    job = dg.reconstructable(data_job)
    with dg.DagsterInstance.get() as instance:
        # The first run ingests, then stops at events (its filters remove everything) ...
        first = dg.execute_job(
            job, instance, run_config=stalled, asset_selection=[dg.AssetKey("raw_events"), dg.AssetKey("events")]
        )
        assert not first.success
        # ... another run replaces raw_events of the same dataset ...
        other = dg.execute_job(job, instance, run_config=config, asset_selection=[dg.AssetKey("raw_events")])
        assert other.success
        # ... and the first run, resumed, must not build on the other run's table.
        resumed = dg.execute_job(
            job,
            instance,
            run_config=config,
            reexecution_options=dg.ReexecutionOptions(parent_run_id=first.run_id, step_selection=["events"]),
        )
    assert not resumed.success
    failure = next(e for e in resumed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert f"raw_events table of dataset 'kuairand' was rewritten by run {other.run_id}" in message


def csv_landing(paths: ProjectPaths, dataset: str, users: int) -> dict:
    """A landing folder of ``users`` users with six events each; returns the data assets' run config."""
    folder = paths.landing / dataset
    folder.mkdir(parents=True)
    rows = [f"{dataset}-u{u},item{(u + k) % 7},{1_650_000_000 + 60 * k}" for u in range(users) for k in range(6)]
    (folder / "day.csv").write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return ops_config(
        raw_events={"source": "csv", "dataset": dataset, "landing_dir": str(folder), "csv_user_column": "user",
                    "csv_item_column": "item", "csv_time_column": "ts"},
        splits={"mode": "leave_one_out"},
    )  # fmt: skip


def test_two_runs_on_two_datasets_at_once_export_their_own_data(paths, tmp_path):
    dagster_home = prepare_dagster_home(tmp_path / "dagster_cli_home")
    env = {"RECMAMBA_HOME": str(paths.home), "DAGSTER_HOME": str(dagster_home)}
    configs = {"dsA": csv_landing(paths, "dsA", users=3), "dsB": csv_landing(paths, "dsB", users=5)}
    runs = [start_materialize(DATA_SELECTION, {"ops": config}, env) for config in configs.values()]
    for run in runs:
        wait_ok(run, timeout=600)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert [run.status for run in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert len(alembic_versions(dagster_home / "history" / "runs.db")) == 1
    for dataset, users in (("dsA", 3), ("dsB", 5)):
        histories = pq.read_table(export_dir_for(dataset) / "histories.parquet")
        assert export_metadata(dataset)["num_users"] == users == histories.num_rows
        raw_users = table(paths, "SELECT DISTINCT user_raw FROM raw_events", dataset=dataset)
        assert {user.split("-")[0] for (user,) in raw_users} == {dataset}


def test_export_link_swaps_to_immutable_versions_and_prunes_old_ones(paths):
    versions = []
    for _ in range(KEEP_VERSIONS + 1):
        materialize(TINY)
        link = export_dir_for("synthetic")
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # survives moving RECMAMBA_HOME
        versions.append(link.resolve())
    assert len(set(versions)) == len(versions)
    kept = sorted(p for p in versions[-1].parent.iterdir())
    assert kept == versions[1:]


def test_an_export_from_before_versioning_becomes_a_version(paths):
    legacy = paths.exports / "synthetic"
    legacy.mkdir(parents=True)
    (legacy / "metadata.json").write_text("{}")
    materialize(TINY)
    assert export_dir_for("synthetic").is_symlink()
    assert [p.name for p in paths.export_versions("synthetic").iterdir() if "legacy" in p.name]


def test_leftovers_of_a_killed_export_are_removed_by_the_next_run(paths):
    materialize(TINY)
    versions = paths.export_versions("synthetic")
    (versions / ".tmp-killed").mkdir()
    (versions / ".tmp-killed" / "histories.parquet").write_text("half")
    (paths.exports / ".synthetic.tmp-0123").mkdir()  # the layout before versioning
    (paths.exports / ".synthetic.link-0123").symlink_to("nowhere")
    materialize(TINY)
    assert not [p for p in versions.iterdir() if p.name.startswith(".")]
    assert not [p for p in paths.exports.iterdir() if p.name.startswith(".synthetic")]


def test_a_split_without_training_events_fails_its_checks_and_keeps_the_export(paths):
    materialize(TINY)
    before = export_dir_for("synthetic").resolve()
    empty_train = {**TINY, "splits": {"config": {"valid_start": "1990-01-01", "test_start": "1990-01-02"}}}
    result = materialize(empty_train, raise_on_error=False)
    outcomes = check_outcomes(result)
    assert outcomes["train_events_not_empty"] is False
    splits = result.asset_materializations_for_node("splits")[0].metadata
    assert splits["export_written"].value is False
    assert export_dir_for("synthetic").resolve() == before


def test_a_split_without_test_targets_fails_its_checks(paths):
    late = {**TINY, "splits": {"config": {"valid_start": "2030-01-01", "test_start": "2031-01-01"}}}
    outcomes = check_outcomes(materialize(late, raise_on_error=False))
    assert outcomes["targets_not_empty"] is False
    assert not export_dir_for("synthetic").exists()


def test_dataset_names_never_become_paths_outside_the_project(paths):
    for name in ("../landing/csv", ".", "..", "/etc", "a/b", "it's", ""):
        with pytest.raises(ValueError, match="dataset name"):
            paths.export(name)
        with pytest.raises(ValueError, match="dataset name"):
            paths.warehouse(name)


def test_warehouse_settings_are_resource_config(paths):
    warehouse = Warehouse(memory_limit="300MB", threads=1, temp_directory=str(paths.home / "spill"))
    with warehouse.connect("settings") as con:
        limit, threads, spill = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
        ).fetchone()
    assert (limit, threads, spill) == ("286.1 MiB", 1, str(paths.home / "spill"))
    with Warehouse().connect("settings") as con:
        default = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert default != "286.1 MiB"


def test_mlflow_filters_quote_values_with_quotes(project_home):
    tracking = MlflowTracking()
    ProjectPaths.from_env().mlflow.mkdir()
    mlflow.set_tracking_uri(tracking.resolved_tracking_uri)
    experiment = tracking.experiment_id("quotes")
    with mlflow.start_run(experiment_id=experiment, tags={"note": "it's \\ quoted"}):
        pass
    assert len(tracking.runs_of("quotes", {"note": "it's \\ quoted"})) == 1


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled code ran')",))


def test_warm_start_loads_weights_only_and_never_unpickles_code(project_home, tmp_path):
    ProjectPaths.from_env().mlflow.mkdir()
    tracking = MlflowTracking()
    mlflow.set_tracking_uri(tracking.resolved_tracking_uri)
    model = build_model("gru4rec", 3, d_model=8)
    item_map = tmp_path / "item_map.parquet"
    pq.write_table(pa.table({"item_id": [1, 2, 3], "item_raw": ["a", "b", "c"]}), item_map)
    with mlflow.start_run(experiment_id=tracking.experiment_id("ds")) as run:  # artifacts under RECMAMBA_HOME
        model_uri = log_model_files(tracking.client, model, "gru4rec")
        mlflow.set_tag(TAG_MODEL_URI, model_uri)
        mlflow.log_artifact(str(item_map), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
    register_version(tracking.client, "ds-gru4rec", run.info.run_id, CURRENT)
    stored = Path(mlflow.get_logged_model(model_uri.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    assert sorted(p.name for p in stored.iterdir()) == [CONFIG_FILE, STATE_DICT_FILE]
    current = load_current(tracking.client, "ds-gru4rec")
    assert torch.equal(current.state_dict["item_embedding.weight"], model.item_embedding.weight)
    assert current.item_raw_ids == ["a", "b", "c"]

    # A tampered store: the weights file now holds a pickle that would run code when unpickled.
    torch.save({"item_embedding.weight": _RunsCodeWhenUnpickled()}, stored / STATE_DICT_FILE)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_current(tracking.client, "ds-gru4rec")
