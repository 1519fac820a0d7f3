"""The ablation trains every variant at every seed through the real worker, each point a child of one parent
run that holds every variant's quality with its interval (overall and per history-length bucket), its paired
difference with the reference variant and its cost; a variant that changes a field its model does not have
fails before anything trains, naming the variant and the field."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import mlflow
import pytest

from pipelines.metric_names import TAG_KIND
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.sweep.assets import KIND_ABLATION, KIND_ABLATION_POINT, TAG_SEED, TAG_VARIANT, ablation
from pipelines.sweep.config import AblationConfig
from pipelines.sweep.points import TAG_STATUS
from tests.data.conftest import TINY, materialize

TINY_TRAIN = {"epochs": 1, "batch_size": 64, "eval_max_targets": 50}
# Any field of the model config can be changed; RecMamba's state size stands in for selective / d_conv here.
VARIANTS = {"recmamba": {"model": "recmamba"}, "recmamba_d_state_4": {"model": "recmamba", "overrides": {"d_state": 4}}}


def run_ablation(config: dict) -> dg.ExecuteInProcessResult:
    resources = {"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(
            [ablation],
            resources=resources,
            run_config={"ops": {"ablation": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )


def test_ablation_pools_each_variants_seeds_and_pairs_them_with_the_reference(project_home: Path):
    assert materialize(TINY).success
    config = {"variants": VARIANTS, "seeds": [1, 2], "d_model": 8, "n_layers": 1, "max_len": 16, "train": TINY_TRAIN}
    result = run_ablation(config)
    assert result.success
    metadata = result.asset_materializations_for_node("ablation")[0].metadata
    assert metadata["points_ok"].value == 4 and metadata["reference"].value == "recmamba"
    table = metadata["ablation"].value
    assert (
        "| recmamba | recmamba | – | 2 | 0." in table
        and "| recmamba_d_state_4 | recmamba | d_state=4 | 2 | 0." in table
    )
    assert "recmamba_d_state_4: recmamba minus recmamba_d_state_4 on NDCG@10" in metadata["summary"].value

    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    [parent] = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_ABLATION}'")
    points = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_ABLATION_POINT}'")
    assert sorted((run.data.tags[TAG_VARIANT], run.data.tags[TAG_SEED]) for run in points) == [
        ("recmamba", "1"), ("recmamba", "2"), ("recmamba_d_state_4", "1"), ("recmamba_d_state_4", "2"),
    ]  # fmt: skip
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in points)
    assert all(run.info.status == "FINISHED" and run.data.tags[TAG_STATUS] == "ok" for run in points)
    assert {run.data.params["model.d_state"] for run in points if run.data.tags[TAG_VARIANT] != "recmamba"} == {"4"}
    assert {run.data.params["train.epochs"] for run in points} == {"1"}  # one budget for all

    metrics = parent.data.metrics
    for variant in VARIANTS:
        seeds = [run.data.metrics["test/ndcg_10"] for run in points if run.data.tags[TAG_VARIANT] == variant]
        assert metrics[f"{variant}/test_ndcg_10"] == pytest.approx(sum(seeds) / 2, abs=1e-3)  # seeds round to 4 digits
        assert metrics[f"{variant}/test_ndcg_10_ci_low"] <= metrics[f"{variant}/test_ndcg_10"]
        assert metrics[f"{variant}/test_hr_10_ci_high"] >= metrics[f"{variant}/test_hr_10"]
        assert metrics[f"{variant}/train_s_per_epoch"] > 0 and metrics[f"{variant}/parameters"] > 0
    assert "paired/recmamba_d_state_4/ndcg_10_diff_ci_low" in metrics

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ablation.csv", "ablation.json", "ablation_by_history_length.csv", "paired_vs_reference.csv"} <= artifacts
    assert {"ndcg_10_by_history_length.png", "quality_vs_cost.png"} <= artifacts
    folder = client.download_artifacts(parent.info.run_id, "ablation_by_history_length.csv", str(project_home))
    with open(folder, newline="") as handle:
        buckets = list(csv.DictReader(handle))
    assert {row["variant"] for row in buckets} >= set(VARIANTS)
    assert all(float(row["test_ndcg_10_ci_low"]) <= float(row["test_ndcg_10"]) for row in buckets)


def test_an_override_of_a_field_the_model_lacks_fails_before_training_naming_the_variant(project_home: Path):
    variants = {**VARIANTS, "recmamba_heads": {"model": "recmamba", "overrides": {"n_heads": 4}}}
    result = run_ablation({"variants": variants, "seeds": [1]})
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()
    assert "variant 'recmamba_heads': recmamba has no model field 'n_heads'" in message
    tracking = ProjectPaths.from_env().mlflow_tracking_uri
    assert mlflow.MlflowClient(tracking).get_experiment_by_name("synthetic") is None  # nothing trained, nothing logged


def test_a_bad_ablation_config_names_what_is_wrong():
    with pytest.raises(ValueError, match="variant 'lti': unknown model 'mamba3'"):
        AblationConfig(variants={"lti": {"model": "mamba3"}})
    with pytest.raises(ValueError, match="reference 'sasrec' is not a variant"):
        AblationConfig(variants=VARIANTS, reference="sasrec")
    with pytest.raises(ValueError, match=r"seeds must be a non-empty list of distinct seeds, got \[1, 1\]"):
        AblationConfig(variants=VARIANTS, seeds=[1, 1])
    with pytest.raises(ValueError, match="variant name 'most_popular' is not allowed"):
        AblationConfig(variants={"most_popular": {"model": "sasrec"}})
    with pytest.raises(ValueError, match=r"variant 'narrow' \(sasrec with \{'n_heads': 3\}\): d_model 64 is not"):
        AblationConfig(variants={"narrow": {"model": "sasrec", "overrides": {"n_heads": 3}}})
