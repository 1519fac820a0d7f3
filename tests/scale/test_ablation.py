"""The ablation trains every variant at every seed through the real worker, each point a child of one parent
run that holds every variant's quality with its interval (overall and per history-length bucket), its paired
difference with the reference variant and its cost; a variant that changes a field its model does not have
fails before anything trains, naming the variant and the field."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

from pipelines.metric_names import TAG_KIND, TARGET_RANKS_ARTIFACT, baseline_ranks_artifact
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.sweep.ablation import VariantPoints, fold, markdown_table, summary_text, variant_columns
from pipelines.sweep.assets import KIND_ABLATION, KIND_ABLATION_POINT, TAG_SEED, TAG_VARIANT, ablation
from pipelines.sweep.config import AblationConfig, Variant
from pipelines.sweep.points import OK, OUT_OF_MEMORY, TAG_STATUS, TIMED_OUT, Point, PointResult
from pipelines.training.per_target import BASELINE_SEED, log_table, ranks_table
from recmodels.evaluation.baselines import BASELINES
from recmodels.evaluation.evaluate import TargetRanks
from tests.data.conftest import TINY, materialize

TINY_TRAIN = {"epochs": 1, "batch_size": 64, "eval_max_targets": 50}
# Any field of the model config can be changed; RecMamba's state size stands in for selective / d_conv here.
VARIANTS = {"recmamba": {"model": "recmamba"}, "recmamba_lti": {"model": "recmamba", "overrides": {"selective": False}}}


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
        and "| recmamba_lti | recmamba | selective=false | 2 | 0." in table
    )
    assert "recmamba_lti: recmamba minus recmamba_lti on NDCG@10" in metadata["summary"].value

    client = mlflow.MlflowClient(ProjectPaths.from_env().mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("synthetic").experiment_id
    [parent] = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_ABLATION}'")
    points = client.search_runs([experiment], filter_string=f"tags.`{TAG_KIND}` = '{KIND_ABLATION_POINT}'")
    assert sorted((run.data.tags[TAG_VARIANT], run.data.tags[TAG_SEED]) for run in points) == [
        ("recmamba", "1"), ("recmamba", "2"), ("recmamba_lti", "1"), ("recmamba_lti", "2"),
    ]  # fmt: skip
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in points)
    assert all(run.info.status == "FINISHED" and run.data.tags[TAG_STATUS] == "ok" for run in points)
    assert {run.data.params["model.selective"] for run in points if run.data.tags[TAG_VARIANT] != "recmamba"} == {
        "False"
    }
    assert {run.data.params["train.epochs"] for run in points} == {"1"}  # one budget for all

    metrics = parent.data.metrics
    for variant in VARIANTS:
        seeds = [run.data.metrics["test/ndcg_10"] for run in points if run.data.tags[TAG_VARIANT] == variant]
        assert metrics[f"{variant}/test_ndcg_10"] == pytest.approx(sum(seeds) / 2, abs=1e-3)  # seeds round to 4 digits
        assert metrics[f"{variant}/test_ndcg_10_ci_low"] <= metrics[f"{variant}/test_ndcg_10"]
        assert metrics[f"{variant}/test_hr_10_ci_high"] >= metrics[f"{variant}/test_hr_10"]
        assert metrics[f"{variant}/train_s_per_epoch"] > 0 and metrics[f"{variant}/parameters"] > 0
    assert "paired/recmamba_lti/ndcg_10_diff_ci_low" in metrics

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


def ranks(seed: int) -> TargetRanks:
    """Three test targets for each of six users, at history lengths of two buckets, ranked at random."""
    users, positions = np.repeat(np.arange(1, 7), 3), np.tile([100, 200, 300], 6)
    rank = np.random.default_rng(seed).integers(1, 30, len(users))
    return TargetRanks(users, positions, np.ones_like(users), positions * 1000, rank)


def logged_point(client: mlflow.MlflowClient, experiment: str, variant: str, seed: int, status: str) -> PointResult:
    """A point's run as the worker leaves it: metrics and per-target ranks when it trained, nothing otherwise."""
    run_id = client.create_run(experiment, run_name=f"{variant}-seed{seed}").info.run_id
    if status == OK:
        with mlflow.start_run(run_id=run_id):
            ranked = ranks(seed + len(variant))
            mlflow.log_metrics({"test/ndcg_10": 0.1, "cost/train_seconds_per_epoch": 2.0, "cost/num_parameters": 99})
            log_table(ranks_table(ranked, seed), TARGET_RANKS_ARTIFACT)
            for name in BASELINES:
                log_table(ranks_table(ranks(0), BASELINE_SEED), baseline_ranks_artifact(name))
    point = Point(f"{variant}-seed{seed}", "gru4rec", {"train": {"seed": seed}}, {TAG_VARIANT: variant})
    return PointResult(point, status, client.get_run(run_id))


def test_a_variant_that_trained_in_no_seed_stays_a_row_and_only_the_reference_is_paired(project_home: Path):
    mlflow.set_tracking_uri(ProjectPaths.from_env().mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("folded", artifact_location=(project_home / "artifacts").as_uri())
    outcomes = {"lti": (OUT_OF_MEMORY, TIMED_OUT), "full": (OK, OK), "noconv": (OK, "failed")}
    variants = []
    for name, ended in outcomes.items():
        points = [logged_point(client, experiment, name, seed, end) for seed, end in zip((1, 2), ended, strict=True)]
        variants.append(VariantPoints(name, Variant(model="gru4rec"), points))
    result = fold(client, variants, project_home / "downloads")

    assert [s.model for s in result.comparison.models] == ["full", "noconv"]  # trained variants only
    assert result.comparison.pairings == []  # the reference lti did not train: full is not paired in its place
    assert "The reference lti trained in no seed" in summary_text(result)
    assert "- lti: 0 of 2 seeds trained (seed 1 out_of_memory, seed 2 timed_out)." in summary_text(result)
    table = markdown_table(result)
    assert "| lti | gru4rec | – | 0 of 2 | – | – |" in table and "| noconv | gru4rec | – | 1 of 2 | 0." in table
    columns = variant_columns(result)
    assert columns["variant"][:3] == ["lti", "full", "noconv"]
    assert columns["status"][2] == "1 of 2 seeds trained (seed 2 failed)" and columns["test_ndcg_10"][0] == ""
    both = [ranks(seed + len("full")).rank for seed in (1, 2)]
    ndcg = np.mean([np.where(r <= 10, 1 / np.log2(r + 1), 0.0) for r in both], axis=0).mean()
    assert columns["test_ndcg_10"][1] == pytest.approx(ndcg)  # each target averaged over seeds, then over targets
