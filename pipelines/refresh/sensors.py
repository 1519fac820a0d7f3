"""Starts a refresh when new raw files land, so models stay as fresh as the logs.

A refresh must not read a file that is still being written. Writers publish by rename (``day.csv.part`` or
``.day.csv`` -> ``day.csv``), so names in progress are ignored; a writer that appends in place is waited for:
no run starts until every landed file has gone unchanged for a settle time.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipelines.data.sources.drift import DRIFT_FOLDER
from pipelines.data.sources.files import is_published
from pipelines.paths import ProjectPaths
from pipelines.refresh.jobs import refresh_job, refresh_run_config

# Sub-folders of the landing folder written by the pipeline itself, not by arriving logs (the drifting
# stream's days are the lifelong sensor's business, pipelines/lifelong/sensors.py).
GENERATED_FOLDERS = frozenset({"synthetic", DRIFT_FOLDER})
SETTLE_SECONDS_ENV = "RECMAMBA_LANDING_SETTLE_SECONDS"
DEFAULT_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class LandedFile:
    relative: Path
    size: int
    mtime_ns: int

    def age_seconds(self, now: float) -> float:
        return now - self.mtime_ns / 1e9


def is_arrived_log(relative: Path) -> bool:
    """Arrived logs only: not the pipeline's own output, and published (see ``files.is_published``)."""
    return relative.parts[0] not in GENERATED_FOLDERS and is_published(relative)


def landed_files(landing: Path) -> list[LandedFile]:
    """Every published file under ``landing``, in path order."""
    if not landing.is_dir():
        return []
    files = []
    for path in sorted(landing.rglob("*")):
        relative = path.relative_to(landing)
        if path.is_file() and is_arrived_log(relative):
            stat = path.stat()
            files.append(LandedFile(relative, stat.st_size, stat.st_mtime_ns))
    return files


def landing_fingerprint(files: list[LandedFile]) -> str:
    """A digest of every landed file's path, size and modification time."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative}\0{file.size}\0{file.mtime_ns}\n".encode())
    return digest.hexdigest()


def settle_seconds() -> float:
    """How long every landed file must have gone unchanged before a run starts."""
    value = os.environ.get(SETTLE_SECONDS_ENV, "").strip() or str(DEFAULT_SETTLE_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise ValueError(f"{SETTLE_SECONDS_ENV} must be a number of seconds, 0 or more; found {value!r}")
    return seconds


def newest_unsettled(files: list[LandedFile], now: float, settle: float) -> LandedFile | None:
    """The most recently changed file if it changed less than ``settle`` seconds before ``now``."""
    newest = max(files, key=lambda file: file.mtime_ns)
    return newest if newest.age_seconds(now) < settle else None


@dg.sensor(
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches RECMAMBA_HOME/data/landing and starts a refresh when its files change, once every file has been"
        f" unchanged for {SETTLE_SECONDS_ENV} seconds (default {DEFAULT_SETTLE_SECONDS:.0f})."
    ),
)
def landing_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    files = landed_files(ProjectPaths.from_env().landing)
    if not files:
        return dg.SkipReason("The landing folder holds no raw files yet.")
    fingerprint = landing_fingerprint(files)
    if fingerprint == context.cursor:
        return dg.SkipReason(f"No change among the {len(files)} landed files.")
    settle = settle_seconds()
    now = time.time()
    unsettled = newest_unsettled(files, now, settle)
    if unsettled is not None:
        return dg.SkipReason(
            f"Landed file {unsettled.relative} is still settling: it changed {unsettled.age_seconds(now):.0f} s ago,"
            f" and a refresh starts only once every file has been unchanged for {settle:.0f} s ({SETTLE_SECONDS_ENV})."
        )
    request = dg.RunRequest(
        run_key=fingerprint, run_config=refresh_run_config(), tags={"recmamba/trigger": "landing_files"}
    )
    return dg.SensorResult(run_requests=[request], cursor=fingerprint)
