"""Walk-forward on the tiny drifting stream: every strategy is a series of MLflow runs with the window as
step, the report reaches MLflow and Dagster, and a model trained past a window's start is blocked."""

import dagster as dg
import mlflow
import pytest

from pipelines.data.resources import Warehouse
from pipelines.data.sources import drift
from pipelines.lifelong.definitions import lifelong_assets
from pipelines.lifelong.settings import LifelongSettings
from pipelines.lifelong.tracking import KIND_WALK_FORWARD, TAG_STRATEGY
from pipelines.lifelong.walk_forward import LEAKAGE_CHECK
from pipelines.paths import ProjectPaths
from pipelines.registry import ITEM_TABLE, load_champion
from pipelines.resources import MlflowTracking

SPEC = drift.SCALES["tiny"]
DAYS = [drift.day_key(day) for day in range(SPEC.days)]
daily_events, walk_forward = lifelong_assets(LifelongSettings().partitions())  # day windows from 2022-01-01
TINY = {
    "models": ["gru4rec"],
    "gru4rec": {"model": {"max_len": 16, "d_model": 16}, "train": {"epochs": 1, "batch_size": 32}},
    "fine_tune_context": 8,
}


@pytest.fixture
def ingested(project_home):
    paths = ProjectPaths.from_env()
    drift.land_days(drift.generate(SPEC), paths.landing / drift.DRIFT_FOLDER, "kuairand", range(SPEC.days))
    run(
        daily_events,
        None,
        {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    return paths


def run(asset, day, tags=None, raise_on_error=True, walk=TINY):
    config = {"walk_forward": {"config": walk}} if asset is walk_forward else {}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [daily_events, walk_forward],
            selection=[asset],
            partition_key=day,
            tags=tags or {},
            run_config={"ops": config},
            resources={"warehouse": Warehouse(), "mlflow_tracking": MlflowTracking()},
            instance=instance,
            raise_on_error=raise_on_error,
        )


def check_passed(result) -> bool:
    [evaluation] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert evaluation.check_name == LEAKAGE_CHECK
    return evaluation.passed


def test_each_strategy_is_a_series_with_the_window_as_step(ingested):
    for day in DAYS[3:5]:
        result = run(walk_forward, day)
        assert check_passed(result)
    client = mlflow.MlflowClient(ingested.mlflow_tracking_uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "lifelong"]
    runs = client.search_runs([experiment.experiment_id], f"tags.`recmamba.run_kind` = '{KIND_WALK_FORWARD}'")
    assert sorted(r.data.tags[TAG_STRATEGY] for r in runs) == ["fine_tune", "frozen", "retrain"]
    for series in runs:
        history = client.get_metric_history(series.info.run_id, "ndcg_10")
        assert len({m.step for m in history}) == 2
        assert {"hr_10", "mrr_10", "train_seconds", "new_items", "cold_targets", "new_users"} <= set(
            series.data.metrics
        )
    frozen = next(r for r in runs if r.data.tags[TAG_STRATEGY] == "frozen")
    assert [m.value for m in client.get_metric_history(frozen.info.run_id, "train_seconds")][1:] == [0.0]
    metadata = result.asset_materializations_for_node("walk_forward")[0].metadata
    assert "fine_tune" in metadata["report"].value and metadata["drift_plot"].value.endswith("drift.png")
    assert_champion_is_the_best_series(client, runs, metadata)


def assert_champion_is_the_best_series(client, runs, metadata):
    """``lifelong-best@champion`` holds the series with the best mean NDCG@10, loadable with its item map;
    re-walking an older window does not move it back."""
    means = {
        r.data.tags[TAG_STRATEGY]: sum(m.value for m in client.get_metric_history(r.info.run_id, "ndcg_10")) / 2
        for r in runs
    }
    version = client.get_model_version_by_alias("lifelong-best", "champion")
    assert version.tags[TAG_STRATEGY] == max(means, key=means.get), (means, version.tags)
    assert metadata["champion"].value == f"gru4rec/{version.tags[TAG_STRATEGY]}"
    champion = load_champion(client, "lifelong-best")
    assert len(champion.item_raw_ids) == champion.state_dict[ITEM_TABLE].shape[0] - 1
    run(walk_forward, DAYS[3])
    assert client.get_model_version_by_alias("lifelong-best", "champion").version == version.version


@pytest.mark.parametrize("name", ["hstu", "lrurec"])
def test_walks_forward_like_every_model(ingested, name):
    """Trained, fine-tuned and retrained on windows cut from daily_events (HSTU with the events' times, LRURec
    evaluated from its streamed state)."""
    walk = {**TINY, "models": [name], name: TINY["gru4rec"]}
    for day in DAYS[3:5]:
        assert check_passed(run(walk_forward, day, walk=walk))
    client = mlflow.MlflowClient(ingested.mlflow_tracking_uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "lifelong"]
    runs = client.search_runs([experiment.experiment_id], f"tags.`recmamba.run_kind` = '{KIND_WALK_FORWARD}'")
    assert sorted(r.data.tags[TAG_STRATEGY] for r in runs) == ["fine_tune", "frozen", "retrain"]
    for series in runs:
        scores = [m.value for m in client.get_metric_history(series.info.run_id, "ndcg_10")]
        assert len(scores) == 2 and all(0.0 <= score <= 1.0 for score in scores)


def test_a_window_before_the_frozen_models_training_is_blocked_as_leakage(ingested):
    run(walk_forward, DAYS[4])  # frozen trains once, on everything before day 4
    result = run(walk_forward, DAYS[2], raise_on_error=False)
    assert not check_passed(result)
