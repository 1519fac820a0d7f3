"""What the comparison says and what the model checks decide, from numbers and per-target results as the
training runs report them, and what the comparison asset writes from a real MLflow store."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.metric_names import (
    KIND_COMPARISON,
    KIND_TRAINING,
    KIND_TRAINING_SEED,
    PARAM_WARM_START,
    TAG_CONVERGENCE,
    TAG_KIND,
    TAG_MODEL,
    TAG_MODEL_URI,
    TAG_SPLIT,
    TARGET_RANKS_ARTIFACT,
    baseline_metric,
    baseline_ranks_artifact,
    cost_metric,
    final_metric,
)
from pipelines.paths import ProjectPaths
from pipelines.registry import CHAMPION, log_model_files, registered_name
from pipelines.reporting.assets import model_comparison
from pipelines.reporting.comparison import (
    COLUMNS,
    Comparison,
    ModelSummary,
    PerTargetResults,
    compare,
    download_per_target,
    with_per_target,
)
from pipelines.reporting.significance import Pairing
from pipelines.reporting.summary import SYNTHETIC_DATA, data_note, headline, verdict_label
from pipelines.reporting.tables import (
    comparison_metrics,
    markdown_table,
    paired_columns,
    paired_markdown,
    table_columns,
    write_csv,
)
from pipelines.resources import MlflowTracking
from pipelines.target_results import per_target
from pipelines.training.checks import check_results
from recmodels.data.split_data import write_split_export
from recmodels.evaluation.evaluate import TargetRanks
from recmodels.evaluation.stats import PairedDifference
from recmodels.models import build_model


def summary(model: str, test: float, valid: float, converged: bool = True, **cost: float) -> ModelSummary:
    values = {column: math.nan for column in COLUMNS}
    values.update(test_ndcg_10=test, valid_ndcg_10=valid, train_s_per_epoch=10.0, inference_ms_per_target=2.0)
    values.update(peak_memory_mb=100.0, **cost)
    verdict = "converged: best epoch 2 of 3" if converged else "not converged: best epoch 3 of 3 is the last"
    return ModelSummary(model, f"run-{model}", values, {"len_02048_03072": test}, verdict)


def popularity(test: float) -> ModelSummary:
    values = {column: math.nan for column in COLUMNS} | {"test_ndcg_10": test}
    return ModelSummary("most_popular", "", values, is_baseline=True)


def test_without_per_target_results_the_headline_gives_point_margins_and_says_so():
    comparison = Comparison(
        [summary("recmamba", 0.12, 0.11, train_s_per_epoch=5.0), summary("sasrec", 0.10, 0.10, converged=False)],
        [popularity(0.06)],
    )
    text = headline(comparison)
    assert (
        "**recmamba** wins on validation NDCG@10; test NDCG@10 0.1200, +20.0% vs sasrec, +100.0% vs most_popular"
        in text
    )
    assert "5 s/epoch to train, 2 ms/target to rank, peak 100 MB (the fastest to train)" in text
    assert "Not converged: sasrec" in text
    assert "These are point estimates: without per-target results there is no interval" in text


def test_table_and_csv_show_missing_values_as_blanks_never_nan(tmp_path):
    comparison = Comparison([summary("gru4rec", 0.05, 0.04)], [popularity(0.06)])
    table = markdown_table(comparison)
    assert "nan" not in table.lower() and "| most_popular | 0.0600 |" in table and "baseline" in table
    csv_text = write_csv(comparison, tmp_path / "comparison.csv").read_text()
    assert "nan" not in csv_text.lower() and "test_ndcg_10_len_02048_03072" in csv_text


def test_checks_fail_below_the_popularity_floor_and_warn_when_unconverged():
    metadata = {
        "valid_ndcg_10": 0.05,
        "test_ndcg_10": 0.05,
        "test_hr_10": 0.1,
        "test_mrr_10": dg.MetadataValue.float(float("nan")),
        "most_popular_test_ndcg_10": 0.06,
        "recent_popular_test_ndcg_10": 0.04,
        "converged": False,
        "convergence": "not converged: best epoch 3 of 3 is the last",
    }
    finite, beats, converged, *_ = check_results(metadata)
    assert not finite.passed and finite.metadata["not_finite"].value == "test_mrr_10"
    assert not beats.passed and beats.metadata["margin_over_best_baseline"].value == -0.01
    assert not converged.passed and converged.severity == dg.AssetCheckSeverity.WARN


def hits(per_user: np.ndarray, targets: int = 10) -> TargetRanks:
    """User u (1-based) has ``targets`` test targets: the first ``per_user[u - 1]`` ranked first, the others
    missed. Even users have short histories (positions 100+), odd users longer ones (200+)."""
    per_user = np.asarray(per_user)
    users = np.repeat(np.arange(1, len(per_user) + 1), targets)
    slot = np.tile(np.arange(targets), len(per_user))
    zeros = np.zeros(len(users), np.int64)
    positions = slot + np.where(users % 2 == 0, 100, 200)
    return TargetRanks(users, positions, zeros, zeros, np.where(slot < per_user[users - 1], 1, 100))


USERS = np.arange(1, 61)


def paired_comparison(hits_by_model: dict[str, np.ndarray], floor_hits: np.ndarray, **missing: str) -> Comparison:
    """Models in validation order (best first), each with its per-target results unless named in ``missing``."""
    found = {model: per_target(hits(per_user)) for model, per_user in hits_by_model.items() if model not in missing}
    found["most_popular"] = per_target(hits(floor_hits))
    models = [
        summary(model, found[model].values["ndcg_10"].mean() if model in found else 0.1, valid=0.3 - 0.01 * rank)
        for rank, model in enumerate(hits_by_model)
    ]
    floor = popularity(found["most_popular"].values["ndcg_10"].mean())
    return with_per_target(Comparison(models, [floor]), PerTargetResults(found, missing))


def test_the_summary_names_the_winner_when_the_paired_interval_excludes_zero():
    comparison = paired_comparison(
        {"recmamba": USERS % 5 + 1 + USERS % 3, "sasrec": USERS % 5, "gru4rec": USERS % 4}, np.zeros(60, int)
    )
    text = headline(comparison)
    assert text.startswith("**recmamba** wins: test NDCG@10 0.4000 [0.358, 0.442], +0.2000 [0.180, 0.220] vs sasrec")
    assert "over 600 targets of 60 users" in text
    assert "recmamba is above the popularity floor: +0.4000 [0.358, 0.442] vs most_popular" in text
    assert verdict_label(comparison) == "recmamba wins"
    assert "| sasrec | +0.2000 [0.180, 0.220] |" in paired_markdown(comparison)
    assert "| recmamba | 0.4000 [0.358, 0.442] |" in markdown_table(comparison)
    metrics = comparison_metrics(comparison)
    assert metrics["paired/sasrec/ndcg_10_diff"] == pytest.approx(0.2)
    assert metrics["paired/sasrec/ndcg_10_diff_ci_low"] > 0 and metrics["paired/most_popular/hr_10_p_value"] < 0.01
    assert metrics["recmamba/test_ndcg_10_ci_low"] < 0.4 < metrics["recmamba/test_ndcg_10_ci_high"]


def test_a_winner_among_unconverged_models_is_called_provisional_and_they_are_named():
    comparison = paired_comparison(
        {"recmamba": USERS % 5 + 1 + USERS % 3, "sasrec": USERS % 5, "gru4rec": USERS % 4}, np.zeros(60, int)
    )
    comparison.models[2] = dataclasses.replace(comparison.models[2], convergence="not converged: best epoch 3 of 3")
    text = headline(comparison)
    assert text.startswith("Provisionally, **recmamba** wins: test NDCG@10 0.4000 [0.358, 0.442]")
    assert "provisional because gru4rec did not converge, so more epochs may change the order." in text
    assert verdict_label(comparison) == "recmamba wins (provisional: not every model converged)"


def test_the_summary_says_tied_and_names_the_models_when_the_interval_includes_zero():
    rng = np.random.default_rng(0)
    draws = {model: rng.integers(0, 6, 60) for model in ("recmamba", "sasrec", "gru4rec")}
    comparison = paired_comparison(draws, rng.integers(0, 5, 60))
    text = headline(comparison)
    assert text.startswith("No winner: recmamba, gru4rec and sasrec are statistically tied on test NDCG@10")
    assert "(recmamba − gru4rec −0.0217 [−0.083, 0.042], p = 0.52, over 600 targets of 60 users)" in text
    assert "about 8.3x as many users (~500 instead of 60) would be needed to separate recmamba and gru4rec" in text
    assert "gru4rec scores higher on test, but within the noise." in text
    assert "recmamba is not distinguishable from the popularity floor" in text
    assert verdict_label(comparison) == "tied: recmamba, gru4rec and sasrec"
    assert paired_markdown(comparison).count("| tied |") == 3


def test_a_validation_champion_behind_on_test_is_reported_as_a_disagreement():
    comparison = paired_comparison({"recmamba": USERS % 5, "sasrec": USERS % 5 + 1 + USERS % 3}, np.zeros(60, int))
    text = headline(comparison)
    assert text.startswith(
        "Validation and test disagree: **recmamba** has the best validation NDCG@10 and stays the registered "
        "champion, but sasrec is ahead on test NDCG@10 by +0.2000 [0.180, 0.220]"
    )
    assert "| **sasrec ahead** |" in paired_markdown(comparison)


def pairing(model: str, estimate: float, half_width: float, is_baseline: bool = False) -> Pairing:
    """The champion minus ``model`` on both paired metrics, with a p-value that agrees with the interval."""
    difference = PairedDifference(
        estimate, estimate - half_width, estimate + half_width, 0.001 if abs(estimate) > half_width else 0.5, 1000, 100
    )
    return Pairing(model, is_baseline, {"ndcg_10": difference, "hr_10": difference})


def test_every_model_and_baseline_ahead_of_the_champion_is_named_though_a_noisier_one_scores_higher():
    """linrec and most_popular have the best point estimates on test, within the noise; sasrec, gru4rec and
    recent_popular are ahead of the champion beyond it."""
    models = [summary("recmamba", 0.10, 0.3), summary("linrec", 0.16, 0.2), summary("sasrec", 0.15, 0.1)]
    models.append(summary("gru4rec", 0.13, 0.05))
    pairings = [pairing("linrec", -0.06, 0.08), pairing("sasrec", -0.05, 0.02), pairing("gru4rec", -0.03, 0.01)]
    pairings += [pairing("most_popular", -0.04, 0.06, True), pairing("recent_popular", -0.02, 0.01, True)]
    comparison = Comparison(models, [popularity(0.14)], pairings, num_targets=1000, num_users=100)
    assert verdict_label(comparison) == "validation and test disagree: sasrec and gru4rec ahead of recmamba on test"
    text = headline(comparison)
    assert text.startswith(
        "Validation and test disagree: **recmamba** has the best validation NDCG@10 and stays the registered "
        "champion, but sasrec is ahead on test NDCG@10 by +0.0500 [0.030, 0.070]"
    )
    assert "gru4rec is also ahead of recmamba beyond the noise. recmamba is statistically tied with linrec." in text
    assert "recmamba is below the popularity floor: recent_popular is ahead by +0.0200 [0.010, 0.030]" in text


def test_a_model_without_per_target_results_keeps_its_point_numbers_with_a_note():
    comparison = paired_comparison(
        {"recmamba": USERS % 5 + 2, "sasrec": USERS % 5, "gru4rec": USERS % 4},
        np.zeros(60, int),
        gru4rec="run 1a2b3c4d has no per_target/test_ranks.parquet: trained before per-target results",
    )
    text = headline(comparison)
    assert text.startswith("**recmamba** wins among the models with per-target results:")
    assert (
        "Point numbers only, no interval and no paired test: gru4rec (run 1a2b3c4d has no "
        "per_target/test_ranks.parquet: trained before per-target results)." in text
    )
    assert "| gru4rec | 0.1000 |" in markdown_table(comparison)
    assert [p.model for p in comparison.pairings] == ["sasrec", "most_popular"]


def test_a_champion_without_per_target_results_falls_back_to_point_numbers():
    comparison = paired_comparison(
        {"recmamba": USERS % 5 + 2, "sasrec": USERS % 5}, np.zeros(60, int), recmamba="run 0000aaaa has no ..."
    )
    text = headline(comparison)
    assert text.startswith("**recmamba** wins on validation NDCG@10; test NDCG@10 0.1000")
    assert "These are point estimates" in text and "Point numbers only" in text
    assert not comparison.pairings and verdict_label(comparison).startswith("point estimates only")
    assert paired_markdown(comparison) == ""


def test_several_seeds_show_their_spread_beside_the_interval():
    seeds = [USERS % 5 + extra for extra in (1, 2, 3)]
    ranks = [hits(per_user) for per_user in seeds]
    merged = TargetRanks(*(np.concatenate([getattr(r, name) for r in ranks]) for name in TargetRanks.COLUMNS))
    champion = per_target(merged, np.repeat([0, 1, 2], len(ranks[0].rank)))
    found = {"recmamba": champion, "sasrec": per_target(hits(USERS % 5))}
    models = [summary("recmamba", champion.values["ndcg_10"].mean(), 0.3), summary("sasrec", 0.1, 0.2)]
    comparison = with_per_target(Comparison(models, []), PerTargetResults(found))
    assert "test NDCG@10 0.4000 [0.365, 0.435] (0.4000 ± 0.1000 over 3 seeds)" in headline(comparison)
    table = markdown_table(comparison)
    assert "seed std (seeds)" in table and "± 0.1000 (3)" in table
    # averaged per target before pairing: the champion is ahead of sasrec by exactly two hits in ten per user
    assert comparison.pairings[0].headline.estimate == pytest.approx(0.2)


DATASET = "handmade"


def log_training_run(
    client: mlflow.MlflowClient,
    model: str,
    split: str,
    ranks: TargetRanks | None,
    valid: float,
    seeds: int = 1,
    baselines: dict[str, TargetRanks] | None = None,
    params: dict[str, object] | None = None,
) -> None:
    """A finished training run as the training side logs it: tags, params, metrics, model and per-target
    artifacts (``ranks`` repeated once per seed; a multi-seed run as the parent of its seeds' runs)."""
    tags = {TAG_MODEL: model, TAG_KIND: KIND_TRAINING, TAG_SPLIT: split, TAG_CONVERGENCE: "converged: best epoch 2"}
    experiment_id = MlflowTracking().experiment_id(DATASET)
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run, tempfile.TemporaryDirectory() as folder:
        mlflow.log_params(params or {})
        mlflow.set_tag(TAG_MODEL_URI, log_model_files(client, build_model(model, 30, d_model=8, max_len=8), model))
        test = 0.1 if ranks is None else float(per_target(ranks).values["ndcg_10"].mean())
        metrics = {final_metric("test", "ndcg_10"): test, final_metric("valid", "ndcg_10"): valid, "num_seeds": seeds}
        metrics |= {cost_metric("train_seconds_per_epoch"): 3.0, cost_metric("inference_ms_per_target"): 0.5}
        for name, floor in (baselines or {}).items():
            metrics[baseline_metric(name, "ndcg_10")] = float(per_target(floor).values["ndcg_10"].mean())
        mlflow.log_metrics(metrics)
        tables = {} if ranks is None else {TARGET_RANKS_ARTIFACT: (ranks, list(range(seeds)))}
        tables |= {baseline_ranks_artifact(name): (r, [-1]) for name, r in (baselines or {}).items()}
        for artifact, (target_ranks, seed_list) in tables.items():
            table = pa.concat_tables(
                target_ranks.to_table().append_column("seed", pa.array(np.full(len(target_ranks.rank), seed)))
                for seed in seed_list
            )
            pq.write_table(table, Path(folder) / Path(artifact).name)
            mlflow.log_artifact(str(Path(folder) / Path(artifact).name), Path(artifact).parent.as_posix())
    if seeds > 1:  # a seed's own run: the comparison must never pick it up
        child_tags = {**tags, TAG_KIND: KIND_TRAINING_SEED, "mlflow.parentRunId": run.info.run_id}
        with mlflow.start_run(experiment_id=experiment_id, tags=child_tags):
            mlflow.log_metrics({final_metric("valid", "ndcg_10"): 0.99})


@pytest.fixture
def split_with_runs(project_home: Path) -> tuple[dg.DagsterInstance, str]:
    """An export, its ``splits`` materialization, and three models' runs: recmamba (3 seeds) and sasrec with
    per-target results, gru4rec from before they were logged."""
    paths = ProjectPaths.from_env()
    paths.mlflow.mkdir(parents=True)
    histories = [[1, 2, 3, 4], [2, 3, 4, 5]]
    export = write_split_export(paths.export_versions(DATASET) / "v1", histories, [[0, 0, 1, 2]] * 2, None, 30, DATASET)
    fingerprint = f"{DATASET}-2-8"  # write_split_export's fingerprint of these histories
    mlflow.set_tracking_uri(paths.mlflow_tracking_uri)
    client = mlflow.MlflowClient(paths.mlflow_tracking_uri)
    floors = {"most_popular": hits(np.zeros(60, int), 8), "recent_popular": hits(USERS % 2, 8)}
    log_training_run(client, "gru4rec", fingerprint, None, valid=0.1)
    log_training_run(client, "sasrec", fingerprint, hits(USERS % 5, 8), valid=0.2)
    log_training_run(client, "recmamba", fingerprint, hits(USERS % 5 + 2, 8), valid=0.3, seeds=3, baselines=floors)
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization("splits", metadata={"export_path": str(export)}))
    yield instance, fingerprint
    instance.dispose()


