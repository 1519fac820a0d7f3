"""One training asset per model, made by one factory: each trains on the current split and owns one MLflow run."""

import dataclasses
import shutil
import time
from pathlib import Path

import dagster as dg
import mlflow
import pyarrow.parquet as pq
import torch

from pipelines.metric_names import (
    HEADLINE_METRIC,
    KIND_TRAINING,
    TAG_DATASET,
    TAG_KIND,
    TAG_MODEL,
    TAG_MODEL_URI,
    TAG_SPLIT,
    cost_metric,
    epoch_metric,
    final_metric,
)
from pipelines.paths import ProjectPaths
from pipelines.resources import MlflowTracking
from pipelines.training.config import TrainModelConfig
from pipelines.training.registry import (
    ITEM_MAP_ARTIFACT,
    adapt_champion,
    load_champion,
    log_model_files,
    registered_name,
)
from pipelines.training.split_source import CurrentSplit, current_split
from recmodels import build_model
from recmodels.data import SplitData
from recmodels.evaluate import EvalResult
from recmodels.train import EpochReport, FitResult, fit

MODEL_NAMES = ("recmamba", "sasrec", "gru4rec", "linrec")
# Training runs one at a time (see definitions.py): cost figures of models sharing two cores mean nothing.
TRAINING_TAG = {"recmamba/cpu": "training"}


def model_asset_name(model: str) -> str:
    return f"model_{model}"


def build_training_asset(model_name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=model_asset_name(model_name),
        deps=["splits"],
        group_name="training",
        kinds={"pytorch", "mlflow"},
        op_tags=TRAINING_TAG,
        description=f"Trains {model_name} on the current split, evaluates it by full ranking, logs to MLflow.",
    )
    def train_model(
        context: dg.AssetExecutionContext, config: TrainModelConfig, mlflow_tracking: MlflowTracking
    ) -> dg.MaterializeResult:
        split = current_split(context)
        data = SplitData.load(split.export_dir)
        torch.manual_seed(config.seed)
        model = build_model(model_name, data.num_items, **config.model_overrides(model_name))
        init = _warm_start(context, mlflow_tracking, split, model_name, model) if config.warm_start else None
        # Keyed by split and config, so an interrupted materialization resumes and nothing else does.
        checkpoints = ProjectPaths.from_env().checkpoints / split.dataset / model_name
        checkpoints = checkpoints / split.fingerprint[:16] / config.fingerprint()
        tags = {
            TAG_MODEL: model_name,
            TAG_DATASET: split.dataset,
            TAG_SPLIT: split.fingerprint,
            TAG_KIND: KIND_TRAINING,
        }
        with mlflow_tracking.materialization_run(context, split.dataset, model_name, tags) as run:
            mlflow.log_params(_params(config, model, split))
            result = fit(
                model,
                data,
                config.train_config(checkpoints),
                on_epoch=EpochLogger(context, model_name, config.epochs),
                init_state_dict=init,
            )
            _log_result(result)
            model_uri = log_model_files(mlflow_tracking.client, model, model_name)
            mlflow.log_artifact(str(split.export_dir / "item_map.parquet"), Path(ITEM_MAP_ARTIFACT).parent.as_posix())
            mlflow.set_tag(TAG_MODEL_URI, model_uri)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the model now lives in MLflow
        return dg.MaterializeResult(metadata=_metadata(result, mlflow_tracking.run_url(run), split))

    return train_model


class EpochLogger:
    """Per-epoch progress in the Dagster run log and per-epoch metrics in MLflow."""

    def __init__(self, context: dg.AssetExecutionContext, model_name: str, epochs: int) -> None:
        self.context, self.model_name, self.epochs = context, model_name, epochs
        self.started = time.perf_counter()

    def __call__(self, report: EpochReport) -> None:
        mlflow.log_metrics(
            {
                epoch_metric("train_loss"): report.train_loss,
                epoch_metric("seconds"): report.epoch_seconds,
                epoch_metric("events_per_second"): report.events_per_second,
                **{epoch_metric(f"valid_{name}"): value for name, value in report.valid.items()},
            },
            step=report.epoch,
        )
        elapsed = time.perf_counter() - self.started
        eta = elapsed / report.epoch * (self.epochs - report.epoch)
        self.context.log.info(
            f"{self.model_name} epoch {report.epoch}/{self.epochs}: loss {report.train_loss:.4f}, "
            f"valid NDCG@10 {report.valid.get(HEADLINE_METRIC, float('nan')):.4f}, "
            f"{report.events_per_second:,.0f} events/s, {report.epoch_seconds:.1f} s, ETA {eta:.0f} s"
        )


def _warm_start(
    context: dg.AssetExecutionContext,
    tracking: MlflowTracking,
    split: CurrentSplit,
    model_name: str,
    model: torch.nn.Module,
) -> dict[str, torch.Tensor] | None:
    champion = load_champion(tracking.client, registered_name(split.dataset, model_name))
    if champion is None:
        context.log.info(f"No {model_name} champion registered yet: training from scratch.")
        return None
    item_raw_ids = pq.read_table(split.export_dir / "item_map.parquet")["item_raw"].to_pylist()
    state, skipped = adapt_champion(champion, model.state_dict(), item_raw_ids)
    context.log.info(f"Warm start from the {model_name} champion; re-initialised: {skipped or 'nothing'}.")
    return state


def _params(config: TrainModelConfig, model: torch.nn.Module, split: CurrentSplit) -> dict[str, object]:
    return {
        **{f"model.{key}": value for key, value in dataclasses.asdict(model.config).items()},
        **{f"train.{key}": value for key, value in config.model_dump().items()},
        **{f"data.{key}": value for key, value in split.metadata.items()},
    }


def _eval_metrics(split_name: str, result: EvalResult) -> dict[str, float]:
    metrics = {final_metric(split_name, name): value for name, value in result.overall.items()}
    for bucket, values in result.by_bucket.items():
        metrics.update({final_metric(split_name, name, bucket): value for name, value in values.items()})
    metrics[final_metric(split_name, "num_targets")] = result.num_targets
    metrics[final_metric(split_name, "eval_seconds")] = result.seconds
    return metrics


def _log_result(result: FitResult) -> None:
    mlflow.log_metrics(
        {
            **_eval_metrics("valid", result.valid),
            **_eval_metrics("test", result.test),
            **{cost_metric(name): value for name, value in result.cost.as_metrics().items()},
            "best_epoch": result.best_epoch,
        }
    )


def _metadata(result: FitResult, run_url: str, split: CurrentSplit) -> dict[str, object]:
    cost = result.cost
    return {
        "valid_ndcg_10": result.valid.overall[HEADLINE_METRIC],
        "test_ndcg_10": result.test.overall[HEADLINE_METRIC],
        "test_hr_10": result.test.overall["hr_10"],
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds_per_epoch": cost.train_seconds_per_epoch,
        "peak_memory_mb": cost.peak_memory_mb,
        "train_events_per_second": cost.train_events_per_second,
        "num_parameters": cost.num_parameters,
        "split_fingerprint": split.fingerprint,
        "mlflow_run": dg.MetadataValue.url(run_url),
    }


training_assets = [build_training_asset(name) for name in MODEL_NAMES]
