"""The daily partitions of the incremental ingest, the walk-forward windows over them, and which landed file
belongs to which day.

A partition is a calendar day (UTC) of event time, not an arrival: a file that lands late for an old day
re-materializes that day, and a walk-forward window is a range of these same days (one, or the seven of a
week). A file's day is the date in its name (``20220105`` or ``2022-01-05``), which is how daily log exports
are named. Both partitions are built from the location's settings (``settings.py``) when its definitions are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import dagster as dg

DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


@dataclass(frozen=True)
class LifelongPartitions:
    """The ingest's days (``daily_events``) and the walk-forward's windows (``walk_forward``) over them."""

    days: dg.DailyPartitionsDefinition
    windows: dg.TimeWindowPartitionsDefinition  # the days themselves, or weeks

    @classmethod
    def starting(cls, first_day: date, window: Literal["day", "week"]) -> LifelongPartitions:
        """Days from ``first_day`` up to today, and windows of one day or one week over them."""
        days = dg.DailyPartitionsDefinition(start_date=first_day.isoformat())
        if window == "day":
            return cls(days, days)
        if window == "week":
            return cls(days, dg.WeeklyPartitionsDefinition(start_date=first_day.isoformat()))
        raise ValueError(f"a walk-forward window is a 'day' or a 'week', found {window!r}")

    def days_of(self, window_key: str) -> list[str]:
        """The day partition keys of the window ``window_key``."""
        return self.days.get_partition_keys_in_time_window(self.windows.time_window_for_partition_key(window_key))


def day_of_file(path: Path) -> str | None:
    """The ``YYYY-MM-DD`` partition key named in the file's name, or None when it names no valid date."""
    for match in DATE_IN_NAME.finditer(path.name):
        try:
            return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
        except ValueError:
            continue
    return None