def test_the_comparison_reads_per_target_results_from_mlflow_and_falls_back_for_older_runs(split_with_runs, tmp_path):
    _, fingerprint = split_with_runs
    tracking = MlflowTracking()
    runs = tracking.runs_of(DATASET, {TAG_SPLIT: fingerprint, TAG_KIND: KIND_TRAINING}, status="FINISHED")
    results = download_per_target(tracking.client, runs, tmp_path)
    assert set(results.found) == {"recmamba", "sasrec", "most_popular", "recent_popular"}
    assert results.found["recmamba"].num_seeds == 3 and results.found["recmamba"].num_targets == 480
    assert "has no per_target/test_ranks.parquet" in results.missing["gru4rec"]
    comparison = compare(runs, results)
    assert [s.model for s in comparison.models] == ["recmamba", "sasrec", "gru4rec"]
    text = headline(comparison)
    assert text.startswith("**recmamba** wins among the models with per-target results: test NDCG@10 0.5000")
    assert "(0.5000 ± 0.0000 over 3 seeds), +0.2500 [" in text and "over 480 targets of 60 users" in text
    assert "no paired test: gru4rec (run " in text
    columns = paired_columns(comparison)
    assert columns["model"] == ["sasrec", "sasrec", "most_popular", "most_popular", "recent_popular", "recent_popular"]
    assert all(columns["significant"]) and set(columns["num_users"]) == {60}
    assert set(comparison.models[0].bucket_ci) == {"len_00000_00128", "len_00128_00256"}


