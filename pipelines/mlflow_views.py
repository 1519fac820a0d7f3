"""How each dataset's MLflow experiment opens: on its training runs, with the comparison's columns.

MLflow 3 opens an experiment it cannot classify on its GenAI pages (traces, token usage), and its runs table
shows no metric until a user picks columns. Both are settings of the experiment the UI reads from tags: the
experiment kind, and a shared view (a saved table state that a ``viewStateShareKey`` link opens). Setting
them when the experiment is created makes the first page a user sees the answer.
"""

from __future__ import annotations

import json

import mlflow
from mlflow.entities import Experiment

from pipelines.metric_names import (
    KIND_TRAINING,
    TAG_CONVERGENCE,
    TAG_KIND,
    baseline_metric,
    cost_metric,
    final_metric,
)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
SHARED_VIEW_TAG = "mlflow.sharedViewState."
TRAINING_VIEW = "training-runs"
WORKFLOW = "workflowType=machine_learning"  # the UI's "Model training" mode instead of "GenAI"

TRAINING_COLUMNS = (
    ("metrics", final_metric("test", "ndcg_10")),
    ("metrics", final_metric("test", "hr_10")),
    ("metrics", baseline_metric("most_popular", "ndcg_10")),
    ("metrics", cost_metric("train_seconds_per_epoch")),
    ("metrics", cost_metric("inference_ms_per_target")),
    ("metrics", cost_metric("peak_memory_mb")),
    ("metrics", cost_metric("num_parameters")),
    ("metrics", "best_epoch"),
    ("metrics", "epochs_run"),
    ("tags", TAG_CONVERGENCE),
    ("attributes", "Models"),
    ("attributes", "Dataset"),
)


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def training_view_state() -> dict[str, object]:
    """The runs table a user should see first: training runs only, best test NDCG@10 on top."""
    columns = [_column(kind, name) for kind, name in TRAINING_COLUMNS]
    return {
        "searchFilter": f"tags.`{TAG_KIND}` = '{KIND_TRAINING}'",
        "orderByKey": _column("metrics", final_metric("test", "ndcg_10")),
        "orderByAsc": False,
        "selectedColumns": columns,
        "columnOrder": columns,
    }


def set_up_experiment(client: mlflow.MlflowClient, experiment: Experiment) -> None:
    """Mark the experiment as model training and (re)publish the training-runs view; idempotent."""
    wanted = {
        EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT,
        SHARED_VIEW_TAG + TRAINING_VIEW: json.dumps(training_view_state()),
    }
    for key, value in wanted.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)


def training_runs_path(experiment_id: str) -> str:
    """The UI route (after the server's base URL) of the training-runs view."""
    return f"/#/experiments/{experiment_id}/runs?viewStateShareKey={TRAINING_VIEW}&{WORKFLOW}"


def run_path(experiment_id: str, run_id: str) -> str:
    return f"/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"
