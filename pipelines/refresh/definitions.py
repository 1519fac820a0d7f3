"""The refresh domain's part of the code location: the refresh job and what starts it (schedule, landing sensor)."""

import dagster as dg

from pipelines.refresh.jobs import refresh_job
from pipelines.refresh.schedules import daily_refresh
from pipelines.refresh.sensors import landing_files_sensor

refresh_defs = dg.Definitions(jobs=[refresh_job], schedules=[daily_refresh], sensors=[landing_files_sensor])
