"""The training process a model asset launches through Dagster Pipes: alone, or as every process of
``torchrun --nproc_per_node N`` (DDP). ``python -m pipelines.training.worker``; it needs the Pipes context
the asset passes in its environment.

Every process reads the same job description (the Pipes extras) and trains its shard; rank 0 alone opens
the Pipes message channel, logs to the MLflow run the asset opened (its own, or one seed's child run), writes
checkpoints, the model and each test target's rank, forwards ``recmodels`` progress lines to the Dagster run
log, and reports metrics, cost, intervals and the paired test against popularity back to the asset. A
process that fails writes its traceback to ``<error_dir>/rank-<r>.txt`` so that the asset can say which rank
failed and why, whichever it was.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from dagster_pipes import PipesContext, PipesDefaultContextLoader, PipesEnvVarParamsLoader, open_dagster_pipes

from pipelines.metric_names import (
    HEADLINE_METRIC,
    METRICS_AT_10,
    TAG_CONVERGENCE,
    TAG_MODEL_URI,
    TARGET_RANKS_ARTIFACT,
    baseline_ranks_artifact,
    epoch_metric,
)
from pipelines.registry import ITEM_MAP_ARTIFACT, log_model_files
from pipelines.training.per_target import (
    BASELINE_SEED,
    POPULARITY,
    log_table,
    ranks_table,
    uncertainty,
)
from pipelines.training.results import materialization_metadata, result_metrics, rounded, uncertainty_metadata
from recmodels.data.history_store import load_split
from recmodels.data.split_data import SplitData
from recmodels.evaluation.baselines import BASELINES, evaluate_baseline
from recmodels.evaluation.convergence import Convergence
from recmodels.evaluation.evaluate import select_targets
from recmodels.training.config import RunConfig, run_config_class
from recmodels.training.distributed import Ranks, shutdown
from recmodels.training.loop import EpochReport, TrainedRun, prepare_process, train_run


@dataclass(frozen=True)
class TrainingJob:
    """What the asset asks for (its Pipes extras)."""

    model_name: str
    run_config: dict[str, Any]
    export_dir: Path
    checkpoint_dir: Path
    error_dir: Path
    init_state: Path | None
    tracking_uri: str
    mlflow_run_id: str
    history_store: Path | None = None  # memory-mapped histories instead of the export in RAM

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrainingJob:
        paths = {key: Path(extras[key]) for key in ("export_dir", "checkpoint_dir", "error_dir")}
        init_state = Path(extras["init_state"]) if extras.get("init_state") else None
        return cls(
            extras["model_name"],
            extras["run_config"],
            **paths,
            init_state=init_state,
            tracking_uri=extras["tracking_uri"],
            mlflow_run_id=extras["mlflow_run_id"],
            history_store=Path(extras["history_store"]) if extras.get("history_store") else None,
        )


def read_job() -> TrainingJob:
    """The extras, read by every process without opening the message channel (rank 0 opens it)."""
    params = PipesEnvVarParamsLoader().load_context_params()
    with PipesDefaultContextLoader().load_context(params) as context_data:
        return TrainingJob.from_extras(dict(context_data["extras"]))


def main() -> int:
    job = read_job()
    run_config = run_config_class(job.model_name).model_validate(job.run_config)
    ranks = prepare_process(run_config.train.device, fill_kernel_cache=False)  # the launching asset filled it
    try:
        if ranks.is_main:
            with open_dagster_pipes() as pipes:
                train_and_report(job, run_config, ranks, pipes)
        else:
            train(job, run_config, on_epoch=None)
    except BaseException:
        job.error_dir.mkdir(parents=True, exist_ok=True)
        (job.error_dir / f"rank-{ranks.rank}.txt").write_text(traceback.format_exc())
        raise
    finally:
        shutdown()
    return 0


def train(
    job: TrainingJob, run_config: RunConfig, on_epoch: Callable[[EpochReport], None] | None
) -> tuple[TrainedRun, SplitData]:
    """The job's training, the same in every process (``recmodels.training.loop.train_run``), and the data it read."""
    data = load_split(job.export_dir, job.history_store)
    init = torch.load(job.init_state, map_location="cpu", weights_only=True) if job.init_state else None
    trained = train_run(
        job.model_name, run_config, data, on_epoch=on_epoch, init_state_dict=init, checkpoint_dir=job.checkpoint_dir
    )
    return trained, data


