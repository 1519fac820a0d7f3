"""The points of a sweep: each a named run config, trained from scratch by the training worker
(``pipelines/training/worker.py``, so through ``recmodels.training.loop.train_run`` like every other path) over
Dagster Pipes, inside ``pipelines.sweep.launcher`` under a time limit, into a child MLflow run of the
sweep's run.

The length sweep's points are models x window lengths, the ablation's variants x seeds; both train them
here, so a point ends the same way whichever sweep made it (``ok``, ``timed_out``, ``out_of_memory``,
``failed``) and its run carries the same tags: the sweep's identity (a re-execution deletes it with the
sweep's own run), its kind, model, split and what sets it apart from the other points.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from mlflow.entities import Param, Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.metric_names import TAG_DATASET, TAG_KIND, TAG_MODEL, TAG_SPLIT
from pipelines.resources import TAG_ASSET, TAG_PARTITION, TAG_ROOT_RUN, MlflowTracking
from pipelines.split_source import CurrentSplit
from recmodels.training.config import flatten

WORKER = "pipelines.training.worker"
LAUNCHER = "pipelines.sweep.launcher"
TAG_STATUS = "recmamba.sweep_status"

OK, OUT_OF_MEMORY, TIMED_OUT, FAILED = "ok", "out_of_memory", "timed_out", "failed"
# Words of a traceback that mean the process ran out of memory (CPU allocator, CUDA, Python).
MEMORY_ERRORS = ("out of memory", "MemoryError", "can't allocate memory", "Cannot allocate memory")
KILLED = (-9, 137)  # SIGKILL: on Linux, the kernel's OOM killer


def outcome(returncode: int, timed_out: bool, error: str) -> str:
    """How a point's training process ended, from its exit code, the time limit and its traceback."""
    if timed_out:
        return TIMED_OUT
    if returncode == 0:
        return OK
    if returncode in KILLED or any(words in error for words in MEMORY_ERRORS):
        return OUT_OF_MEMORY
    return FAILED


@dataclass(frozen=True)
class Point:
    """One training of a sweep."""

    name: str  # unique in its sweep: the run's name and its checkpoint folder, e.g. ``sasrec-L512``
    model_name: str
    run_config: dict[str, Any]  # the recmodels run config (``model`` and ``train``), validated, as plain values
    tags: dict[str, str] = field(default_factory=dict)  # what sets it apart: ``recmamba.max_len``, ``recmamba.seed``

    def worker_job(
        self, export_dir: Path, checkpoints: Path, error_dir: Path, tracking_uri: str, run_id: str
    ) -> dict[str, Any]:
        """What the training worker runs for this point (its Pipes extras): always from scratch."""
        return {
            "model_name": self.model_name,
            "run_config": self.run_config,
            "export_dir": str(export_dir),
            "checkpoint_dir": str(checkpoints),
            "error_dir": str(error_dir),
            "init_state": None,
            "tracking_uri": tracking_uri,
            "mlflow_run_id": run_id,
        }


@dataclass(frozen=True)
class PointResult:
    """How one point ended and its finished (or failed) MLflow run."""

    point: Point
    status: str
    run: Run
    error: str = ""  # the last line of a failed point's traceback

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def metrics(self) -> dict[str, float]:
        """The run's final metrics; empty unless the point trained."""
        return self.run.data.metrics if self.ok else {}


@dataclass(frozen=True)
class SweepPoints:
    """What every point of one sweep materialization shares; ``train`` runs one point."""

    context: dg.AssetExecutionContext
    pipes: dg.PipesSubprocessClient
    tracking: MlflowTracking
    split: CurrentSplit
    parent: mlflow.ActiveRun
    kind: str  # the points' run kind (``recmamba.run_kind``): not "training", so the comparison ignores them
    timeout_seconds: float
    checkpoints: Path  # each point checkpoints into a folder of its own under it, removed when it ends

    def train_all(self, points: list[Point], scratch: Path) -> list[PointResult]:
        """Every point, one after the other (cost figures of points sharing the cores would mean nothing);
        ``scratch`` holds each point's status and error files."""
        results = []
        for number, point in enumerate(points, start=1):
            result = self.train(point, scratch / point.name)
            self.context.log.info(
                f"{self.kind} {number}/{len(points)} {point.name}: {result.status} {result.error or ''}".rstrip()
            )
            results.append(result)
        return results

    def train(self, point: Point, scratch: Path) -> PointResult:
        client = self.tracking.client
        run_id = self._open_run(client, point)
        checkpoints = self.checkpoints / point.name
        scratch.mkdir(parents=True)
        job = point.worker_job(
            self.split.export_dir, checkpoints, scratch / "errors", self.tracking.resolved_tracking_uri, run_id
        )
        status_file = scratch / "status.json"
        launcher = [sys.executable, "-m", LAUNCHER, str(status_file), str(self.timeout_seconds), "--"]
        try:
            self.pipes.run(command=[*launcher, sys.executable, "-m", WORKER], context=self.context, extras=job)
        except Exception:
            if not status_file.is_file():  # the launcher itself never ran: not a point's outcome
                raise
        finally:
            shutil.rmtree(checkpoints, ignore_errors=True)  # every point trains from scratch
        status = json.loads(status_file.read_text())
        error = _error_line(scratch / "errors")
        ended = outcome(status["returncode"], status["timed_out"], error)
        client.set_tag(run_id, TAG_STATUS, ended)
        if ended != OK:
            client.set_terminated(run_id, "FAILED")
        return PointResult(point, ended, client.get_run(run_id), error)

    def _open_run(self, client: mlflow.MlflowClient, point: Point) -> str:
        """A child run of the sweep's run, with the sweep's identity tags."""
        parent = self.parent
        identity = {key: parent.data.tags.get(key, "") for key in (TAG_ROOT_RUN, TAG_ASSET, TAG_PARTITION)}
        tags = {
            **identity,
            MLFLOW_PARENT_RUN_ID: parent.info.run_id,
            TAG_KIND: self.kind,
            TAG_MODEL: point.model_name,
            TAG_DATASET: self.split.dataset,
            TAG_SPLIT: self.split.fingerprint,
            **point.tags,
        }
        run = client.create_run(parent.info.experiment_id, run_name=point.name, tags=tags)
        params = {**flatten(point.run_config), **flatten({"data": self.split.metadata})}
        client.log_batch(run.info.run_id, params=[Param(key, str(value)[:6000]) for key, value in params.items()])
        return run.info.run_id


def _error_line(error_dir: Path) -> str:
    reports = sorted(error_dir.glob("rank-*.txt"))
    lines = reports[0].read_text().strip().splitlines() if reports else []
    return lines[-1] if lines else ""
