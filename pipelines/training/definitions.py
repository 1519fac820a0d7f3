"""The training domain's part of the code location: one asset per model, MLflow, the Pipes client that
launches each training process, and the executor that runs training steps one at a time."""

import dagster as dg

from pipelines.model_names import TRAINING_TAG
from pipelines.resources import MlflowTracking
from pipelines.training.assets import training_assets

# One training step at a time: two models sharing two cores would corrupt each other's cost figures.
# Each step runs in its own process, forked from a server that imported this code location once per run
# (a spawned step spent ~5 s importing torch, MLflow and Dagster again: the smoke run took 2.5x as long);
# training itself runs in a fresh Pipes process, so every model's peak memory is measured from a clean start.
executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}},
        "tag_concurrency_limits": [{"key": key, "value": value, "limit": 1} for key, value in TRAINING_TAG.items()],
    }
)

training_defs = dg.Definitions(
    assets=training_assets,
    resources={"mlflow_tracking": MlflowTracking(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
    executor=executor,
)
