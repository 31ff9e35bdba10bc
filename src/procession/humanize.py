"""Numbers for people: counts, rates, durations and ages, as a command line shows them.

    count(1234567)          '1,234,567'
    counted(1, "event")     '1 event'          counted(3, "event")   '3 events'
    number(0.071428)        '0.071'            number(12345)         '12,000'
    rate(8.267e-07)         '0.071 / day'      rate(0.00083)         '3 / hour'
    duration(9000)          '2.5 h'            duration(259200)      '3 days'
    ago(90)                 '1.5 min ago'      until(-90)            '1.5 min overdue'

Never scientific notation, at most `digits` significant digits (default 2), thousands
separators, and monotone: a larger input never reads smaller. None (unknown) is "-", an
infinite rate or duration "∞". Only the standard library: any layer may use it.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

UNKNOWN = "-"
INFINITE = "∞"

RATE_UNITS: tuple[tuple[str, float], ...] = (
    ("s", 1.0),
    ("min", 60.0),
    ("hour", 3600.0),
    ("day", 86400.0),
)
"""Per second, per minute, per hour, per day: a rate is shown in the first unit in which
it is at least 1 (a slow one per day, down to `SMALLEST_RATE`)."""

SMALLEST_RATE = 0.01
"""Per day; below it a rate reads "< 0.01 / day"."""

DURATION_UNITS: tuple[tuple[str, str, float, float], ...] = (
    # singular, plural, seconds in one, shown up to (in that unit, exclusive)
    ("s", "s", 1.0, 60.0),
    ("min", "min", 60.0, 60.0),
    ("h", "h", 3600.0, 24.0),
    ("day", "days", 86400.0, math.inf),
)


def count(n: int | None) -> str:
    """An integer with thousands separators: 1,234,567."""
    return UNKNOWN if n is None else f"{n:,}"


def counted(n: int, thing: str, things: str | None = None) -> str:
    """`3 events`, `1 event`, `1,204 deliveries` (give the plural when it is not thing+s)."""
    plural = things if things is not None else f"{thing}s"
    return f"{n:,} {thing if n == 1 else plural}"


def number(value: float | None, digits: int = 2) -> str:
    """A real number rounded to `digits` significant digits, in plain decimal notation with
    thousands separators and no trailing zeros: 0.071, 2.5, 12,000. None is "-"."""
    if digits < 1:
        raise ValueError(f"digits must be at least 1, not {digits}")
    if value is None or math.isnan(value):
        return UNKNOWN
    if math.isinf(value):
        return INFINITE if value > 0 else f"-{INFINITE}"
    rounded = _round(Decimal(value), digits)
    if rounded == 0:
        return "0"
    sign = "-" if rounded < 0 else ""
    rounded = abs(rounded)
    if rounded == rounded.to_integral_value():
        return f"{sign}{int(rounded):,}"
    whole, _, fraction = f"{rounded:f}".partition(".")
    return f"{sign}{int(whole):,}.{fraction.rstrip('0')}"


def _round(value: Decimal, digits: int) -> Decimal:
    if value == 0:
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    rounded = value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN)
    if rounded.adjusted() > value.adjusted():  # 9.96 became 10.0: one digit too many
        rounded = value.quantize(Decimal(1).scaleb(exponent + 1), rounding=ROUND_HALF_EVEN)
    return rounded


def rate(per_second: float | None, digits: int = 2) -> str:
    """A rate given per second, in the unit that makes it at least 1: `3 / hour`,
    `0.071 / day`, `1,200 / s`; `< 0.01 / day` when slower, `0 / s` when nothing."""
    if per_second is None or math.isnan(per_second):
        return UNKNOWN
    if math.isinf(per_second):
        return f"{INFINITE if per_second > 0 else '-' + INFINITE} / s"
    if per_second < 0:
        raise ValueError(f"a rate is not negative: {per_second}")
    if per_second == 0:
        return "0 / s"
    for unit, seconds in RATE_UNITS:
        value = per_second * seconds
        if float(_round(Decimal(value), digits)) >= 1:
            return f"{number(value, digits)} / {unit}"
    if value < SMALLEST_RATE:
        return f"< {number(SMALLEST_RATE)} / {unit}"
    return f"{number(value, digits)} / {unit}"


def duration(seconds: float | None, digits: int = 2) -> str:
    """A length of time in the largest unit it fills: `45 s`, `12 min`, `2.5 h`, `3 days`;
    `< 1 s` below a second, "-" unknown, "∞" never."""
    if seconds is None or math.isnan(seconds):
        return UNKNOWN
    if seconds < 0:
        raise ValueError(f"a duration is not negative: {seconds}")
    if math.isinf(seconds):
        return INFINITE
    if seconds == 0:
        return "0 s"
    if float(_round(Decimal(seconds), digits)) < 1:
        return "< 1 s"
    for index, (singular, plural, size, limit) in enumerate(DURATION_UNITS):
        value = float(_round(Decimal(seconds / size), digits))
        if index > 0:  # 59.6 s rounds to 60 s: one minute, not 0.99 min
            value = max(value, 1.0)
        if value < limit:
            return f"{number(value, digits)} {singular if value == 1 else plural}"
    raise AssertionError("unreachable: the last unit has no limit")  # pragma: no cover


def ago(seconds: float | None) -> str:
    """How long ago something happened, `seconds` before now: `3 min ago`, `just now`
    (under a second); a moment in the future reads `in 3 min`."""
    if seconds is None or math.isnan(seconds):
        return UNKNOWN
    if math.isinf(seconds):
        return "never"
    if abs(seconds) < 1:
        return "just now"
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def until(seconds: float | None) -> str:
    """When something is due, `seconds` from now: `in 2.5 h`, `now`; `3 min overdue` past."""
    if seconds is None or math.isnan(seconds):
        return UNKNOWN
    if math.isinf(seconds):
        return "never"
    if abs(seconds) < 1:
        return "now"
    if seconds < 0:
        return f"{duration(-seconds)} overdue"
    return f"in {duration(seconds)}"
