"""The training domain's part of the code location: one asset per model, MLflow, the Pipes client that
launches each training process, and the executor that runs training steps one at a time."""

import dagster as dg

from pipelines.model_names import TRAINING_TAG
from pipelines.resources import MlflowTracking
from pipelines.training.assets import training_assets

# One training step at a time: two models sharing two cores would corrupt each other's cost figures.
# Each step still runs in its own process, so every model's peak memory is measured from a clean start.
executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "tag_concurrency_limits": [{"key": key, "value": value, "limit": 1} for key, value in TRAINING_TAG.items()],
    }
)

training_defs = dg.Definitions(
    assets=training_assets,
    resources={"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
    executor=executor,
)
