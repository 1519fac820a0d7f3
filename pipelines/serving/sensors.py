"""Starts ``advance_user_states`` when event files wait in an inbox, so served states follow new events
within a minute, without retraining anything."""

import hashlib

import dagster as dg

from pipelines.paths import ProjectPaths
from pipelines.serving.inbox import inbox_files
from pipelines.serving.jobs import advance_user_states


@dg.sensor(
    job=advance_user_states,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches RECMAMBA_HOME/data/serving/<dataset>/inbox; advances served user states by new event files.",
)
def user_events_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    root = ProjectPaths.from_env().serving
    files = [f for d in sorted(root.iterdir()) if d.is_dir() for f in inbox_files(d)] if root.is_dir() else []
    if not files:
        return dg.SkipReason("No event files wait in any serving inbox.")
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return dg.RunRequest(run_key=digest.hexdigest(), tags={"recmamba/trigger": "user_events"})
