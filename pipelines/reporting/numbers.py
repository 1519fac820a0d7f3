"""How the comparison writes its numbers, shared by the summary and the tables: intervals to the digits their
width supports, typographic minus signs, p-values and relative margins, blanks (never NaN) for what is unknown."""

from __future__ import annotations

import math

from recmodels.evaluation.stats import PairedDifference

MINUS = "\u2212"  # a typographic minus: "−0.012" reads as a number, "-0.012" as a dash


def with_interval(value: float, interval: tuple[float, float] | None) -> str:
    """``0.1643 [0.151, 0.178]``, or the point alone when no interval is known."""
    if interval is None or not math.isfinite(value):
        return number_text(value)
    return f"{value:.4f} {_bounds(*interval)}"


def difference_text(difference: PairedDifference, flip: bool = False) -> str:
    """``+0.0580 [0.041, 0.075]``; ``flip`` gives the other model minus the champion."""
    sign = -1.0 if flip else 1.0
    estimate = sign * difference.estimate
    low, high = sorted((sign * difference.low, sign * difference.high))
    return f"{_signed(estimate)} {_bounds(low, high)}"


def _bounds(low: float, high: float) -> str:
    """Interval bounds to two significant digits of the interval's width (at least three decimals)."""
    width = high - low
    decimals = 3 if width < 1e-9 else min(6, max(3, 1 - math.floor(math.log10(width))))  # 1e-9: rounding noise
    return f"[{_minus(f'{low:.{decimals}f}')}, {_minus(f'{high:.{decimals}f}')}]"


def _signed(value: float) -> str:
    return _minus(f"{value:+.4f}")


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def p_text(difference: PairedDifference, bare: bool = False) -> str:
    """``p = 0.64``, ``p = 0.003``, ``p < 0.001``; ``bare`` without the ``p``."""
    p_value = difference.p_value
    text = "< 0.001" if p_value < 0.001 else f"= {p_value:.2f}" if p_value >= 0.01 else f"= {p_value:.3f}"
    return text.removeprefix("= ") if bare else f"p {text}"


def joined(names: tuple[str, ...] | list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def rounded(value: float) -> str:
    """Two significant digits with thousands separators: 1234 -> 1,200."""
    digits = max(0, math.floor(math.log10(value)) - 1) if value > 0 else 0
    return f"{round(value, -digits):,.0f}"


def relative(value: float, other: float) -> str:
    if not (math.isfinite(value) and math.isfinite(other)) or other == 0:
        return "n/a"
    return f"{(value - other) / other:+.1%}"


def cell(value: float) -> float | str:
    return value if math.isfinite(value) else ""


def finite(value: float, default: float = -math.inf) -> float:
    return value if math.isfinite(value) else default


def number_text(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
