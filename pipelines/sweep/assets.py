"""``length_sweep``: every selected model trained at every window length on the current split, with the
same training budget and seed, through the training worker (``pipelines/training/worker.py``, which trains
with ``recmodels.train.train_run`` like every other path) over Dagster Pipes. Each (model, max_len) point
is an MLflow run of its own, a child of the sweep's run, which gets the table and the plots of quality and
cost against the window length.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from mlflow.entities import Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.metric_names import TAG_DATASET, TAG_KIND, TAG_MODEL, TAG_SPLIT
from pipelines.model_names import TRAINING_TAG
from pipelines.paths import ProjectPaths
from pipelines.resources import TAG_ASSET, TAG_PARTITION, TAG_ROOT_RUN, MlflowTracking
from pipelines.split_source import CurrentSplit, current_split
from pipelines.sweep.config import LengthSweepConfig
from pipelines.sweep.results import OK, SweepRow, markdown_table, outcome, plot_against_length, write_csv
from recmodels.config import flatten
from recmodels.warmup import warm_kernel_cache

WORKER = "pipelines.training.worker"
LAUNCHER = "pipelines.sweep.launcher"
KIND_SWEEP, KIND_POINT = "length_sweep", "length_sweep_point"  # not "training": the comparison ignores them
TAG_MAX_LEN = "recmamba.max_len"
TAG_STATUS = "recmamba.sweep_status"
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
        (name, max_len, config.run_config(name, max_len)) for name in config.models for max_len in config.max_lens
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
        rows = []
        for name, max_len, run_config in points:
            point = Point(name, max_len, run_config.model_dump(), Path(scratch) / f"{name}-{max_len}")
            row = point.train(context, pipes_subprocess_client, mlflow_tracking, split, parent, config)
            context.log.info(f"length_sweep {name} max_len={max_len}: {row.status} {row.values or row.error}")
            rows.append(row)
        table = _log_results(rows, Path(scratch))
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


class Point:
    """One (model, max_len) training of the sweep: its MLflow run, its worker process and how it ended."""

    def __init__(self, model_name: str, max_len: int, run_config: dict, scratch: Path) -> None:
        self.model_name, self.max_len, self.run_config, self.scratch = model_name, max_len, run_config, scratch

    def train(
        self,
        context: dg.AssetExecutionContext,
        pipes: dg.PipesSubprocessClient,
        tracking: MlflowTracking,
        split: CurrentSplit,
        parent: mlflow.ActiveRun,
        config: LengthSweepConfig,
    ) -> SweepRow:
        client = tracking.client
        run_id = self._open_run(client, split, parent)
        checkpoints = ProjectPaths.from_env().checkpoints / split.dataset / KIND_SWEEP / self.model_name
        checkpoints = checkpoints / f"L{self.max_len}" / split.fingerprint[:16] / config.fingerprint()
        extras = self.worker_job(split.export_dir, checkpoints, tracking.resolved_tracking_uri, run_id)
        status_file = self.scratch / "status.json"
        self.scratch.mkdir(parents=True)
        launcher = [sys.executable, "-m", LAUNCHER, str(status_file), str(config.timeout_seconds), "--"]
        try:
            pipes.run(command=[*launcher, sys.executable, "-m", WORKER], context=context, extras=extras)
        except Exception:
            if not status_file.is_file():  # the launcher itself never ran: not a point's outcome
                raise
        finally:
            shutil.rmtree(checkpoints, ignore_errors=True)  # every point trains from scratch
        status = json.loads(status_file.read_text())
        error = self._error_line()
        ended = outcome(status["returncode"], status["timed_out"], error)
        client.set_tag(run_id, TAG_STATUS, ended)
        if ended == OK:
            return SweepRow.from_metrics(self.model_name, self.max_len, run_id, client.get_run(run_id).data.metrics)
        client.set_terminated(run_id, "FAILED")
        return SweepRow(self.model_name, self.max_len, ended, run_id, error=error)

    def worker_job(self, export_dir: Path, checkpoints: Path, tracking_uri: str, run_id: str) -> dict[str, Any]:
        """What the training worker runs for this point (its Pipes extras): always from scratch."""
        return {
            "model_name": self.model_name,
            "run_config": self.run_config,
            "export_dir": str(export_dir),
            "checkpoint_dir": str(checkpoints),
            "error_dir": str(self.scratch / "errors"),
            "init_state": None,
            "tracking_uri": tracking_uri,
            "mlflow_run_id": run_id,
        }

    def _open_run(self, client: mlflow.MlflowClient, split: CurrentSplit, parent: mlflow.ActiveRun) -> str:
        """A child run of the sweep's run; it shares the sweep's identity tags, so a re-execution of the
        sweep deletes it along with the sweep's own run."""
        identity = {key: parent.data.tags.get(key, "") for key in (TAG_ROOT_RUN, TAG_ASSET, TAG_PARTITION)}
        tags = {
            **identity,
            MLFLOW_PARENT_RUN_ID: parent.info.run_id,
            TAG_KIND: KIND_POINT,
            TAG_MODEL: self.model_name,
            TAG_DATASET: split.dataset,
            TAG_SPLIT: split.fingerprint,
            TAG_MAX_LEN: str(self.max_len),
        }
        run = client.create_run(parent.info.experiment_id, run_name=f"{self.model_name}-L{self.max_len}", tags=tags)
        params = {**flatten(self.run_config), **flatten({"data": split.metadata})}
        client.log_batch(run.info.run_id, params=[Param(key, str(value)[:6000]) for key, value in params.items()])
        return run.info.run_id

    def _error_line(self) -> str:
        reports = sorted((self.scratch / "errors").glob("rank-*.txt"))
        lines = reports[0].read_text().strip().splitlines() if reports else []
        return lines[-1] if lines else ""


def _log_results(rows: list[SweepRow], folder: Path) -> str:
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
