"""The lifelong code location: day-partitioned ingest, walk-forward evaluation and their incremental refresh.

It is a code location of its own because a whole-graph ``dagster asset materialize --select '*'`` (the main
job) cannot include partitioned assets without naming a partition. Load it beside the main one:
``dagster dev -m pipelines.definitions -m pipelines.lifelong.definitions`` (or ``-w workspace.yaml``).
Its partitions and run config come from the settings (``settings.py``, ``configs/lifelong.yaml``), read when
Dagster loads the location, not when this module is imported; ``build_definitions`` takes any settings.
"""

import dagster as dg

from pipelines.data.resources import Warehouse
from pipelines.lifelong.daily_events import daily_events_asset
from pipelines.lifelong.jobs import LifelongJobs
from pipelines.lifelong.partitions import LifelongPartitions
from pipelines.lifelong.schedules import daily_schedule
from pipelines.lifelong.sensors import landing_sensor, walk_forward_sensor
from pipelines.lifelong.settings import LifelongSettings, load_settings
from pipelines.lifelong.walk_forward import walk_forward_asset
from pipelines.resources import MlflowTracking


def lifelong_assets(partitions: LifelongPartitions) -> list[dg.AssetsDefinition]:
    """``daily_events`` over the days and ``walk_forward`` over the windows."""
    return [daily_events_asset(partitions.days), walk_forward_asset(partitions.windows)]


def build_definitions(settings: LifelongSettings) -> dg.Definitions:
    partitions = settings.partitions()
    jobs = LifelongJobs.over(partitions)
    return dg.Definitions(
        assets=lifelong_assets(partitions),
        jobs=jobs.all(),
        schedules=[daily_schedule(settings, jobs)],
        sensors=[landing_sensor(settings, jobs), walk_forward_sensor(settings, partitions, jobs)],
        resources={"warehouse": Warehouse(), "mlflow_tracking": MlflowTracking()},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads: the location built from ``configs/lifelong.yaml`` (or ``RECMAMBA_LIFELONG_CONFIG``)."""
    return build_definitions(load_settings())
