"""The incremental refresh of the lifelong location: ingest exactly the days whose files are new or
changed, then walk forward one window at a time (test, update the models, move the champion), instead of
rebuilding and retraining everything.

The landing sensor keeps, per day, a digest of the day's files (names, sizes, modification times) as its
cursor, so a new day and a late file for an old day both request just that day's partition; the daily
schedule requests every landed day that has no partition yet. Whichever started the ingest, the run-status
sensor ``walk_forward_after_ingest`` then requests the window after the latest walked one once all its days
are ingested, and again after each walked window, so a refresh catches up window by window (the first
window is started by the user, with a backfill, so that the models have a warm-up period to train on).
Run config: the YAML named by ``RECMAMBA_LIFELONG_CONFIG`` (keys ``ops.daily_events`` and
``ops.walk_forward``), else every default.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg
import yaml

from pipelines.data.sources.files import IngestError
from pipelines.lifelong.daily_ingest import DailyEventsConfig, files_by_day
from pipelines.lifelong.partitions import DAILY_PARTITIONS
from pipelines.lifelong.walk_forward import WINDOW_PARTITIONS
from pipelines.paths import ProjectPaths
from pipelines.refresh.sensors import settle_seconds

LIFELONG_CONFIG_ENV = "RECMAMBA_LIFELONG_CONFIG"
INGEST_JOB, WALK_FORWARD_JOB = "daily_ingest", "walk_forward_refresh"
WALK_FORWARD_KEY = dg.AssetKey("walk_forward")
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

daily_ingest_job = dg.define_asset_job(
    INGEST_JOB, selection=["daily_events"], partitions_def=DAILY_PARTITIONS, description="Ingest landed days."
)
walk_forward_job = dg.define_asset_job(
    WALK_FORWARD_JOB, selection=["walk_forward"], partitions_def=WINDOW_PARTITIONS, description="Walk one window."
)
LIFELONG_JOBS = [daily_ingest_job, walk_forward_job]


def lifelong_run_config(asset: str) -> dict:
    """The run config of ``asset``'s job from ``RECMAMBA_LIFELONG_CONFIG`` (empty: the asset's defaults)."""
    path = os.environ.get(LIFELONG_CONFIG_ENV, "")
    if not path:
        return {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"lifelong run config {path} does not exist (set {LIFELONG_CONFIG_ENV})")
    ops = (yaml.safe_load(Path(path).read_text()) or {}).get("ops", {})
    return {"ops": {asset: ops[asset]}} if asset in ops else {}


def landed_days(paths: ProjectPaths) -> dict[str, tuple[str, float]]:
    """Per day with landed files: a digest of its files, and the newest modification time among them."""
    config = DailyEventsConfig(
        **lifelong_run_config("daily_events").get("ops", {}).get("daily_events", {}).get("config", {})
    )
    try:
        by_day = files_by_day(config, paths)
    except IngestError:  # no landing folder or no files yet
        return {}
    days = {}
    for day, files in by_day.items():
        digest = hashlib.sha256()
        for path in files:
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        days[day] = (digest.hexdigest(), max(path.stat().st_mtime for path in files))
    return days


def ingest_requests(days: list[str]) -> list[dg.RunRequest]:
    config = lifelong_run_config("daily_events")
    return [dg.RunRequest(partition_key=day, job_name=INGEST_JOB, run_config=config) for day in sorted(days)]


def next_window(instance: dg.DagsterInstance) -> str | None:
    """The window after the latest walked one, if every day of it has been ingested."""
    walked = instance.get_materialized_partitions(WALK_FORWARD_KEY)
    if not walked:
        return None
    following = WINDOW_PARTITIONS.get_next_partition_key(max(walked))
    if following is None:
        return None
    window = WINDOW_PARTITIONS.time_window_for_partition_key(following)
    needed = DAILY_PARTITIONS.get_partition_keys_in_time_window(window)
    ingested = instance.get_materialized_partitions(dg.AssetKey("daily_events"))
    return following if needed and set(needed) <= ingested else None


def walk_in_progress(instance: dg.DagsterInstance) -> bool:
    """Whether a run that materializes ``walk_forward`` is queued or running (windows go one at a time)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    return any(run.asset_selection and WALK_FORWARD_KEY in run.asset_selection for run in runs)


def walk_forward_requests(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    window = next_window(instance)
    if window is None or walk_in_progress(instance):
        return []
    config = lifelong_run_config("walk_forward")
    return [
        dg.RunRequest(
            run_key=f"walk_forward:{window}", partition_key=window, job_name=WALK_FORWARD_JOB, run_config=config
        )
    ]


@dg.sensor(
    job=daily_ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Ingests each day whose landed files are new or changed (walk_forward_after_ingest walks on).",
)
def lifelong_landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    landed = landed_days(ProjectPaths.from_env())
    settle, now = settle_seconds(), time.time()
    changed = [day for day, (digest, _) in landed.items() if seen.get(day) != digest]
    ready = [day for day in changed if now - landed[day][1] >= settle]
    cursor = {**seen, **{day: landed[day][0] for day in ready}}
    return dg.SensorResult(run_requests=ingest_requests(ready), cursor=json.dumps(cursor, sort_keys=True))


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=LIFELONG_JOBS,
    request_job=walk_forward_job,
    # On by default: it acts only after runs of the two lifelong jobs, which nothing starts unless asked to.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After an ingest or a walked window succeeds: the next window, once all its days are ingested.",
)
def walk_forward_after_ingest(context: dg.RunStatusSensorContext) -> list[dg.RunRequest]:
    return walk_forward_requests(context.instance)


@dg.schedule(
    job=daily_ingest_job,
    cron_schedule="0 5 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 05:00: ingest every landed day that has no partition yet.",
)
def lifelong_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    ingested = context.instance.get_materialized_partitions(dg.AssetKey("daily_events"))
    return ingest_requests([day for day in landed_days(ProjectPaths.from_env()) if day not in ingested])
