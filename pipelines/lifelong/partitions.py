"""The daily partitions of the incremental ingest, and which landed file belongs to which day.

A partition is a calendar day (UTC) of event time, not an arrival: a file that lands late for an old day
re-materializes that day, and a walk-forward window is a range of these same days. A file's day is the
date in its name (``20220105`` or ``2022-01-05``), which is how daily log exports are named.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import dagster as dg

START_ENV = "RECMAMBA_DAILY_START"
DEFAULT_START = "2022-01-01"  # the synthetic streams start here
DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """Days from ``RECMAMBA_DAILY_START`` (default 2022-01-01) up to today."""
    return dg.DailyPartitionsDefinition(start_date=os.environ.get(START_ENV, DEFAULT_START))


DAILY_PARTITIONS = daily_partitions()


def day_of_file(path: Path) -> str | None:
    """The ``YYYY-MM-DD`` partition key named in the file's name, or None when it names no valid date."""
    for match in DATE_IN_NAME.finditer(path.name):
        try:
            return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
        except ValueError:
            continue
    return None
