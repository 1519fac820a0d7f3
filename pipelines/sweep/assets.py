"""The sweeps: many trainings on the current split with one budget, each point an MLflow run of its own (a
child of the sweep's run) trained by the training worker over Dagster Pipes (``pipelines/sweep/points.py``).

- ``length_sweep``: every model at every window length (max_len), with the same seed; the sweep's run gets
  the table and the plots of quality and cost against the window length.
- ``ablation``: named variants (an architecture with any of its model-config fields changed) at every seed;
  the ablation's run gets each variant's quality with intervals, overall and per history-length bucket, its
  paired difference with the reference variant, and its cost (``pipelines/sweep/ablation.py``).
"""

import json
import tempfile
from pathlib import Path

import dagster as dg
import mlflow

from pipelines.metric_names import TAG_DATASET, TAG_KIND, TAG_SPLIT
from pipelines.model_names import TRAINING_TAG
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit, current_split
from pipelines.sweep.ablation import VariantPoints, fold, log_result
from pipelines.sweep.config import AblationConfig, LengthSweepConfig, SweepBudget
from pipelines.sweep.points import OK, Point, SweepPoints
from pipelines.sweep.results import SweepRow, markdown_table, plot_against_length, write_csv
from pipelines.training.params import split_params
from recmodels.training.config import flatten
from recmodels.training.warmup import warm_kernel_cache

KIND_SWEEP, KIND_POINT = "length_sweep", "length_sweep_point"  # not "training": the comparison ignores them
KIND_ABLATION, KIND_ABLATION_POINT = "ablation", "ablation_point"
TAG_MAX_LEN = "recmamba.max_len"
TAG_VARIANT, TAG_SEED = "recmamba.variant", "recmamba.seed"
QUALITY = {"test NDCG@10": "test_ndcg_10", "test HR@10": "test_hr_10"}
COST = {"seconds per epoch": "s_per_epoch", "peak memory (MB)": "peak_memory_mb", "events per second": "events_per_s"}


@dg.asset(
    deps=["splits"],
    group_name="sweep",
    kinds={"pytorch", "mlflow"},
    op_tags=TRAINING_TAG,
    description="Quality and cost of each model at each training window length (max_len) on the current split.",
)
def length_sweep(
    context: dg.AssetExecutionContext,
    config: LengthSweepConfig,
    mlflow_tracking: MlflowTracking,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    split = current_split(context)
    points = [
        Point(f"{name}-L{max_len}", name, config.run_config(name, max_len).model_dump(), {TAG_MAX_LEN: str(max_len)})
        for name in config.models
        for max_len in config.max_lens
    ]
    warm_kernel_cache()  # compile once, outside every measured training process
    tags = {TAG_KIND: KIND_SWEEP, TAG_DATASET: split.dataset, TAG_SPLIT: split.fingerprint}
    with (
        mlflow_tracking.materialization_run(context, split.dataset, "length_sweep", tags) as parent,
        tempfile.TemporaryDirectory(prefix="length-sweep-") as scratch,
    ):
        mlflow.log_params(
            {
                "sweep.models": ",".join(config.models),
                "sweep.max_lens": ",".join(map(str, config.max_lens)),
                "sweep.timeout_seconds": config.timeout_seconds,
                **flatten({"train": config.train.model_dump()}),
            }
        )
        sweep = _sweep_points(context, pipes_subprocess_client, mlflow_tracking, split, parent, config, KIND_POINT)
        rows = [SweepRow.of(result) for result in sweep.train_all(points, Path(scratch) / "points")]
        table = _log_length_results(rows, Path(scratch))
        if not any(row.status == OK for row in rows):
            raise dg.Failure(f"No point of the length sweep trained: {rows[0].status}, {rows[0].error}")
    context.log.info(f"Length sweep on split {split.fingerprint[:12]} of {split.dataset}:\n{table}")
    return dg.MaterializeResult(
        metadata={
            "sweep": dg.MetadataValue.md(table),
            "points": len(rows),
            "points_ok": sum(row.status == OK for row in rows),
            "split_fingerprint": split.fingerprint,
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(parent)),
        }
    )


