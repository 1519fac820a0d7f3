"""The day-partitioned ingest asset ``daily_events``: one partition per day of event time.

A run over one day ingests that day; a backfill over many days runs as one run (``single_run``), which is
the full rebuild. Either way the partition's rows are replaced, never appended, so re-materializing is
idempotent and a late file for an old day lands in its day when that day is re-materialized. The days are
the location's (``partitions.py``), so the asset is built with them by ``daily_events_asset``.
"""

import dagster as dg

from pipelines.data.resources import POOL, Warehouse
from pipelines.data.table_writes import record_write
from pipelines.lifelong.daily_ingest import DailyEventsConfig, ingest_days
from pipelines.paths import ProjectPaths
from pipelines.serving.landing import land_served_events

GROUP = "lifelong"


def daily_events_asset(days: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    """``daily_events`` with one partition per day of ``days``."""

    @dg.asset(
        pool=POOL,
        group_name=GROUP,
        kinds={"duckdb"},
        partitions_def=days,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def daily_events(
        context: dg.AssetExecutionContext, config: DailyEventsConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        """Events of the partition's days with stable dense ids (tables daily_events, daily_user_map,
        daily_item_map, daily_sequence_chunks and the view daily_sequences of the dataset's warehouse)."""
        return ingest_partition_days(context, config, warehouse)

    return daily_events


def ingest_partition_days(
    context: dg.AssetExecutionContext, config: DailyEventsConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    days = context.partition_keys
    paths = ProjectPaths.from_env()
    land_served_events(paths.serving / config.dataset_name, paths.served_events(config.dataset_name))
    with warehouse.connect(config.dataset_name) as con:
        summary = ingest_days(con, config, paths, days)
        record_write(con, context.asset_key.to_user_string(), context.run_id)
    return dg.MaterializeResult(
        metadata={
            "dataset": config.dataset_name,
            "days": summary.days,
            "files": summary.files,
            "row_count": summary.rows,
            "total_events": summary.total_events,
            "users": summary.users,
            "items": summary.items,
        }
    )
