"""Schedule expressions as EventBridge Scheduler evaluates them (time zones and DST included)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from mailroom_local.cron import CronExpression, ScheduleExpressionError, parse


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expression: str, after: datetime, count: int, timezone: str = "UTC") -> list[datetime]:
    parsed = parse(expression, timezone)
    times: list[datetime] = []
    for _ in range(count):
        following = parsed.next_after(after)
        assert following is not None
        times.append(following)
        after = following
    return times


# ------------------------------------------------------------------------------ cron: fields
def test_daily_at_ten_utc() -> None:
    assert fires("cron(0 10 * * ? *)", utc(2026, 11, 28, 10, 0), 2) == [utc(2026, 11, 29, 10), utc(2026, 11, 30, 10)]
    assert fires("cron(0 10 * * ? *)", utc(2026, 11, 28, 9, 59, 59), 1) == [utc(2026, 11, 28, 10)]


def test_steps_ranges_and_lists() -> None:
    assert fires("cron(0/15 * * * ? *)", utc(2026, 1, 1, 0, 7), 3) == [
        utc(2026, 1, 1, 0, 15),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 0, 45),
    ]
    assert fires("cron(*/20 8-9 * * ? *)", utc(2026, 1, 1), 3)[-1] == utc(2026, 1, 1, 8, 40)
    assert fires("cron(5,35 1 * * ? *)", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 1, 5), utc(2026, 1, 1, 1, 35)]
    assert fires("cron(0 12 1 JAN,JUL ? *)", utc(2026, 2, 1), 2) == [utc(2026, 7, 1, 12), utc(2027, 1, 1, 12)]


def test_day_of_week_numbers_and_names() -> None:
    # 1 = Sunday ... 7 = Saturday; 2026-11-28 is a Saturday.
    assert fires("cron(0 9 ? * MON-FRI *)", utc(2026, 11, 28), 2) == [utc(2026, 11, 30, 9), utc(2026, 12, 1, 9)]
    assert fires("cron(0 9 ? * 1 *)", utc(2026, 11, 28), 1) == [utc(2026, 11, 29, 9)]
    assert fires("cron(0 9 ? * FRI-MON *)", utc(2026, 11, 24), 4) == [  # a range that wraps the week
        utc(2026, 11, 27, 9),
        utc(2026, 11, 28, 9),
        utc(2026, 11, 29, 9),
        utc(2026, 11, 30, 9),
    ]


def test_last_day_weekday_and_nth_weekday() -> None:
    assert fires("cron(0 0 L * ? *)", utc(2028, 2, 1), 2) == [utc(2028, 2, 29), utc(2028, 3, 31)]
    assert fires("cron(0 0 LW * ? *)", utc(2026, 5, 1), 1) == [utc(2026, 5, 29)]  # the 31st is a Sunday
    assert fires("cron(0 0 1W * ? *)", utc(2026, 8, 1, 1), 1) == [utc(2026, 8, 3)]  # 1st Saturday -> Monday 3rd
    assert fires("cron(0 0 31W * ? *)", utc(2026, 5, 1), 1) == [utc(2026, 5, 29)]  # 31st Sunday -> Friday 29th
    assert fires("cron(0 0 15W * ? *)", utc(2026, 11, 1), 1) == [utc(2026, 11, 16)]  # 15th Sunday -> Monday
    assert fires("cron(0 0 ? * 6L *)", utc(2026, 2, 1), 1) == [utc(2026, 2, 27)]  # last Friday
    assert fires("cron(0 0 ? * 2#1 *)", utc(2026, 11, 3), 1) == [utc(2026, 12, 7)]  # first Monday
    assert fires("cron(0 0 ? * MON#3 *)", utc(2026, 11, 1), 1) == [utc(2026, 11, 16)]
    assert fires("cron(0 0 ? * L *)", utc(2026, 11, 25), 1) == [utc(2026, 11, 28)]  # bare L: Saturday


def test_years_restrict_and_impossible_dates_never_fire() -> None:
    assert fires("cron(0 0 1 1 ? 2030-2031)", utc(2026, 1, 1), 2) == [utc(2030, 1, 1), utc(2031, 1, 1)]
    assert parse("cron(0 0 1 1 ? 2030)").next_after(utc(2030, 1, 1)) is None
    assert fires("cron(0 0 29 2 ? *)", utc(2026, 3, 1), 1) == [utc(2028, 2, 29)]
    assert parse("cron(0 0 30 2 ? *)").next_after(utc(2026, 1, 1)) is None


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 10 * * * *)",  # both day fields given
        "cron(0 10 ? * ? *)",  # neither
        "cron(0 10 * *)",  # too few fields
        "cron(60 10 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 ? 13 ? *)",
        "cron(0 0 * * ? 1969)",
        "cron(0/0 * * * ? *)",
        "cron(a * * * ? *)",
        "every day",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "at(2026-13-01T00:00:00)",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse(expression)


def test_unknown_time_zones_are_rejected() -> None:
    with pytest.raises(ScheduleExpressionError, match="time zone"):
        parse("cron(0 10 * * ? *)", "Mars/Olympus_Mons")


# -------------------------------------------------------------------------- cron: time zones
def test_evaluated_in_the_schedules_time_zone() -> None:
    # 10:00 in Berlin is 09:00 UTC in winter and 08:00 UTC in summer.
    assert fires("cron(0 10 * * ? *)", utc(2026, 1, 10), 1, "Europe/Berlin") == [utc(2026, 1, 10, 9)]
    assert fires("cron(0 10 * * ? *)", utc(2026, 7, 10), 1, "Europe/Berlin") == [utc(2026, 7, 10, 8)]
    assert fires("cron(0 10 * * ? *)", utc(2026, 3, 28, 12), 2, "Europe/Berlin") == [
        utc(2026, 3, 29, 8),  # the first day of summer time
        utc(2026, 3, 30, 8),
    ]


def test_a_local_time_skipped_by_dst_does_not_run_that_day() -> None:
    # Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29: 02:30 does not exist.
    assert fires("cron(30 2 * * ? *)", utc(2026, 3, 28, 12), 1, "Europe/Berlin") == [utc(2026, 3, 30, 0, 30)]
    # New York jumps on 2026-03-08.
    assert fires("cron(30 2 * * ? *)", utc(2026, 3, 7, 12), 1, "America/New_York") == [utc(2026, 3, 9, 6, 30)]


def test_a_local_time_repeated_by_dst_runs_once() -> None:
    # Europe/Berlin goes back from 03:00 to 02:00 on 2026-10-25: 02:30 happens twice.
    assert fires("cron(30 2 * * ? *)", utc(2026, 10, 24, 12), 2, "Europe/Berlin") == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first occurrence
        utc(2026, 10, 26, 1, 30),  # not 01:30 UTC on the 25th (02:30 CET, the repeat)
    ]


def test_every_fifteen_minutes_across_the_spring_gap() -> None:
    times = fires("cron(0/15 * * * ? *)", utc(2026, 3, 29, 0, 30), 3, "Europe/Berlin")
    assert times == [utc(2026, 3, 29, 0, 45), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 15)]
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(times))


def test_cron_expression_parses_to_the_expected_sets() -> None:
    parsed = parse("cron(0/30 9-17 ? * MON-FRI *)")
    assert isinstance(parsed, CronExpression)
    assert parsed.minutes == (0, 30)
    assert parsed.hours == tuple(range(9, 18))
    assert parsed.day_of_month is None and parsed.day_of_week is not None
    assert parsed.day_of_week.days == frozenset({2, 3, 4, 5, 6})


# ------------------------------------------------------------------------------- rate and at
def test_rate_fires_at_creation_then_every_period() -> None:
    start = utc(2026, 11, 28, 10, 0, 30)
    rate = parse("rate(5 minutes)", start=start)
    assert rate.next_after(start - timedelta(microseconds=1)) == start
    assert rate.next_after(start) == start + timedelta(minutes=5)
    assert rate.next_after(start + timedelta(minutes=12)) == start + timedelta(minutes=15)
    assert parse("rate(1 hour)", start=start).next_after(start) == start + timedelta(hours=1)


def test_rate_days_are_24_hours_even_across_dst() -> None:
    start = utc(2026, 3, 28, 9)  # 10:00 in Berlin, the day before summer time
    rate = parse("rate(1 day)", "Europe/Berlin", start=start)
    assert rate.next_after(start) == utc(2026, 3, 29, 9)  # 11:00 local: 24 hours, not "same wall time"


def test_at_fires_once_in_its_time_zone() -> None:
    at = parse("at(2027-01-15T08:00:00)", "Europe/Berlin")
    assert at.next_after(utc(2026, 1, 1)) == utc(2027, 1, 15, 7)
    assert at.next_after(utc(2027, 1, 15, 7)) is None
