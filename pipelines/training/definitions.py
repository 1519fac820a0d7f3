"""Training, reporting and refresh: everything downstream of ``splits``."""

import dagster as dg

from pipelines.refresh.jobs import refresh_job
from pipelines.refresh.schedules import daily_refresh
from pipelines.refresh.sensors import landing_files_sensor
from pipelines.reporting.assets import model_comparison
from pipelines.resources import MlflowTracking
from pipelines.training.assets import TRAINING_TAG, training_assets

# One training step at a time: two models sharing two cores would corrupt each other's cost figures.
# Each step still runs in its own process, so every model's peak memory is measured from a clean start.
executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "tag_concurrency_limits": [{"key": key, "value": value, "limit": 1} for key, value in TRAINING_TAG.items()],
    }
)

training_defs = dg.Definitions(
    assets=[*training_assets, model_comparison],
    resources={"mlflow_tracking": MlflowTracking()},
    jobs=[refresh_job],
    schedules=[daily_refresh],
    sensors=[landing_files_sensor],
    executor=executor,
)