def test_the_comparison_asset_logs_intervals_pairs_and_the_verdict(split_with_runs):
    instance, _ = split_with_runs
    result = dg.materialize([model_comparison], instance=instance, resources={"mlflow_tracking": MlflowTracking()})
    metadata = result.asset_materializations_for_node("model_comparison")[0].metadata
    assert metadata["verdict"].value == "recmamba wins"
    assert "| sasrec | +0.2500 [" in metadata["paired_comparison"].value
    assert "**recmamba** wins among the models with per-target results" in metadata["summary"].value
    protocol = metadata["target_protocol"].value
    assert protocol.endswith("split, all") and f"Test targets: {protocol}." in metadata["summary"].value
    client = MlflowTracking().client
    assert client.get_model_version_by_alias(registered_name(DATASET), CHAMPION).tags["model"] == "recmamba"
    run = client.search_runs(
        [client.get_experiment_by_name(DATASET).experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_COMPARISON}'"
    )[0]
    for key in ("recmamba/test_ndcg_10_ci_low", "recmamba/test_ndcg_10_seed_std", "paired/sasrec/ndcg_10_diff_ci_high"):
        assert key in run.data.metrics, key
    assert run.data.metrics["paired/most_popular/ndcg_10_p_value"] < 0.01
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"paired_comparison.csv", "paired_comparison.json", "comparison.csv", "quality_vs_cost.png"} <= artifacts
    assert "| recmamba − |" in run.data.tags["mlflow.note.content"]
    csv_text = Path(client.download_artifacts(run.info.run_id, "comparison.csv")).read_text()
    assert "test_ndcg_10_ci_low" in csv_text and "nan" not in csv_text.lower()


