"""What the measuring benchmarks share: run this script again as a child process (so each measurement has a
process, a peak RSS and a kernel cache of its own) and summarise repeated runs as a median and a range."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(script: str, args: list[str], env: dict[str, str]) -> dict:
    """Run ``script`` with ``args`` and return the JSON object its last output line holds; a child that fails
    raises with the end of its stderr, so the error says why."""
    command = [sys.executable, script, *args]
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def median_range(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"
