"""The lifelong code location: day-partitioned ingest, walk-forward evaluation and their incremental refresh.

It is a code location of its own because a whole-graph ``dagster asset materialize --select '*'`` (the main
job) cannot include partitioned assets without naming a partition. Load it beside the main one:
``dagster dev -m pipelines.definitions -m pipelines.lifelong.definitions``.
"""

import dagster as dg

from pipelines.data.resources import Warehouse
from pipelines.lifelong.daily_events import daily_events
from pipelines.lifelong.sensors import LIFELONG_JOBS, lifelong_daily, lifelong_landing_sensor, walk_forward_after_ingest
from pipelines.lifelong.walk_forward import walk_forward
from pipelines.resources import MlflowTracking

defs = dg.Definitions(
    assets=[daily_events, walk_forward],
    jobs=LIFELONG_JOBS,
    schedules=[lifelong_daily],
    sensors=[lifelong_landing_sensor, walk_forward_after_ingest],
    resources={"warehouse": Warehouse(), "mlflow_tracking": MlflowTracking()},
)
