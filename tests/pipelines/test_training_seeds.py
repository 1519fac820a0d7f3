"""A model trained with several seeds reads as one result: a parent MLflow run with the same metric names as a
single run (each the mean over seeds), the spread across seeds, every seed's per-target ranks, and the model of
the seed that validated best, which the registry can register and load like any other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import mlflow
import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.metric_names import (
    KIND_TRAINING,
    KIND_TRAINING_SEED,
    TAG_KIND,
    TAG_MODEL_URI,
    final_metric,
    seed_std_metric,
)
from pipelines.paths import ProjectPaths
from pipelines.registry import CURRENT, load_current, register_version, registered_name
from pipelines.resources import MlflowTracking
from pipelines.training.assets import training_assets
from pipelines.training.checks import DISTINGUISHABLE
from pipelines.training.results import rounded
from tests.data.conftest import TINY, materialize
from tests.pipelines.test_training_pipes import TINY_MODEL, assert_per_target_results, check_evaluations

SEEDS = [1, 2]
CONFIG = {**TINY_MODEL, "train": {"epochs": 1, "batch_size": 128}, "seeds": SEEDS}  # bigger batches: faster
# Every progress line fires at once (not every 30 s), so a tiny run shows that they reach the run log.
EVERY_PROGRESS_LINE = """
import recmodels.training.progress
recmodels.training.progress.ProgressLog.__init__.__defaults__ = (0.0,)
"""


@dataclass
class SeededModel:
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    client: mlflow.MlflowClient
    parent: Run
    children: list[Run]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededModel]:
    """One materialization of gru4rec with two seeds, shared by this module's tests."""
    root = tmp_path_factory.mktemp("seeds")
    (root / "sitecustomize.py").write_text(EVERY_PROGRESS_LINE)
    with pytest.MonkeyPatch.context() as patch:
        for variable, folder in (("RECMAMBA_HOME", "home"), ("DAGSTER_HOME", "dagster_home")):
            (root / folder).mkdir()
            patch.setenv(variable, str(root / folder))
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        assert materialize(TINY).success
        [asset] = [a for a in training_assets if a.key == dg.AssetKey("model_gru4rec")]
        client_env = {"PYTHONPATH": str(root)}
        resources = {
            "mlflow_tracking": MlflowTracking(),
            "pipes_subprocess_client": dg.PipesSubprocessClient(env=client_env),
        }
        with dg.DagsterInstance.get() as instance:
            result = dg.materialize(
                [asset],
                resources=resources,
                run_config={"ops": {"model_gru4rec": {"config": CONFIG}}},
                instance=instance,
            )
            client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
            experiment = client.get_experiment_by_name("synthetic").experiment_id
            [parent] = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAINING}'")
            children = client.search_runs(
                [experiment],
                filter_string=f"tags.`{TAG_KIND}` = '{KIND_TRAINING_SEED}'",
                order_by=["params.`train.seed`"],
            )
            yield SeededModel(result, instance, client, parent, children)


def test_each_seed_trains_in_a_child_of_one_parent(seeded):
    assert [child.data.params["train.seed"] for child in seeded.children] == ["1", "2"]
    for child in seeded.children:
        assert child.info.status == "FINISHED"
        assert child.data.tags[MLFLOW_PARENT_RUN_ID] == seeded.parent.info.run_id
    assert seeded.parent.data.params["seeds"] == "1, 2" and "train.seed" not in seeded.parent.data.params
    assert seeded.parent.info.status == "FINISHED"


def test_the_parent_holds_the_mean_and_the_spread_over_seeds(seeded):
    metrics = seeded.parent.data.metrics
    for name in ("ndcg_10", "hr_10", "mrr_10"):
        values = [child.data.metrics[final_metric("test", name)] for child in seeded.children]
        assert metrics[final_metric("test", name)] == rounded(float(np.mean(values)))
        assert metrics[seed_std_metric("test", name)] == rounded(float(np.std(values, ddof=1)))
    assert metrics["num_seeds"] == 2
    assert_per_target_results(seeded.client, seeded.parent.info.run_id, seeds=set(SEEDS))
    metadata = seeded.result.asset_materializations_for_node("model_gru4rec")[0].metadata
    assert metadata["test_ndcg_10_seeds"].value.endswith("over 2 seeds") and metadata["num_seeds"].value == 2
    assert "| seed |" in metadata["per_seed"].value


def test_the_parent_keeps_the_best_validating_seeds_model_for_the_registry(seeded):
    best = max(seeded.children, key=lambda child: child.data.metrics[final_metric("valid", "ndcg_10")])
    assert seeded.parent.data.tags[TAG_MODEL_URI] == best.data.tags[TAG_MODEL_URI]
    name = registered_name("synthetic", "gru4rec")
    version = register_version(seeded.client, name, seeded.parent.info.run_id, CURRENT)
    assert register_version(seeded.client, name, seeded.parent.info.run_id, CURRENT) == version  # once per run
    current = load_current(seeded.client, name)
    assert current is not None and len(current.item_raw_ids) > 0


def test_checks_use_the_aggregate_and_progress_reaches_the_run_log(seeded):
    [check] = [c for c in check_evaluations(seeded.result) if c.check_name == DISTINGUISHABLE]
    assert check.severity == dg.AssetCheckSeverity.WARN and check.metadata["targets"].value > 0
    messages = [event.message for event in seeded.instance.all_logs(seeded.result.run_id) if event.message]
    assert any("epoch 1/1:" in message and "events/s" in message for message in messages)
    assert any("Training seed 2 (2 of 2)" in message for message in messages)