@dg.asset(
    deps=["splits"],
    group_name="sweep",
    kinds={"pytorch", "mlflow"},
    op_tags=TRAINING_TAG,
    description="Named variants of the models (any model-config field changed) trained at the same seeds, split "
    "and budget: NDCG@10 and HR@10 with intervals, overall and per history length, each paired with the "
    "reference variant, and the cost of each.",
)
def ablation(
    context: dg.AssetExecutionContext,
    config: AblationConfig,
    mlflow_tracking: MlflowTracking,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    split = current_split(context)
    names = [config.reference_variant, *(name for name in config.variants if name != config.reference_variant)]
    # Seed by seed, every variant within a seed: a sweep stopped half-way has every variant at some seeds.
    points = [
        Point(
            f"{name}-seed{seed}",
            config.variants[name].model,
            config.run_config(name, seed).model_dump(),
            {TAG_VARIANT: name, TAG_SEED: str(seed)},
        )
        for seed in config.seeds
        for name in names
    ]
    warm_kernel_cache()  # compile once, outside every measured training process
    tags = {TAG_KIND: KIND_ABLATION, TAG_DATASET: split.dataset, TAG_SPLIT: split.fingerprint}
    with (
        mlflow_tracking.materialization_run(context, split.dataset, "ablation", tags) as parent,
        tempfile.TemporaryDirectory(prefix="ablation-") as scratch,
    ):
        mlflow.log_params(_ablation_params(config, names, split))
        sweep = _sweep_points(
            context, pipes_subprocess_client, mlflow_tracking, split, parent, config, KIND_ABLATION_POINT
        )
        results = sweep.train_all(points, Path(scratch) / "points")
        variants = [
            VariantPoints(name, config.variants[name], [r for r in results if r.point.tags[TAG_VARIANT] == name])
            for name in names
        ]
        if not any(result.ok for result in results):
            raise dg.Failure(f"No point of the ablation trained: {results[0].status}, {results[0].error}")
        downloads, artifacts = Path(scratch) / "downloads", Path(scratch) / "artifacts"
        artifacts.mkdir()
        ablated = fold(mlflow_tracking.client, variants, downloads)
        metadata = log_result(ablated, artifacts)
    context.log.info(f"Ablation on split {split.fingerprint[:12]} of {split.dataset}:\n{metadata['ablation'].value}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "points": len(results),
            "points_ok": sum(result.ok for result in results),
            "split_fingerprint": split.fingerprint,
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(parent)),
        }
    )


def _sweep_points(
    context: dg.AssetExecutionContext,
    pipes: dg.PipesSubprocessClient,
    tracking: MlflowTracking,
    split: CurrentSplit,
    parent: mlflow.ActiveRun,
    config: SweepBudget,
    kind: str,
) -> SweepPoints:
    """The sweep's points share its parent run, split, time limit and a checkpoint folder keyed by its config."""
    sweep = context.asset_key.to_user_string()
    checkpoints = ProjectPaths.from_env().checkpoints / split.dataset / sweep / split.fingerprint[:16]
    return SweepPoints(
        context, pipes, tracking, split, parent, kind, config.timeout_seconds, checkpoints / config.fingerprint()
    )


def _ablation_params(config: AblationConfig, names: list[str], split: CurrentSplit) -> dict[str, object]:
    """What every point shares (the model fields, the training budget), each variant, the seeds and the split."""
    train = {key: value for key, value in config.train.model_dump().items() if key != "seed"}
    shared = flatten({"model": config.shared_model_fields() | {"max_len": config.max_len}, "train": train})
    variants = {f"variant.{name}": json.dumps(config.variants[name].model_dump()) for name in names}
    return {
        "ablation.reference": names[0],
        "ablation.seeds": ",".join(map(str, config.seeds)),
        "ablation.timeout_seconds": config.timeout_seconds,
        **shared,
        **variants,
        **split_params(split.metadata),
    }


def _log_length_results(rows: list[SweepRow], folder: Path) -> str:
    """Metrics against max_len (as the step) per model, the table, CSV and plots on the sweep's run."""
    for row in rows:
        if row.status == OK:
            mlflow.log_metrics(
                {f"{row.model}/{column}": value for column, value in row.values.items()}, step=row.max_len
            )
    table = markdown_table(rows)
    (folder / "length_sweep.md").write_text(table + "\n")
    write_csv(rows, folder / "length_sweep.csv")
    plot_against_length(rows, QUALITY, "Quality against training window length", folder / "quality_vs_length.png")
    plot_against_length(rows, COST, "Cost against training window length", folder / "cost_vs_length.png")
    for name in ("length_sweep.md", "length_sweep.csv", "quality_vs_length.png", "cost_vs_length.png"):
        mlflow.log_artifact(str(folder / name))
    return table
