"""One training asset per model, made by one factory: each opens one MLflow run and launches its training in
a process of its own through Dagster Pipes (``pipelines/training/worker.py``), under torchrun when the run
config asks for more than one process. Metrics and cost come back through Pipes. With several ``seeds`` the
run is a parent: each seed trains in a child run the same way, and the parent holds their aggregate
(``pipelines/training/seeds.py``).
"""

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from mlflow.entities import Run
from pydantic import BaseModel

from pipelines.metric_names import KIND_TRAINING, PARAM_WARM_START, TAG_DATASET, TAG_KIND, TAG_MODEL, TAG_SPLIT
from pipelines.model_names import MODEL_NAMES, TRAINING_TAG, model_asset_name
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.split_source import CurrentSplit, current_split
from pipelines.training.checks import check_results, check_specs
from pipelines.training.config import TrainingAssetConfig, training_config_class
from pipelines.training.params import run_params, split_dataset, split_params
from pipelines.training.seeds import SeedRun, log_parent, open_seed_run
from pipelines.training.warm_start import WarmStart, warm_start
from recmodels.data.split_data import target_protocol
from recmodels.training.warmup import warm_kernel_cache

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
        run_configs = config.run_configs(model_name)
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
        with tempfile.TemporaryDirectory(prefix=f"{model_name}-") as scratch:
            # Before the MLflow run opens, so that a refused warm start leaves no failed run behind.
            warm = WarmStart()
            if config.warm_start:
                warm = warm_start(context, mlflow_tracking, split, model_name, run_configs[0], Path(scratch))
            with mlflow_tracking.materialization_run(context, split.dataset, model_name, tags) as run:
                seeds = [run_config.train.seed for run_config in run_configs] if len(run_configs) > 1 else None
                params = {**run_params(run_configs[0], seeds), **split_params(split.metadata)}
                mlflow.log_params(params | {PARAM_WARM_START: warm.source})
                mlflow.log_input(split_dataset(split), context="training")
                launch = SeedLaunch(
                    context=context,
                    client=pipes_subprocess_client,
                    config=config,
                    model_name=model_name,
                    split=split,
                    tracking=mlflow_tracking,
                    checkpoints=checkpoints,
                    scratch=Path(scratch),
                    init_state=warm.init_state,
                )
                if seeds is None:  # one run: the worker logs into the asset's own MLflow run
                    metadata = launch.run(run_configs[0], run.info.run_id)
                else:
                    metadata = _train_seeds(launch, run_configs, run)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the model now lives in MLflow
        metadata |= {
            "warm_start": warm.source,
            "split_fingerprint": split.fingerprint,
            "target_protocol": target_protocol(split.metadata),
            "mlflow_run": dg.MetadataValue.url(mlflow_tracking.run_url(run)),
        }
        return dg.MaterializeResult(metadata=metadata, check_results=check_results(metadata))

    return train_model


@dataclass(frozen=True)
class SeedLaunch:
    """What every training run of one materialization shares; ``run`` launches one seed's worker."""

    context: dg.AssetExecutionContext
    client: dg.PipesSubprocessClient
    config: TrainingAssetConfig
    model_name: str
    split: CurrentSplit
    tracking: MlflowTracking
    checkpoints: Path
    scratch: Path
    init_state: str | None

    def run(self, run_config: BaseModel, mlflow_run_id: str) -> dict[str, Any]:
        """Train ``run_config`` into the MLflow run ``mlflow_run_id``; returns what the worker reported."""
        seed = run_config.train.seed  # type: ignore[attr-defined]
        extras = {
            "model_name": self.model_name,
            "run_config": run_config.model_dump(),
            "export_dir": str(self.split.export_dir),
            "history_store": str(ProjectPaths.from_env().history_store(self.split.dataset))
            if self.config.out_of_core
            else "",
            "checkpoint_dir": str(self.checkpoints / f"seed-{seed}"),
            "error_dir": str(self.scratch / f"seed-{seed}" / "errors"),
            "init_state": self.init_state,
            "tracking_uri": self.tracking.resolved_tracking_uri,
            "mlflow_run_id": mlflow_run_id,
        }
        reported = _launch(self.context, self.client, self.config, extras).get_materialize_result()
        return {key: getattr(value, "value", value) for key, value in (reported.metadata or {}).items()}


def _train_seeds(launch: SeedLaunch, run_configs: list[BaseModel], parent: Run) -> dict[str, Any]:
    """Each seed in a child run of ``parent``, one after the other, then the parent holds their aggregate."""
    client, runs = launch.tracking.client, []
    for number, run_config in enumerate(run_configs, start=1):
        seed = run_config.train.seed  # type: ignore[attr-defined]
        launch.context.log.info(f"Training seed {seed} ({number} of {len(run_configs)}).")
        params = {**run_params(run_config), **split_params(launch.split.metadata)}
        child = open_seed_run(client, parent, seed, params)
        try:
            metadata = launch.run(run_config, child)
        except BaseException:  # a worker killed before it could close its run leaves it running
            if client.get_run(child).info.status == "RUNNING":
                client.set_terminated(child, "FAILED")
            raise
        runs.append(SeedRun(seed, client.get_run(child), metadata))
    return log_parent(client, runs, launch.scratch / "seed-results")


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
    extras: dict[str, Any],
) -> dg.PipesClientCompletedInvocation:
    """Run the worker; if it fails, fail with the first failing rank's own error rather than an exit code."""
    command = worker_command(config.nproc_per_node)
    seconds = warm_kernel_cache(stamp=ProjectPaths.from_env().kernel_cache_stamp)  # compile outside the meters
    if seconds is None:
        context.log.info("Kernel warm-up failed: training compiles for itself.")
    else:
        context.log.info(f"Kernel cache ready in {seconds:.1f} s." if seconds else "Kernel cache already filled.")
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


training_assets = [build_training_asset(name) for name in MODEL_NAMES]
