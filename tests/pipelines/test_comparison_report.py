"""What the comparison says and what the model checks decide, from numbers as the training runs report them."""

import math

import dagster as dg

from pipelines.reporting.comparison import COLUMNS, Comparison, ModelSummary, headline, markdown_table, write_csv
from pipelines.training.checks import check_results


def summary(model: str, test: float, valid: float, converged: bool = True, **cost: float) -> ModelSummary:
    values = {column: math.nan for column in COLUMNS}
    values.update(test_ndcg_10=test, valid_ndcg_10=valid, train_s_per_epoch=10.0, inference_ms_per_target=2.0)
    values.update(peak_memory_mb=100.0, **cost)
    verdict = "converged: best epoch 2 of 3" if converged else "not converged: best epoch 3 of 3 is the last"
    return ModelSummary(model, f"run-{model}", values, {"len_02048_03072": test}, verdict)


def popularity(test: float) -> ModelSummary:
    values = {column: math.nan for column in COLUMNS} | {"test_ndcg_10": test}
    return ModelSummary("most_popular", "", values, is_baseline=True)


def test_headline_names_the_winner_its_margins_cost_and_unconverged_models():
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
    finite, beats, converged = check_results(metadata)
    assert not finite.passed and finite.metadata["not_finite"].value == "test_mrr_10"
    assert not beats.passed and beats.metadata["margin_over_best_baseline"].value == -0.01
    assert not converged.passed and converged.severity == dg.AssetCheckSeverity.WARN
