"""`procession.humanize`: numbers for people, never scientific notation, never misleading."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procession import humanize

SCIENTIFIC = re.compile(r"\d[eE][-+]?\d")
RATE_SECONDS = {"s": 1.0, "min": 60.0, "hour": 3600.0, "day": 86400.0}
DURATION_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0, "days": 86400.0}

reals = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)
rates = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


def significant_digits(shown: str) -> int:
    """Significant digits of a plain decimal like '12,000', '0.071', '2.5'."""
    digits = shown.replace(",", "").replace("-", "")
    whole, _, fraction = digits.partition(".")
    if fraction:
        return len((whole + fraction).lstrip("0"))
    return len(whole.lstrip("0").rstrip("0")) or 1


def parse_number(shown: str) -> float:
    return float(shown.replace(",", ""))


def rate_value(shown: str) -> float:
    """Per second, read back from what `rate` printed ('< 0.01 / day' is just below)."""
    amount, _, unit = shown.rpartition(" / ")
    below = amount.startswith("< ")
    value = parse_number(amount.removeprefix("< ")) / RATE_SECONDS[unit]
    return math.nextafter(value, 0) if below else value


def duration_value(shown: str) -> float:
    if shown == "< 1 s":
        return 0.5
    amount, _, unit = shown.partition(" ")
    return parse_number(amount) * DURATION_SECONDS[unit]


@pytest.mark.parametrize(
    ("per_second", "shown"),
    [
        (8.267195767195768e-07, "0.071 / day"),
        (3 / 3600, "3 / hour"),
        (2.5 / 60, "2.5 / min"),
        (1234.5, "1,200 / s"),
        (0.9996, "1 / s"),
        (1e-9, "< 0.01 / day"),
        (0.0, "0 / s"),
        (None, "-"),
        (math.inf, "∞ / s"),
        (math.nan, "-"),
    ],
)
def test_rates_read_in_the_unit_that_makes_them_at_least_one(
    per_second: float | None, shown: str
) -> None:
    assert humanize.rate(per_second) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (0.3, "< 1 s"),
        (45, "45 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (95, "1.6 min"),
        (9000, "2.5 h"),
        (86_400, "1 day"),
        (3 * 86_400, "3 days"),
        (1e9, "12,000 days"),
        (None, "-"),
        (math.inf, "∞"),
    ],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert humanize.duration(seconds) == shown


def test_counts_numbers_ages_and_due_times() -> None:
    assert humanize.count(1_234_567) == "1,234,567" and humanize.count(None) == "-"
    assert humanize.counted(1, "event") == "1 event"
    assert humanize.counted(1_204, "delivery", "deliveries") == "1,204 deliveries"
    assert humanize.number(0.0714285) == "0.071" and humanize.number(12_345) == "12,000"
    assert humanize.number(9.96) == "10" and humanize.number(-0.5) == "-0.5"
    assert humanize.number(1e-30) == "0." + "0" * 29 + "1"
    assert humanize.ago(90) == "1.5 min ago" and humanize.ago(0.2) == "just now"
    assert humanize.until(9000) == "in 2.5 h" and humanize.until(-90) == "1.5 min overdue"
    assert humanize.until(math.inf) == "never" and humanize.ago(None) == "-"
    with pytest.raises(ValueError):
        humanize.rate(-1.0)
    with pytest.raises(ValueError):
        humanize.duration(-1.0)


@given(st.one_of(st.none(), st.floats()), st.integers(min_value=1, max_value=6))
def test_a_number_is_never_scientific_and_has_at_most_n_significant_digits(
    value: float | None, digits: int
) -> None:
    shown = humanize.number(value, digits)
    assert not SCIENTIFIC.search(shown)
    if value is not None and math.isfinite(value):
        assert significant_digits(shown) <= digits
        if value != 0 and shown != "0":
            error = abs(Decimal(shown.replace(",", "")) - Decimal(value)) / abs(Decimal(value))
            assert error <= Decimal(10) ** (1 - digits)


@given(reals, reals)
def test_numbers_are_monotone(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert parse_number(humanize.number(low)) <= parse_number(humanize.number(high))


@given(st.one_of(st.none(), st.floats(min_value=0)))
def test_a_rate_is_never_scientific(per_second: float | None) -> None:
    shown = humanize.rate(per_second)
    assert not SCIENTIFIC.search(shown) and "e-" not in shown
    if per_second is not None and 0 < per_second < math.inf:
        amount = shown.rpartition(" / ")[0].removeprefix("< ")
        assert significant_digits(amount) <= 2


@given(rates, rates)
def test_rates_are_monotone(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert rate_value(humanize.rate(low)) <= rate_value(humanize.rate(high))


@given(rates)
def test_a_rate_reads_back_close_to_itself(per_second: float) -> None:
    shown = humanize.rate(per_second)
    if per_second * 86400 >= 0.01:
        assert math.isclose(rate_value(shown), per_second, rel_tol=0.05)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False), st.floats(0, 1e12))
def test_durations_are_monotone_and_never_scientific(a: float, b: float) -> None:
    low, high = sorted((a, b))
    shown_low, shown_high = humanize.duration(low), humanize.duration(high)
    assert not SCIENTIFIC.search(shown_low + shown_high)
    assert duration_value(shown_low) <= duration_value(shown_high)
    if high >= 1:
        assert math.isclose(duration_value(shown_high), high, rel_tol=0.05)
