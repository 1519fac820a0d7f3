"""Runs one sweep point's training process under a time limit and records how it ended, so that a point
which ran out of time or memory becomes a row marked as such instead of a failed asset.

``python -m pipelines.sweep.launcher STATUS_FILE SECONDS -- COMMAND...``: the command inherits this
process's environment (the Dagster Pipes channel included) and is killed at the limit; STATUS_FILE gets
``{"returncode": int, "timed_out": bool}``, and this process exits with the command's code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TIMED_OUT = 124  # the exit code of coreutils' timeout, kept so that shells read it the same way


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: python -m pipelines.sweep.launcher STATUS_FILE SECONDS -- COMMAND...")
    status_file, seconds, command = Path(argv[0]), float(argv[1]), argv[3:]
    try:
        returncode, timed_out = subprocess.run(command, timeout=seconds, check=False).returncode, False
    except subprocess.TimeoutExpired:  # run() has killed the process and reaped it
        returncode, timed_out = TIMED_OUT, True
    status_file.write_text(json.dumps({"returncode": returncode, "timed_out": timed_out}))
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
