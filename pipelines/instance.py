"""A Dagster home is created and migrated by one process, once, before any run opens it.

Dagster creates a home's sqlite storages (``history/runs.db``, ``history/runs/index.db``,
``schedules/schedules.db``) in whichever process opens the instance first, with nothing that serializes
processes. Two ``dagster asset materialize`` started at once on a new home both create the tables and both
stamp the alembic version: one of them fails with "table ... already exists", or both stamp and the home is
left with two alembic heads, after which every run fails with "Version table 'alembic_version' has more than
one head present". Preparing the home under a file lock before starting a run closes that window.

``python -m pipelines.main`` prepares its home itself; before your own ``dagster`` commands on a new home, run
``DAGSTER_HOME=... python -m pipelines.instance``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pipelines.paths import PROJECT_DIR

INSTANCE_SETTINGS = PROJECT_DIR / "configs" / "dagster.yaml"
# Both live in the home itself, so that every process preparing the same home sees the same ones.
LOCK_FILE = ".recmamba_prepare.lock"
MIGRATED_MARKER = ".recmamba_migrated_for_dagster"


def prepare_dagster_home(home: Path) -> Path:
    """Make ``home`` a ready Dagster home and return its absolute path.

    A new home gets the project's instance settings (``configs/dagster.yaml``); an existing ``dagster.yaml`` is
    left alone. The instance storage is created if missing, and migrated once per Dagster version. Safe to call
    from several processes at once; on a prepared home it only opens the instance and writes nothing.
    """
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(home / LOCK_FILE):
        copy_instance_settings(home)
        create_and_migrate_storage(home)
    return home


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released when the file closes, even if the process dies)."""
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def copy_instance_settings(home: Path) -> None:
    settings = home / "dagster.yaml"
    if not settings.exists():
        shutil.copyfile(INSTANCE_SETTINGS, settings)


def create_and_migrate_storage(home: Path) -> None:
    """Opening the instance creates and stamps any missing storage; ``upgrade`` runs the schema and data
    migrations, which walk every run's event log, so it runs only when the home has not seen this Dagster."""
    marker = home / MIGRATED_MARKER
    with dg.DagsterInstance.from_config(str(home)) as instance:
        if migrated_for(marker) != dg.__version__:
            instance.upgrade()
            marker.write_text(f"{dg.__version__}\n")


def migrated_for(marker: Path) -> str | None:
    """The Dagster version the home was last migrated for, or None if never."""
    return marker.read_text().strip() if marker.exists() else None


def main() -> int:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print("Set DAGSTER_HOME to the folder to prepare as a Dagster home.", file=sys.stderr)
        return 2
    print(f"Dagster home ready: {prepare_dagster_home(Path(home))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
