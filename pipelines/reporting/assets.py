"""The comparison of all models trained on the current split, and the registry versions that follow from it."""

import tempfile
from pathlib import Path

import dagster as dg
import mlflow

from pipelines.lineage import upstream
from pipelines.metric_names import KIND_COMPARISON, KIND_TRAINING, TAG_DATASET, TAG_KIND, TAG_SPLIT
from pipelines.model_names import MODEL_NAMES, model_asset_name
from pipelines.registry import CHAMPION, CURRENT, register_version, registered_name
from pipelines.reporting.comparison import Comparison, ModelSummary, compare, download_per_target
from pipelines.reporting.plots import markdown_image, plot_bucket_ndcg, plot_peak_memory, plot_quality_vs_cost
from pipelines.reporting.summary import data_note, headline, verdict_label
from pipelines.reporting.tables import (
    comparison_metrics,
    markdown_table,
    paired_columns,
    paired_markdown,
    table_columns,
    write_csv,
    write_paired_csv,
)
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit, current_split
from recmodels.data.split_data import target_protocol

PLOTS = {
    "quality_vs_cost": ("quality_vs_cost.png", plot_quality_vs_cost),
    "ndcg_10_by_history_length": ("ndcg_10_by_history_length.png", plot_bucket_ndcg),
    "peak_memory": ("peak_memory.png", plot_peak_memory),
}


@dg.asset(
    deps=[model_asset_name(name) for name in MODEL_NAMES],
    group_name="reporting",
    kinds={"mlflow"},
    description="Quality next to training and inference cost for every model of the current split, against "
    "popularity baselines; moves the registry aliases (`champion` on `<dataset>-best`, `current` per architecture).",
)
def model_comparison(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking) -> dg.MaterializeResult:
    split = current_split(context)
    runs = mlflow_tracking.runs_of(
        split.dataset, {TAG_SPLIT: split.fingerprint, TAG_KIND: KIND_TRAINING}, status="FINISHED"
    )
    if not runs:
        raise dg.Failure(f"No finished training run in MLflow for split {split.fingerprint} of {split.dataset}.")
    with tempfile.TemporaryDirectory() as downloads:
        per_target = download_per_target(mlflow_tracking.client, runs, Path(downloads))
    comparison = compare(runs, per_target)
    protocol = f"{split.metadata.get('split_mode', 'unknown')} split, {target_protocol(split.metadata)}"
    summary, table = headline(comparison, protocol), markdown_table(comparison)
    data = data_note(data_source(context, split.dataset))
    paired = paired_markdown(comparison)
    verdict = verdict_label(comparison)
    report = "\n\n".join(part for part in (summary, data, table, paired) if part)
    tags = {TAG_KIND: KIND_COMPARISON, TAG_SPLIT: split.fingerprint, TAG_DATASET: split.dataset}
    with (
        mlflow_tracking.materialization_run(context, split.dataset, "comparison", tags) as run,
        tempfile.TemporaryDirectory() as folder,
    ):
        champion = comparison.champion
        mlflow.log_params(
            {
                "dataset": split.dataset,
                "split_fingerprint": split.fingerprint[:12],
                "models": ", ".join(s.model for s in comparison.models),
                "baselines": ", ".join(s.model for s in comparison.baselines),
                "champion": champion.model,
                "target_protocol": protocol,
                "chosen_on": "valid NDCG@10",
            }
        )
        mlflow.log_metrics(comparison_metrics(comparison))
        mlflow.log_table(table_columns(comparison), artifact_file="comparison_table.json")
        if comparison.pairings:
            mlflow.log_table(paired_columns(comparison), artifact_file="paired_comparison.json")
        mlflow.set_tags({"champion.model": champion.model, "champion.run_id": champion.run_id, "verdict": verdict})
        mlflow.set_tag("mlflow.note.content", report)
        images = _write_artifacts(comparison, Path(folder))
        mlflow.log_artifacts(folder)
        version = _register(mlflow_tracking.client, split, comparison)
    context.log.info(f"Comparison on split {split.fingerprint[:12]} of {split.dataset}:\n{report}")
    return dg.MaterializeResult(
        metadata={
            "verdict": verdict,
            "summary": dg.MetadataValue.md(summary),
            **({"data": data} if data else {}),
            "comparison": dg.MetadataValue.md(table),
            **({"paired_comparison": dg.MetadataValue.md(paired)} if paired else {}),
            **images,
            "champion": champion.model,
            "target_protocol": protocol,
            "champion_registered_model": f"{registered_name(split.dataset)}@{CHAMPION} (v{version})",
            "models_compared": len(comparison.models),
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(run)),
            "mlflow_training_runs": dg.MetadataValue.url(mlflow_tracking.training_runs_url(split.dataset)),
        }
    )


def _write_artifacts(comparison: Comparison, folder: Path) -> dict[str, dg.MetadataValue]:
    """CSVs and plots into ``folder``; the plots also as Markdown images for the asset page."""
    write_csv(comparison, folder / "comparison.csv")
    if comparison.pairings:
        write_paired_csv(comparison, folder / "paired_comparison.csv")
    images = {}
    for key, (file_name, plot) in PLOTS.items():
        path = plot(comparison, folder / file_name)
        images[f"plot_{key}"] = dg.MetadataValue.md(markdown_image(path, key.replace("_", " ")))
    return images


def _register(client: mlflow.MlflowClient, split: CurrentSplit, comparison: Comparison) -> str:
    """``current`` on each architecture's newest version, ``champion`` on the winner under <dataset>-best;
    each version says what it is (architecture, split, metrics, convergence)."""
    for summary in comparison.models:
        name = registered_name(split.dataset, summary.model)
        register_version(client, name, summary.run_id, CURRENT, _describe(summary, split), _tags(summary, split))
        client.update_registered_model(name, description=f"{summary.model} trained on dataset {split.dataset}.")
    champion = comparison.champion
    best = registered_name(split.dataset)
    description = f"Champion of {split.dataset}, chosen on validation NDCG@10. {_describe(champion, split)}"
    version = register_version(client, best, champion.run_id, CHAMPION, description, _tags(champion, split))
    client.update_registered_model(
        best,
        description=f"The best model of dataset {split.dataset} at each comparison; the version tag `model` says "
        f"which architecture it is. Serve `models:/{best}@{CHAMPION}`.",
    )
    return version


def _describe(summary: ModelSummary, split: CurrentSplit) -> str:
    values = summary.values
    return (
        f"{summary.model} on split {split.fingerprint[:12]}: test NDCG@10 {values['test_ndcg_10']:.4f}, "
        f"valid NDCG@10 {values['valid_ndcg_10']:.4f}; {summary.convergence or 'convergence unknown'}."
    )


def data_source(context: dg.AssetExecutionContext, dataset: str) -> str:
    """The source (``synthetic``, ``kuairand``, ...) of the raw_events materialization behind ``dataset``'s split;
    empty when raw_events was last materialized for another dataset (or before it recorded its source)."""
    try:
        raw = upstream(context, "raw_events").metadata
    except dg.Failure:  # the split came from elsewhere (never materialized here): nothing to say about its source
        return ""
    return str(raw.get("source", "")) if raw.get("dataset") == dataset else ""


def _tags(summary: ModelSummary, split: CurrentSplit) -> dict[str, str]:
    return {
        "model": summary.model,
        "dataset": split.dataset,
        "split_fingerprint": split.fingerprint[:12],
        "test_ndcg_10": f"{summary.values['test_ndcg_10']:.4f}",
        "converged": str(summary.converged).lower(),
        "mlflow_run_id": summary.run_id,
    }
