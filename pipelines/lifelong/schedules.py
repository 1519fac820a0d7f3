"""The daily catch-up of the lifelong location, off until a user turns it on: every landed day without a
partition is ingested (the landing sensor handles new and changed files as they come)."""

from __future__ import annotations

import dagster as dg

from pipelines.lifelong.jobs import LifelongJobs
from pipelines.lifelong.sensors import DAILY_EVENTS_KEY, ingest_requests, landed_days
from pipelines.lifelong.settings import LifelongSettings
from pipelines.paths import ProjectPaths


def daily_schedule(settings: LifelongSettings, jobs: LifelongJobs) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=jobs.ingest,
        cron_schedule="0 5 * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Daily at 05:00: ingest every landed day that has no partition yet.",
    )
    def lifelong_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        ingested = context.instance.get_materialized_partitions(DAILY_EVENTS_KEY)
        landed = landed_days(settings, ProjectPaths.from_env())
        return ingest_requests(settings, [day for day in landed if day not in ingested])

    return lifelong_daily