def test_the_comparison_shows_warm_starts_and_flags_models_trained_on_other_budgets(project_home):
    ProjectPaths.from_env().mlflow.mkdir()
    tracking = MlflowTracking()
    mlflow.set_tracking_uri(tracking.resolved_tracking_uri)
    same = {"train.patience": 2, "model.max_len": 8, "train.min_improvement": 0.01}
    cold = {"train.epochs": 3, PARAM_WARM_START: "none", **same}
    other = {**cold, "model.max_len": 16, "train.min_improvement": 0.0}
    log_training_run(tracking.client, "sasrec", "split", None, 0.2, params=other)
    log_training_run(tracking.client, "gru4rec", "split", None, 0.1, params=cold)
    warm = {"train.epochs": 5, PARAM_WARM_START: "handmade-recmamba v2", **same}
    log_training_run(tracking.client, "recmamba", "split", None, 0.3, params=warm)
    comparison = compare(tracking.runs_of(DATASET, {TAG_SPLIT: "split"}))
    assert (
        "Training budgets differ, so the ranking may reflect them rather than the architectures: "
        "epochs 5 (recmamba) vs 3 (sasrec, gru4rec); max_len 8 (recmamba, gru4rec) vs 16 (sasrec); "
        "min improvement 0.01 (recmamba, gru4rec) vs 0.0 (sasrec); "
        "warm start handmade-recmamba v2 (recmamba) vs none (sasrec, gru4rec)." in headline(comparison)
    )
    table = markdown_table(comparison)
    assert "| warm start | converged |" in table and "| handmade-recmamba v2 | yes |" in table and "| none |" in table
    assert table_columns(comparison)["warm_start"] == ["handmade-recmamba v2", "none", "none"]


def test_only_the_synthetic_source_gets_the_note_on_what_its_data_is():
    assert data_note("synthetic") == SYNTHETIC_DATA and "no claim about real data" in SYNTHETIC_DATA
    assert data_note("kuairand") == data_note("") == ""
