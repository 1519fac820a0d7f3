"""The whole graph at smoke scale, in process, against a real DuckDB file and a real MLflow store."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import mlflow
import pytest
import yaml

from pipelines.definitions import defs
from pipelines.metric_names import (
    KIND_COMPARISON,
    KIND_TRAINING,
    PARAM_WARM_START,
    TAG_KIND,
    TAG_MODEL,
    TAG_MODEL_URI,
    buckets_in,
    cost_metric,
    final_metric,
)
from pipelines.model_names import MODEL_NAMES
from pipelines.paths import PROJECT_DIR, ProjectPaths
from pipelines.registry import CHAMPION, CURRENT, load_model_files, registered_name
from pipelines.reporting.summary import SYNTHETIC_DATA
from pipelines.resources import TAG_RUN

SMOKE = yaml.safe_load((PROJECT_DIR / "configs" / "smoke.yaml").read_text())
COST_KEYS = ("train_seconds_per_epoch", "train_seconds_total", "eval_seconds", "peak_memory_mb",
             "train_events_per_second", "num_parameters")  # fmt: skip


def training_runs(client: mlflow.MlflowClient, status: str | None = None) -> list:
    experiment = client.get_experiment_by_name("synthetic")
    status_clause = f" and attributes.status = '{status}'" if status else ""
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAINING}'{status_clause}"
    )


@pytest.fixture(scope="module")
def smoke_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmokeGraph]:
    """One smoke materialization of the whole graph, shared by this module's tests (it takes a while)."""
    root = tmp_path_factory.mktemp("smoke_graph")
    with pytest.MonkeyPatch.context() as patch:
        for variable, folder in (("RECMAMBA_HOME", "home"), ("DAGSTER_HOME", "dagster_home")):
            (root / folder).mkdir()
            patch.setenv(variable, str(root / folder))
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def("refresh").execute_in_process(run_config=SMOKE, instance=instance)
            assert result.success
            yield SmokeGraph(instance, mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri), result.run_id)


@dataclass
class SmokeGraph:
    instance: dg.DagsterInstance
    client: mlflow.MlflowClient
    run_id: str


def test_smoke_graph_logs_one_run_per_model_with_quality_and_cost(smoke_graph):
    client = smoke_graph.client
    runs = [run for run in training_runs(client) if run.data.tags[TAG_RUN] == smoke_graph.run_id]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert sorted(run.data.tags[TAG_MODEL] for run in runs) == sorted(MODEL_NAMES)
    for run in runs:
        metrics = run.data.metrics
        for k in (5, 10, 20):
            for name in ("hr", "ndcg", "mrr"):
                assert 0.0 <= metrics[final_metric("test", f"{name}_{k}")] <= 1.0
        # Only buckets that hold targets, named so that they sort by length (tiny histories: 300-600 events).
        buckets = buckets_in(metrics)
        assert buckets and set(buckets) <= {"len_00256_00384", "len_00384_00512", "len_00512_00768"}
        assert sum(metrics[final_metric("test", "num_targets", b)] for b in buckets) == metrics["test/num_targets"]
        assert metrics["test/num_targets"] == metrics["test/num_targets_total"]
        assert metrics["valid/num_targets"] <= metrics["valid/num_targets_total"]
        assert 0.0 <= metrics["baseline/most_popular/test_ndcg_10"] <= 1.0
        assert metrics[cost_metric("inference_ms_per_target")] > 0
        assert run.data.tags["recmamba.convergence"].startswith(("converged", "not converged"))
        assert not any(key.startswith("data.cutoff") and key.endswith("_ms") for key in run.data.params)
        assert run.data.params["train.loss"] != "ce" or "train.num_negatives" not in run.data.params
        for key in COST_KEYS:
            assert metrics[cost_metric(key)] >= 0.0, key
        assert metrics[cost_metric("num_parameters")] > 0
        model = load_model_files(run.data.tags[TAG_MODEL_URI])
        assert model.config.d_model == SMOKE["ops"][f"model_{run.data.tags[TAG_MODEL]}"]["config"]["model"]["d_model"]


