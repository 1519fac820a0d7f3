"""The incremental refresh of the lifelong location: ingest exactly the days whose files are new or
changed, then walk forward one window at a time (test, update the models, move the champion), instead of
rebuilding and retraining everything.

The landing sensor keeps, per day, a digest of the day's files (names, sizes, modification times) as its
cursor, so a new day and a late file for an old day both request just that day's partition; the daily
schedule (``schedules.py``) requests every landed day that has no partition yet. Whichever started the
ingest, the run-status sensor ``walk_forward_after_ingest`` then requests the window after the latest walked
one once all its days are ingested, and again after each walked window, so a refresh catches up window by
window (the first window is started by the user, with a backfill, so that the models have a warm-up period
to train on). The runs they request take their run config from the location's settings (``settings.py``).
"""

from __future__ import annotations

import hashlib
import json
import time

import dagster as dg

from pipelines.data.sources.files import IngestError
from pipelines.lifelong.daily_ingest import DailyEventsConfig, files_by_day
from pipelines.lifelong.jobs import INGEST_JOB, WALK_FORWARD_JOB, LifelongJobs
from pipelines.lifelong.partitions import LifelongPartitions
from pipelines.lifelong.settings import LifelongSettings
from pipelines.paths import ProjectPaths
from pipelines.refresh.sensors import settle_seconds

DAILY_EVENTS_KEY, WALK_FORWARD_KEY = dg.AssetKey("daily_events"), dg.AssetKey("walk_forward")
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def landed_days(settings: LifelongSettings, paths: ProjectPaths) -> dict[str, tuple[str, float]]:
    """Per day with landed files: a digest of its files, and the newest modification time among them."""
    config = DailyEventsConfig(**settings.asset_config("daily_events"))
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


def ingest_requests(settings: LifelongSettings, days: list[str]) -> list[dg.RunRequest]:
    config = settings.run_config("daily_events")
    return [dg.RunRequest(partition_key=day, job_name=INGEST_JOB, run_config=config) for day in sorted(days)]


def next_window(instance: dg.DagsterInstance, partitions: LifelongPartitions) -> str | None:
    """The window after the latest walked one, if every day of it has been ingested."""
    walked = instance.get_materialized_partitions(WALK_FORWARD_KEY)
    if not walked:
        return None
    following = partitions.windows.get_next_partition_key(max(walked))
    if following is None:
        return None
    needed = partitions.days_of(following)
    ingested = instance.get_materialized_partitions(DAILY_EVENTS_KEY)
    return following if needed and set(needed) <= ingested else None


def walk_in_progress(instance: dg.DagsterInstance) -> bool:
    """Whether a run that materializes ``walk_forward`` is queued or running (windows go one at a time)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    return any(run.asset_selection and WALK_FORWARD_KEY in run.asset_selection for run in runs)


def walk_forward_requests(
    instance: dg.DagsterInstance, settings: LifelongSettings, partitions: LifelongPartitions
) -> list[dg.RunRequest]:
    window = next_window(instance, partitions)
    if window is None or walk_in_progress(instance):
        return []
    config = settings.run_config("walk_forward")
    return [
        dg.RunRequest(
            run_key=f"walk_forward:{window}", partition_key=window, job_name=WALK_FORWARD_JOB, run_config=config
        )
    ]


def landing_sensor(settings: LifelongSettings, jobs: LifelongJobs) -> dg.SensorDefinition:
    @dg.sensor(
        job=jobs.ingest,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Ingests each day whose landed files are new or changed (walk_forward_after_ingest walks on).",
    )
    def lifelong_landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = json.loads(context.cursor) if context.cursor else {}
        landed = landed_days(settings, ProjectPaths.from_env())
        settle, now = settle_seconds(), time.time()
        changed = [day for day, (digest, _) in landed.items() if seen.get(day) != digest]
        ready = [day for day in changed if now - landed[day][1] >= settle]
        cursor = {**seen, **{day: landed[day][0] for day in ready}}
        return dg.SensorResult(run_requests=ingest_requests(settings, ready), cursor=json.dumps(cursor, sort_keys=True))

    return lifelong_landing_sensor


def walk_forward_sensor(
    settings: LifelongSettings, partitions: LifelongPartitions, jobs: LifelongJobs
) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=jobs.all(),
        request_job=jobs.walk_forward,
        # On by default: it acts only after runs of the two lifelong jobs, which nothing starts unless asked to.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After an ingest or a walked window succeeds: the next window, once all its days are ingested.",
    )
    def walk_forward_after_ingest(context: dg.RunStatusSensorContext) -> list[dg.RunRequest]:
        return walk_forward_requests(context.instance, settings, partitions)

    return walk_forward_after_ingest
