"""Time units and the plausible time range of raw timestamps.

A wrong time unit is the quietest way to ruin a dataset: milliseconds read as seconds land tens of
thousands of years ahead (or overflow), seconds read as milliseconds in January 1970, and both would still
train. So every staged timestamp must lie in a plausible range, checked in the file's own unit before
anything is multiplied, and the error says which unit would have made the value plausible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# raw value -> milliseconds: raw * multiply // divide
UNITS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def utc_ms(text: str) -> int:
    """An ISO date or datetime as milliseconds since the epoch; a value without a time zone is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not an ISO date or datetime such as 1995-01-01") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS


def plausible_window(min_timestamp: str, max_timestamp: str) -> tuple[int, int]:
    """(first, last) plausible millisecond; an empty ``max_timestamp`` is one day after now."""
    last = utc_ms(max_timestamp) if max_timestamp else (datetime.now(UTC) + timedelta(days=1) - EPOCH) // ONE_MS
    return utc_ms(min_timestamp), last


def raw_bounds(window: tuple[int, int], unit: str) -> tuple[int, int]:
    """The window in the file's own unit, so that no out-of-range value is ever multiplied (and overflows)."""
    multiply, divide = UNITS[unit]
    first, last = window
    return -(-first // multiply) * divide, (last // multiply + 1) * divide - 1


def fits(raw: int, unit: str, window: tuple[int, int]) -> bool:
    first, last = raw_bounds(window, unit)
    return first <= raw <= last


def as_date(raw: int, unit: str) -> str:
    multiply, divide = UNITS[unit]
    try:
        return (EPOCH + raw * multiply // divide * ONE_MS).strftime("%Y-%m-%d %H:%M:%S")
    except OverflowError:
        return "beyond the year 9999"


def implausible(raw: int, unit: str, window: tuple[int, int], fix: str) -> str:
    """Why ``raw`` is refused, and which unit would have made it plausible. ``fix`` says how the user
    changes the unit: ``setting`` (the time_unit field), ``format`` (fixed by the file format) or ``none``
    (a typed timestamp column)."""
    first, last = (as_date(bound, "ms") for bound in window)
    problem = f"timestamp {raw} read as {UNIT_NAMES[unit]} is {as_date(raw, unit)}, outside {first} .. {last}"
    plausible = next((other for other in UNITS if other != unit and fits(raw, other, window)), None)
    if fix == "none" or plausible is None:
        return problem
    hint = f"looks like {UNIT_NAMES[plausible]} read as {UNIT_NAMES[unit]}"
    if fix == "setting":
        return f"{problem}; {hint}: set time_unit: {plausible}"
    return f"{problem}; {hint}, but this format's timestamps are {UNIT_NAMES[unit]}"
