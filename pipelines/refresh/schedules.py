"""A daily refresh, off until a user turns it on in the UI (it retrains every model)."""

from __future__ import annotations

import dagster as dg

from pipelines.refresh.jobs import refresh_job, refresh_run_config


@dg.schedule(
    job=refresh_job,
    cron_schedule="0 4 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 04:00: ingest, rebuild the split, retrain and compare every model.",
)
def daily_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_config=refresh_run_config(), tags={"recmamba/trigger": "schedule"})