def test_comparison_registers_one_champion_and_writes_its_artifacts(smoke_graph):
    instance, client = smoke_graph.instance, smoke_graph.client
    champion = client.get_model_version_by_alias(registered_name("synthetic"), CHAMPION)
    comparison = instance.get_latest_materialization_event(dg.AssetKey("model_comparison")).asset_materialization
    assert comparison.metadata["champion"].value in MODEL_NAMES
    assert champion.tags["model"] == comparison.metadata["champion"].value
    assert champion.description.startswith("Champion of synthetic, chosen on validation NDCG@10.")
    assert champion.run_id in {run.info.run_id for run in training_runs(client)}
    for model in MODEL_NAMES:  # each architecture: its newest version as "current", never a second champion
        name = registered_name("synthetic", model)
        assert client.get_model_version_by_alias(name, CURRENT).tags["model"] == model
        assert CHAMPION not in client.get_registered_model(name).aliases
    for key in ("summary", "comparison", "plot_quality_vs_cost", "plot_ndcg_10_by_history_length"):
        assert key in comparison.metadata
    assert "nan" not in comparison.metadata["comparison"].value.lower()
    assert comparison.metadata["data"].value == SYNTHETIC_DATA  # what the data is, beside the summary
    assert "![quality vs cost](data:image/png;base64," in comparison.metadata["plot_quality_vs_cost"].value
    comparison_run = client.search_runs(
        [client.get_experiment_by_name("synthetic").experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = '{KIND_COMPARISON}'",
    )[0]
    assert comparison_run.data.params["champion"] == champion.tags["model"]
    assert comparison_run.data.metrics[f"{champion.tags['model']}/test_ndcg_10"] > 0
    assert "most_popular/test_ndcg_10" in comparison_run.data.metrics
    artifacts = {artifact.path for artifact in client.list_artifacts(comparison_run.info.run_id)}
    assert {"comparison.csv", "comparison_table.json", "quality_vs_cost.png", "peak_memory.png"} <= artifacts
    csv_text = (Path(client.download_artifacts(comparison_run.info.run_id, "comparison.csv"))).read_text()
    assert "nan" not in csv_text.lower()


def test_model_assets_carry_quality_and_convergence_checks(smoke_graph):
    instance = smoke_graph.instance
    for model in MODEL_NAMES:
        key = dg.AssetKey(f"model_{model}")
        materialization = instance.get_latest_materialization_event(key).asset_materialization
        assert materialization.metadata["target_protocol"].value == "sample_per_user(10, seed 0)"
        for check in ("metrics_finite", "beats_popularity", "distinguishable_from_popularity", "converged"):
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([dg.AssetCheckKey(key, check)])[
                dg.AssetCheckKey(key, check)
            ]
            assert record is not None and record.run_id == smoke_graph.run_id, (model, check)
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.metadata["convergence"].value.startswith(("converged", "not converged"))
    loaded = load_model_files(f"models:/{registered_name('synthetic')}@{CHAMPION}")
    assert loaded.config.d_model == SMOKE["ops"]["model_recmamba"]["config"]["model"]["d_model"]


def test_failed_training_marks_its_run_failed_and_keeps_the_others(smoke_graph):
    instance, client = smoke_graph.instance, smoke_graph.client
    finished_before = {run.info.run_id for run in training_runs(client, status="FINISHED")}
    broken = copy.deepcopy(SMOKE)
    broken["ops"]["model_sasrec"]["config"]["train"]["lr"] = -1.0  # the optimizer refuses it mid-run
    result = defs.resolve_job_def("refresh").execute_in_process(
        run_config=broken, instance=instance, asset_selection=[dg.AssetKey("model_sasrec")], raise_on_error=False
    )
    assert not result.success
    failed = training_runs(client, status="FAILED")
    assert [run.data.tags[TAG_MODEL] for run in failed] == ["sasrec"]
    assert {run.info.run_id for run in training_runs(client, status="FINISHED")} == finished_before


def test_warm_start_loads_each_models_current_version(smoke_graph):
    instance = smoke_graph.instance
    warm = copy.deepcopy(SMOKE)
    warm["ops"]["model_gru4rec"]["config"]["warm_start"] = True
    result = defs.resolve_job_def("refresh").execute_in_process(
        run_config=warm, instance=instance, asset_selection=[dg.AssetKey("model_gru4rec")]
    )
    assert result.success
    logs = [event.message for event in instance.all_logs(result.run_id) if event.message]
    assert any("Warm start from gru4rec@current" in message for message in logs)
    client = smoke_graph.client
    version = client.get_model_version_by_alias(registered_name("synthetic", "gru4rec"), CURRENT).version
    started = {run.data.tags[TAG_RUN]: run.data.params[PARAM_WARM_START] for run in training_runs(client)
               if run.data.tags[TAG_MODEL] == "gru4rec"}  # fmt: skip
    assert started == {smoke_graph.run_id: "none", result.run_id: f"synthetic-gru4rec v{version}"}
