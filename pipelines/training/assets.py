"""One training asset per model, made by one factory: each opens one MLflow run and launches its training in
a process of its own through Dagster Pipes (``pipelines/training/worker.py``), under torchrun when the run
config asks for more than one process. Metrics and cost come back through Pipes.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow.parquet as pq
import torch

from pipelines.metric_names import KIND_TRAINING, TAG_DATASET, TAG_KIND, TAG_MODEL, TAG_SPLIT
from pipelines.model_names import MODEL_NAMES, TRAINING_TAG, model_asset_name
from pipelines.paths import ProjectPaths
from pipelines.registry import CURRENT, adapt_champion, load_champion, registered_name
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit, current_split
from pipelines.training.checks import check_results, check_specs
from pipelines.training.config import TrainingAssetConfig, training_config_class
from pipelines.training.params import run_params, split_dataset, split_params
from recmodels import build_model
from recmodels.warmup import COMPILED_KERNEL_MODELS, warm_kernel_cache

WORKER = "pipelines.training.worker"


def build_training_asset(model_name: str) -> dg.AssetsDefinition:
    config_class = training_config_class(model_name)

    @dg.asset(
        name=model_asset_name(model_name),
        deps=["splits"],
        group_name="training",
        kinds={"pytorch", "mlflow"},
        op_tags=TRAINING_TAG,
        description=f"Trains {model_name} on the current split, evaluates it by full ranking, logs to MLflow.",
        check_specs=check_specs(model_asset_name(model_name)),
    )
    def train_model(
        context: dg.AssetExecutionContext,
        config: config_class,
        mlflow_tracking: MlflowTracking,
        pipes_subprocess_client: dg.PipesSubprocessClient,
    ) -> dg.MaterializeResult:
        split = current_split(context)
        run_config = config.run_config(model_name)
        # Keyed by split and config, so an interrupted materialization resumes and nothing else does.
        paths = ProjectPaths.from_env()
        checkpoints = paths.checkpoints / split.dataset / model_name
        checkpoints = checkpoints / split.fingerprint[:16] / config.fingerprint()
        tags = {
            TAG_MODEL: model_name,
            TAG_DATASET: split.dataset,
            TAG_SPLIT: split.fingerprint,
            TAG_KIND: KIND_TRAINING,
        }
        with (
            mlflow_tracking.materialization_run(context, split.dataset, model_name, tags) as run,
            tempfile.TemporaryDirectory(prefix=f"{model_name}-") as scratch,
        ):
            mlflow.log_params({**run_params(run_config), **split_params(split.metadata)})
            mlflow.log_input(split_dataset(split), context="training")
            extras = {
                "model_name": model_name,
                "run_config": run_config.model_dump(),
                "export_dir": str(split.export_dir),
                "history_store": str(paths.history_store(split.dataset)) if config.out_of_core else "",
                "checkpoint_dir": str(checkpoints),
                "error_dir": str(Path(scratch) / "errors"),
                "init_state": _warm_start(context, mlflow_tracking, split, model_name, run_config, Path(scratch))
                if config.warm_start
                else None,
                "tracking_uri": mlflow_tracking.resolved_tracking_uri,
                "mlflow_run_id": run.info.run_id,
            }
            result = _launch(context, pipes_subprocess_client, config, extras)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the model now lives in MLflow
        reported = result.get_materialize_result()
        metadata = {
            **(reported.metadata or {}),
            "split_fingerprint": split.fingerprint,
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(run)),
        }
        return dg.MaterializeResult(metadata=metadata, check_results=check_results(reported.metadata or {}))

    return train_model


def worker_command(nproc_per_node: int) -> list[str]:
    """The worker alone, or ``torchrun --nproc_per_node N`` of it (one machine; DDP over its processes)."""
    if nproc_per_node == 1:
        return [sys.executable, "-m", WORKER]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
    return [*launcher, "-m", WORKER]


def _launch(
    context: dg.AssetExecutionContext,
    client: dg.PipesSubprocessClient,
    config: TrainingAssetConfig,
    extras: dict[str, object],
) -> dg.PipesClientCompletedInvocation:
    """Run the worker; if it fails, fail with the first failing rank's own error rather than an exit code."""
    command = worker_command(config.nproc_per_node)
    if extras["model_name"] in COMPILED_KERNEL_MODELS:  # compile outside the measured training process
        seconds = warm_kernel_cache()
        context.log.info(f"Kernel cache ready in {seconds:.1f} s." if seconds else "Kernel warm-up failed.")
    context.log.info(f"Launching {' '.join(command)}")
    try:
        return client.run(command=command, context=context, extras=extras)
    except Exception as error:  # the worker exited non-zero (Dagster's error names no rank)
        reports = sorted(Path(str(extras["error_dir"])).glob("rank-*.txt"))
        if not reports:
            raise
        first = reports[0]
        lines = first.read_text().strip().splitlines()
        raise dg.Failure(
            f"Training failed in {first.stem.replace('-', ' ')}: {lines[-1]}",
            metadata={"traceback": dg.MetadataValue.text("\n".join(lines[-40:]))},
        ) from error


def _warm_start(
    context: dg.AssetExecutionContext,
    tracking: MlflowTracking,
    split: CurrentSplit,
    model_name: str,
    run_config,
    scratch: Path,
) -> str | None:
    """The ``current`` version's weights fitted to this catalogue, saved for the worker; None without one."""
    champion = load_champion(tracking.client, registered_name(split.dataset, model_name), CURRENT)
    if champion is None:
        context.log.info(f"No {model_name} version registered as {CURRENT!r} yet: training from scratch.")
        return None
    model = build_model(model_name, int(split.metadata["num_items"]), **run_config.model.model_dump())
    item_raw_ids = pq.read_table(split.export_dir / "item_map.parquet")["item_raw"].to_pylist()
    state, skipped = adapt_champion(champion, model.state_dict(), item_raw_ids)
    context.log.info(f"Warm start from {model_name}@{CURRENT}; re-initialised: {skipped or 'nothing'}.")
    path = scratch / "init_state.pt"
    torch.save(state, path)
    return str(path)


training_assets = [build_training_asset(name) for name in MODEL_NAMES]
