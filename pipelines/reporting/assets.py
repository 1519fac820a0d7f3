"""The comparison of all models trained on the current split, and the registry's champion that follows from it."""

import tempfile
from pathlib import Path

import dagster as dg
import mlflow

from pipelines.metric_names import KIND_COMPARISON, KIND_TRAINING, TAG_DATASET, TAG_KIND, TAG_SPLIT
from pipelines.model_names import MODEL_NAMES, model_asset_name
from pipelines.registry import register_champion, registered_name
from pipelines.reporting.comparison import (
    latest_per_model,
    markdown_table,
    plot_bucket_ndcg,
    plot_peak_memory,
    plot_quality_vs_cost,
    write_csv,
)
from pipelines.resources import MlflowTracking
from pipelines.split_source import current_split


@dg.asset(
    deps=[model_asset_name(name) for name in MODEL_NAMES],
    group_name="reporting",
    kinds={"mlflow"},
    description="Quality next to cost for every model of the current split; registers the champion.",
)
def model_comparison(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking) -> dg.MaterializeResult:
    split = current_split(context)
    runs = mlflow_tracking.runs_of(
        split.dataset, {TAG_SPLIT: split.fingerprint, TAG_KIND: KIND_TRAINING}, status="FINISHED"
    )
    summaries = latest_per_model(runs)
    if not summaries:
        raise dg.Failure(f"No finished training run in MLflow for split {split.fingerprint} of {split.dataset}.")
    table = markdown_table(summaries)
    tags = {TAG_KIND: KIND_COMPARISON, TAG_SPLIT: split.fingerprint, TAG_DATASET: split.dataset}
    with mlflow_tracking.materialization_run(context, split.dataset, "comparison", tags) as run:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            write_csv(summaries, out / "comparison.csv")
            plot_quality_vs_cost(summaries, out / "quality_vs_training_cost.png")
            plot_peak_memory(summaries, out / "peak_memory.png")
            plot_bucket_ndcg(summaries, out / "ndcg_10_by_history_length.png")
            mlflow.log_artifacts(folder)
        # Each model type's freshest run becomes its champion (the start of a warm-started refresh) ...
        for summary in summaries:
            register_champion(mlflow_tracking.client, registered_name(split.dataset, summary.model), summary.run_id)
        # ... and the best by validation NDCG@10 becomes the dataset's overall champion.
        best = summaries[0]
        version = register_champion(mlflow_tracking.client, registered_name(split.dataset), best.run_id)
        mlflow.set_tags({"champion.model": best.model, "champion.run_id": best.run_id})
    context.log.info(f"Comparison on split {split.fingerprint[:12]} of {split.dataset}:\n{table}")
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(table),
            "champion": best.model,
            "champion_registered_model": f"{registered_name(split.dataset)} v{version}",
            "models_compared": len(summaries),
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(run)),
        }
    )