def train_and_report(job: TrainingJob, run_config: RunConfig, ranks: Ranks, pipes: PipesContext) -> None:
    """Rank 0: train, log to the asset's MLflow run, and report metrics and cost through Pipes."""
    mlflow.set_tracking_uri(job.tracking_uri)
    with mlflow.start_run(run_id=job.mlflow_run_id), progress_to(pipes):
        trained, data = train(job, run_config, EpochLogger(pipes, job.model_name, run_config.train.epochs))
        model, result = trained.model, trained.result
        # The popularity floor, ranked on the same test targets: the asset's checks compare against it.
        baselines = {name: evaluate_baseline(name, data, "test") for name in BASELINES}
        totals = {split: len(select_targets(data, split).items) for split in ("valid", "test")}
        convergence = Convergence.of(result)
        ranked = ranks_table(result.test.ranks, run_config.train.seed)
        floors = {name: ranks_table(baseline.ranks, BASELINE_SEED) for name, baseline in baselines.items()}
        intervals, difference = uncertainty(ranked, floors[POPULARITY])
        mlflow.log_metrics(
            result_metrics(result, convergence, ranks.world_size, totals, baselines)
            | {key: rounded(value) for key, value in intervals.items()}
        )
        log_table(ranked, TARGET_RANKS_ARTIFACT)
        for name, floor in floors.items():
            log_table(floor, baseline_ranks_artifact(name))
        mlflow.set_tag(TAG_CONVERGENCE, convergence.verdict())
        dataset = str(data.metadata.get("dataset", "data"))
        client = mlflow.MlflowClient(job.tracking_uri)
        model_uri = log_model_files(client, model, job.model_name, f"{dataset}-{job.model_name}")
        mlflow.log_artifact(str(job.export_dir / "item_map.parquet"), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
        mlflow.set_tag(TAG_MODEL_URI, model_uri)
    pipes.report_asset_materialization(
        metadata=materialization_metadata(result, convergence, ranks.world_size, baselines)
        | uncertainty_metadata(intervals, difference)
    )


class PipesLogHandler(logging.Handler):
    """Sends log records to the Dagster run log through the Pipes channel."""

    def __init__(self, pipes: PipesContext) -> None:
        super().__init__(logging.INFO)
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pipes.log.info(self.format(record))
        except Exception:  # a lost progress line must never fail training
            self.handleError(record)


@contextmanager
def progress_to(pipes: PipesContext) -> Iterator[None]:
    """While open, ``recmodels`` progress lines (training and evaluation, at INFO) reach the Dagster run log."""
    logger, handler = logging.getLogger("recmodels"), PipesLogHandler(pipes)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class EpochLogger:
    """Per-epoch progress in the Dagster run log (through Pipes) and per-epoch metrics in MLflow."""

    def __init__(self, pipes: PipesContext, model_name: str, epochs: int) -> None:
        self.pipes, self.model_name, self.epochs = pipes, model_name, epochs
        self.started = time.perf_counter()

    def __call__(self, report: EpochReport) -> None:
        metrics = {
            epoch_metric("train_loss"): report.train_loss,
            epoch_metric("seconds"): report.epoch_seconds,
            epoch_metric("events_per_second"): report.events_per_second,
            **{epoch_metric(f"valid_{name}"): report.valid[name] for name in METRICS_AT_10 if name in report.valid},
        }
        mlflow.log_metrics({key: rounded(value) for key, value in metrics.items()}, step=report.epoch)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / report.epoch * (self.epochs - report.epoch)
        self.pipes.log.info(
            f"{self.model_name} epoch {report.epoch}/{self.epochs}: loss {report.train_loss:.4f}, "
            f"valid NDCG@10 {report.valid.get(HEADLINE_METRIC, float('nan')):.4f}, "
            f"{report.events_per_second:,.0f} events/s, {report.epoch_seconds:.1f} s, ETA {eta:.0f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
