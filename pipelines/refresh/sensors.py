"""Starts a refresh when new raw files land, so models stay as fresh as the logs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from pipelines.paths import ProjectPaths
from pipelines.refresh.jobs import refresh_job, refresh_run_config

# Sub-folders of the landing folder written by the pipeline itself, not by arriving logs.
GENERATED_FOLDERS = frozenset({"synthetic"})


def landing_fingerprint(landing: Path) -> tuple[str, int]:
    """A digest of every landed file's path, size and modification time, and the number of files."""
    digest = hashlib.sha256()
    count = 0
    if landing.is_dir():
        for path in sorted(landing.rglob("*")):
            relative = path.relative_to(landing)
            if not path.is_file() or relative.parts[0] in GENERATED_FOLDERS or path.name.startswith("."):
                continue
            stat = path.stat()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
    return digest.hexdigest(), count


@dg.sensor(
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches RECMAMBA_HOME/data/landing and starts a refresh when its files change.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    fingerprint, count = landing_fingerprint(ProjectPaths.from_env().landing)
    if count == 0:
        return dg.SkipReason("The landing folder holds no raw files yet.")
    if fingerprint == context.cursor:
        return dg.SkipReason(f"No change among the {count} landed files.")
    request = dg.RunRequest(
        run_key=fingerprint, run_config=refresh_run_config(), tags={"recmamba/trigger": "landing_files"}
    )
    return dg.SensorResult(run_requests=[request], cursor=fingerprint)
