"""The MLflow tracking store as a Dagster resource: where runs, artifacts and models go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import mlflow
from mlflow.entities import Run

from pipelines.mlflow_views import run_path, set_up_experiment, training_runs_path
from pipelines.paths import ProjectPaths

# Tags that tie an MLflow run to the Dagster materialization that produced it.
TAG_ROOT_RUN = "dagster.root_run_id"
TAG_RUN = "dagster.run_id"
TAG_ASSET = "dagster.asset_key"
TAG_PARTITION = "dagster.partition"
TAG_RUN_URL = "dagster.run_url"


class MlflowTracking(dg.ConfigurableResource):
    """MLflow on a local sqlite store under ``RECMAMBA_HOME/mlflow`` unless ``tracking_uri`` says otherwise.

    No server is needed; ``mlflow/ui.sh`` serves the same store. Each materialization owns exactly one run,
    identified by (root Dagster run, asset key, partition): re-executing a run replaces that run's MLflow run
    instead of adding a duplicate.
    """

    tracking_uri: str | None = None
    artifact_root: str | None = None
    ui_url: str = "http://127.0.0.1:5000"
    dagster_ui_url: str = "http://127.0.0.1:3000"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        paths = ProjectPaths.from_env()
        if self.tracking_uri is None:
            paths.mlflow.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.resolved_tracking_uri)

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or ProjectPaths.from_env().mlflow_tracking_uri

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.resolved_tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The experiment of one dataset, created with artifacts under the project root on first use, and set
        to open on its training runs (``pipelines/mlflow_views.py``)."""
        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            root = self.artifact_root or ProjectPaths.from_env().mlflow_artifacts.as_uri()
            experiment = client.get_experiment(client.create_experiment(name, artifact_location=f"{root}/{name}"))
        set_up_experiment(client, experiment)  # also experiments made before these settings existed
        return experiment.experiment_id

    def runs_of(self, experiment: str, tags: dict[str, str], status: str | None = None) -> list[Run]:
        """Live runs of ``experiment`` carrying every tag in ``tags`` (newest first)."""
        clauses = [f"tags.`{key}` = {filter_literal(value)}" for key, value in tags.items()]
        if status is not None:
            clauses.append(f"attributes.status = {filter_literal(status)}")
        return self.client.search_runs(
            [self.experiment_id(experiment)],
            filter_string=" and ".join(clauses),
            order_by=["attributes.start_time DESC"],
        )

    @contextmanager
    def materialization_run(
        self, context: dg.AssetExecutionContext, experiment: str, run_name: str, tags: dict[str, str]
    ) -> Iterator[mlflow.ActiveRun]:
        """One MLflow run for this materialization; FAILED if the body raises, FINISHED otherwise."""
        identity = {
            TAG_ROOT_RUN: context.run.root_run_id or context.run_id,
            TAG_ASSET: context.asset_key.to_user_string(),
            TAG_PARTITION: context.partition_key if context.has_partition_key else "",
        }
        for stale in self.runs_of(experiment, identity):
            self.client.delete_run(stale.info.run_id)
        experiment_id = self.experiment_id(experiment)
        dagster_run = f"{self.dagster_ui_url.rstrip('/')}/runs/{context.run_id}"
        description = f"`{identity[TAG_ASSET]}` of Dagster run [{context.run_id[:8]}]({dagster_run})."
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags={**identity, TAG_RUN: context.run_id, TAG_RUN_URL: dagster_run, **tags},
            description=description,
            log_system_metrics=True,
        )
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")

    @property
    def _ui_base(self) -> str:
        base = self.resolved_tracking_uri
        return (base if base.startswith(("http://", "https://")) else self.ui_url).rstrip("/")

    def run_url(self, run: Run | mlflow.ActiveRun) -> str:
        """The run's page in the MLflow UI (``mlflow/ui.sh`` serves the local store at ``ui_url``)."""
        return self._ui_base + run_path(run.info.experiment_id, run.info.run_id)

    def training_runs_url(self, experiment: str) -> str:
        """The experiment's training runs, with the comparison's columns, best first."""
        return self._ui_base + training_runs_path(self.experiment_id(experiment))


def filter_literal(value: str) -> str:
    """``value`` as a quoted literal of an MLflow filter string. MLflow has no escapes inside quotes, so the
    literal takes the quote character that ``value`` lacks."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(f"an MLflow filter cannot match {value[:80]!r}: it holds both kinds of quote")
