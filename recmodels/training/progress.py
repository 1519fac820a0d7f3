"""Progress lines inside long loops: an epoch or an evaluation at real size runs for many minutes.

A line goes to the ``recmodels.training.progress`` logger at most every ``every_seconds`` (and never for loops that
finish sooner): work done of the total, the rate, and the time still needed. The command line prints the
logger to stderr; the Dagster Pipes worker forwards it to the run log.
"""

from __future__ import annotations

import logging
import time

LOGGER = logging.getLogger("recmodels.training.progress")
EVERY_SECONDS = 30.0


class ProgressLog:
    """Counts ``unit``s of one piece of work (``what``) towards ``total`` and logs where it stands."""

    def __init__(self, what: str, total: int, unit: str, every_seconds: float = EVERY_SECONDS) -> None:
        self.what, self.total, self.unit, self.every_seconds = what, total, unit, every_seconds
        self.done = 0
        self.started = self.last_logged = time.perf_counter()

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.perf_counter()
        if now - self.last_logged >= self.every_seconds:
            self.last_logged = now
            LOGGER.info(self.line(now - self.started))

    def line(self, elapsed: float) -> str:
        """``epoch 2: 120,000/480,000 events (25%), 1,234 events/s, 291 s to go``."""
        rate = self.done / max(elapsed, 1e-9)
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        to_go = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (
            f"{self.what}: {self.done:,}/{self.total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s, "
            f"{to_go:,.0f} s to go"
        )
