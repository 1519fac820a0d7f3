"""The training asset launches its worker through Dagster Pipes, under torchrun when asked for processes: one
MLflow run per materialization holding its per-target ranks and intervals, and a rank that fails fails the
asset with that rank's own error."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import pyarrow.parquet as pq
import pytest

from pipelines.metric_names import (
    TAG_MODEL,
    TARGET_RANKS_ARTIFACT,
    baseline_ranks_artifact,
    cost_metric,
    final_metric,
    interval_metric,
)
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.training.assets import training_assets
from pipelines.training.checks import DISTINGUISHABLE
from pipelines.training.results import rounded
from recmodels.evaluation.stats import per_target_metric
from tests.data.conftest import TINY, materialize

TINY_MODEL = {"model": {"max_len": 32, "d_model": 16}, "train": {"epochs": 1, "batch_size": 16}}
# Makes rank 1, and only rank 1, of a real torchrun fail inside training (sitecustomize runs at start-up).
FAULT = """
import os
if os.environ.get("RANK") == "1":
    import recmodels.training.loop
    def broken(*args, **kwargs):
        raise RuntimeError("rank one broke")
    recmodels.training.loop.fit = broken
"""


def train_gru4rec(
    nproc_per_node: int, env: dict[str, str] | None = None, out_of_core: bool = False
) -> dg.ExecuteInProcessResult:
    [asset] = [a for a in training_assets if a.key == dg.AssetKey("model_gru4rec")]
    config = {**TINY_MODEL, "nproc_per_node": nproc_per_node, "out_of_core": out_of_core}
    resources = {"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient(env=env)}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [asset],
            resources=resources,
            run_config={"ops": {"model_gru4rec": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )


@pytest.fixture
def tiny_split(project_home: Path) -> None:
    assert materialize(TINY).success


def test_two_processes_write_one_mlflow_run_with_metrics_and_cost(tiny_split):
    """Both processes read the histories out of core: the first to arrive converts the export, once."""
    result = train_gru4rec(nproc_per_node=2, out_of_core=True)
    assert result.success
    [store] = ProjectPaths.from_env().history_store("synthetic").iterdir()
    assert (store / "store.json").is_file()
    metadata = result.asset_materializations_for_node("model_gru4rec")[0].metadata
    assert metadata["processes"].value == 2 and 0.0 <= metadata["test_ndcg_10"].value <= 1.0
    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags[TAG_MODEL] == "gru4rec"
    assert run.data.metrics[cost_metric("processes")] == 2
    assert 0.0 <= run.data.metrics[final_metric("test", "ndcg_10")] <= 1.0
    assert run.data.params["model.d_model"] == "16" and run.data.params["train.epochs"] == "1"
    assert "seeds" not in run.data.params and run.data.params["train.seed"] == "42"
    assert_per_target_results(client, run.info.run_id, seeds={42})
    [warning] = [check for check in check_evaluations(result) if check.check_name == DISTINGUISHABLE]
    assert warning.severity == dg.AssetCheckSeverity.WARN
    assert {"ndcg_10_difference", "interval_95", "p_value", "targets", "users"} <= set(warning.metadata)


def assert_per_target_results(client: mlflow.MlflowClient, run_id: str, seeds: set[int]) -> None:
    """The run's per-target artifact gives back its logged test NDCG@10 (averaged over its seeds), its
    intervals bracket each estimate, and each baseline's ranks sit beside it."""
    metrics = client.get_run(run_id).data.metrics
    ranks = pq.read_table(client.download_artifacts(run_id, TARGET_RANKS_ARTIFACT)).to_pandas()
    assert set(ranks["seed"]) == seeds
    assert len(ranks) == len(seeds) * metrics[final_metric("test", "num_targets")]
    recomputed = per_target_metric(ranks["rank"].to_numpy(), "ndcg_10").mean()
    assert rounded(recomputed) == pytest.approx(metrics[final_metric("test", "ndcg_10")], rel=1e-3)
    for name, bucket in [
        *((name, None) for name in ("ndcg_10", "hr_10", "mrr_10")),
        *(("ndcg_10", bucket) for bucket in set(ranks["bucket"])),
    ]:
        low, high = (metrics[interval_metric("test", name, bound, bucket)] for bound in ("low", "high"))
        estimate = metrics[final_metric("test", name, bucket)]  # rounded to 4 digits, as the bounds are
        assert low * (1 - 1e-3) <= estimate <= high * (1 + 1e-3), (name, bucket, low, estimate, high)
    for baseline in ("most_popular", "recent_popular"):
        floor = pq.read_table(client.download_artifacts(run_id, baseline_ranks_artifact(baseline))).to_pandas()
        assert set(floor["seed"]) == {-1} and len(floor) == metrics[final_metric("test", "num_targets")]


def check_evaluations(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    return [
        event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]


def test_a_failing_rank_fails_the_asset_with_its_own_error(tiny_split, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(FAULT)
    result = train_gru4rec(nproc_per_node=2, env={"PYTHONPATH": str(tmp_path)})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "Training failed in rank 1: RuntimeError: rank one broke" in failure.step_failure_data.error.message
    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.info.status == "FAILED"
