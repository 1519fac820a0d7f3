"""The serving domain's part of the code location: the per-user state stores (``user_states``) and the small
job and sensor that advance them by new events. It uses the ``mlflow_tracking`` resource of the training
domain and the ``warehouse`` resource of the data domain."""

import dagster as dg

from pipelines.serving.assets import user_states
from pipelines.serving.jobs import advance_user_states
from pipelines.serving.sensors import user_events_sensor

serving_defs = dg.Definitions(assets=[user_states], jobs=[advance_user_states], sensors=[user_events_sensor])
