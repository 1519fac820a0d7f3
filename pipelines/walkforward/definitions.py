"""The lifelong code location: day-partitioned ingest, walk-forward evaluation and their incremental refresh.

It is a code location of its own because a whole-graph ``dagster asset materialize --select '*'`` (the main
job) cannot include partitioned assets without naming a partition. Load it beside the main one:
``dagster dev -m pipelines.definitions -m pipelines.walkforward.definitions``.
"""

import dagster as dg

from pipelines.data.daily_assets import daily_events
from pipelines.data.resources import Warehouse
from pipelines.refresh.lifelong import LIFELONG_JOBS, lifelong_daily, lifelong_landing_sensor, walk_forward_after_ingest
from pipelines.resources import MlflowTracking
from pipelines.walkforward.assets import walk_forward

defs = dg.Definitions(
    assets=[daily_events, walk_forward],
    jobs=LIFELONG_JOBS,
    schedules=[lifelong_daily],
    sensors=[lifelong_landing_sensor, walk_forward_after_ingest],
    resources={"warehouse": Warehouse(), "mlflow_tracking": MlflowTracking()},
)
