"""EventBridge (Scheduler) schedule expressions: ``cron(...)``, ``rate(...)``, ``at(...)``.

Mirrors the AWS semantics:

* ``cron(minutes hours day-of-month month day-of-week year)`` -- six fields; ``,`` ``-``
  ``*`` ``/`` everywhere, month names ``JAN``-``DEC``, weekday names ``SUN``-``SAT``
  (``1`` = Sunday ... ``7`` = Saturday), ``?`` in exactly one of day-of-month and
  day-of-week (AWS rejects both or neither), ``L`` (last day of the month), ``LW`` (last
  weekday), ``15W`` (weekday nearest the 15th, never leaving the month), ``L`` in
  day-of-week (``6L`` = last Friday; a bare ``L`` is Saturday) and ``#`` (``2#1`` = first
  Monday). Years 1970-2199.
* The expression is evaluated in the schedule's IANA time zone (``zoneinfo``), daylight
  saving time included, as EventBridge Scheduler documents it: a local time skipped when
  the clocks go forward does not run that day; a local time repeated when they go back
  runs once (its first occurrence).
* ``rate(value minute|minutes|hour|hours|day|days)`` -- a fixed duration (a day is 24 h,
  also across DST changes); without a start date the first invocation is at creation
  (here: when the runtime starts), then every period.
* ``at(yyyy-mm-ddThh:mm:ss)`` -- once, in the schedule's time zone.

:func:`parse` returns an object whose ``next_after(instant)`` gives the next fire time
strictly after ``instant`` as an aware UTC ``datetime``, or ``None`` when there is none.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["AtExpression", "CronExpression", "RateExpression", "ScheduleExpression", "ScheduleExpressionError", "parse"]

MONTHS = {
    name: number
    for number, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
WEEKDAYS = {name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
MAX_YEAR = 2199


class ScheduleExpressionError(ValueError):
    """An expression EventBridge would reject."""


class ScheduleExpression(Protocol):
    """A parsed expression."""

    @property
    def expression(self) -> str:
        """The expression's text."""

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire time strictly after ``instant`` (aware, UTC), or None."""


def parse(expression: str, timezone: str = "UTC", *, start: datetime | None = None) -> ScheduleExpression:
    """Parse ``cron(...)``, ``rate(...)`` or ``at(...)``; ``start`` anchors rate expressions."""
    tz = _zone(timezone)
    text = expression.strip()
    match = re.fullmatch(r"(cron|rate|at)\((.*)\)", text)
    if match is None:
        raise ScheduleExpressionError(f"{expression!r} is not cron(...), rate(...) or at(...)")
    kind, body = match.group(1), match.group(2).strip()
    if kind == "cron":
        return CronExpression.parse(body, tz, text)
    if kind == "rate":
        return RateExpression.parse(body, start or datetime.now(UTC), text)
    return AtExpression.parse(body, tz, text)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(f"unknown time zone {name!r}") from None


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of a naive local wall time: None if the time does not exist (DST
    gap); the first occurrence if it exists twice (DST overlap)."""
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return instant


# ------------------------------------------------------------------------ rate / at
@dataclass(frozen=True)
class RateExpression:
    """``rate(n unit)``: every fixed period from ``anchor`` on."""

    expression: str
    period: timedelta
    anchor: datetime

    @classmethod
    def parse(cls, body: str, anchor: datetime, expression: str) -> RateExpression:
        match = re.fullmatch(r"(\d+)\s+(minute|minutes|hour|hours|day|days)", body)
        if match is None:
            raise ScheduleExpressionError(f"{expression!r}: rate(value minutes|hours|days) expected")
        value = int(match.group(1))
        if value <= 0:
            raise ScheduleExpressionError(f"{expression!r}: the rate must be positive")
        unit = match.group(2).rstrip("s")
        period = timedelta(**{f"{unit}s": value})
        return cls(expression, period, anchor.astimezone(UTC))

    def next_after(self, instant: datetime) -> datetime | None:
        instant = instant.astimezone(UTC)
        if instant < self.anchor:
            return self.anchor
        periods = (instant - self.anchor) // self.period + 1
        return self.anchor + periods * self.period


@dataclass(frozen=True)
class AtExpression:
    """``at(yyyy-mm-ddThh:mm:ss)``: a one-time schedule."""

    expression: str
    when: datetime

    @classmethod
    def parse(cls, body: str, tz: ZoneInfo, expression: str) -> AtExpression:
        try:
            wall = datetime.strptime(body, "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise ScheduleExpressionError(f"{expression!r}: at(yyyy-mm-ddThh:mm:ss) expected") from None
        when = _to_utc(wall, tz)
        if when is None:  # a time in a DST gap: the clock reads it one hour later
            when = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        return cls(expression, when)

    def next_after(self, instant: datetime) -> datetime | None:
        return self.when if self.when > instant.astimezone(UTC) else None


# ---------------------------------------------------------------------------- cron
@dataclass(frozen=True)
class DayOfMonth:
    """Day-of-month field: plain days, ``L``, ``LW`` and ``nW``."""

    days: frozenset[int]
    last: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def matches(self, day: date) -> bool:
        length = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.days or (self.last and day.day == length):
            return True
        if self.last_weekday and day == _nearest_weekday(day.replace(day=length)):
            return True
        return any(
            target <= length and day == _nearest_weekday(day.replace(day=target)) for target in self.nearest_weekday
        )


@dataclass(frozen=True)
class DayOfWeek:
    """Day-of-week field (1 = Sunday): plain days, ``nL`` (last n-day), ``n#k`` (k-th n-day)."""

    days: frozenset[int]
    last: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def matches(self, day: date) -> bool:
        weekday = (day.isoweekday() % 7) + 1  # Monday=1..Sunday=7 -> Sunday=1..Saturday=7
        if weekday in self.days:
            return True
        length = calendar.monthrange(day.year, day.month)[1]
        if weekday in self.last and day.day + 7 > length:
            return True
        return (weekday, (day.day - 1) // 7 + 1) in self.nth


def _nearest_weekday(target: date) -> date:
    """Quartz/AWS ``W``: the weekday nearest ``target`` within the same month."""
    weekday = target.weekday()  # Monday=0 .. Sunday=6
    length = calendar.monthrange(target.year, target.month)[1]
    if weekday == 5:  # Saturday -> Friday, or Monday if that leaves the month
        return target - timedelta(days=1) if target.day > 1 else target + timedelta(days=2)
    if weekday == 6:  # Sunday -> Monday, or Friday if that leaves the month
        return target + timedelta(days=1) if target.day < length else target - timedelta(days=2)
    return target


@dataclass(frozen=True)
class CronExpression:
    """A parsed six-field AWS cron expression, evaluated in ``tz``."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day_of_month: DayOfMonth | None
    months: frozenset[int]
    day_of_week: DayOfWeek | None
    years: frozenset[int]
    tz: ZoneInfo

    @classmethod
    def parse(cls, body: str, tz: ZoneInfo, expression: str) -> CronExpression:
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleExpressionError(f"{expression!r}: cron needs 6 fields, got {len(fields)}")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ScheduleExpressionError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
        try:
            return cls(
                expression=expression,
                minutes=tuple(sorted(_values(minute, 0, 59))),
                hours=tuple(sorted(_values(hour, 0, 23))),
                day_of_month=None if dom == "?" else _day_of_month(dom),
                months=frozenset(_values(month, 1, 12, MONTHS)),
                day_of_week=None if dow == "?" else _day_of_week(dow),
                years=frozenset(_values(year, 1970, MAX_YEAR)),
                tz=tz,
            )
        except ValueError as error:
            raise ScheduleExpressionError(f"{expression!r}: {error}") from None

    def matches_day(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.day_of_month is not None:
            return self.day_of_month.matches(day)
        assert self.day_of_week is not None
        return self.day_of_week.matches(day)

    def next_after(self, instant: datetime) -> datetime | None:
        instant = instant.astimezone(UTC)
        # Start a day early: around DST changes the local date of a later instant can be earlier.
        first = instant.astimezone(self.tz).date() - timedelta(days=1)
        for day in self._days_from(first):
            for hour in self.hours:
                for minute in self.minutes:
                    fire = _to_utc(datetime(day.year, day.month, day.day, hour, minute), self.tz)
                    if fire is not None and fire > instant:
                        return fire
        return None

    def _days_from(self, first: date) -> Iterator[date]:
        for year in sorted(y for y in self.years if y >= first.year):
            for month in sorted(self.months):
                if (year, month) < (first.year, first.month):
                    continue
                start = first.day if (year, month) == (first.year, first.month) else 1
                for day_number in range(start, calendar.monthrange(year, month)[1] + 1):
                    day = date(year, month, day_number)
                    if self.matches_day(day):
                        yield day


def _day_of_month(field: str) -> DayOfMonth:
    days: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    for item in field.split(","):
        if item == "L":
            last = True
        elif item == "LW":
            last_weekday = True
        elif re.fullmatch(r"\d+W", item):
            nearest.add(_bounded(int(item[:-1]), 1, 31))
        else:
            days |= _values(item, 1, 31)
    return DayOfMonth(frozenset(days), last, last_weekday, frozenset(nearest))


def _day_of_week(field: str) -> DayOfWeek:
    days: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for token in field.split(","):
        upper = token.upper()
        if upper == "L":
            days.add(7)  # a bare L in day-of-week is the last day of the week: Saturday
        elif upper.endswith("L"):
            last.add(_number(upper[:-1], 1, 7, WEEKDAYS))
        elif "#" in upper:
            weekday, _, occurrence = upper.partition("#")
            nth.add((_number(weekday, 1, 7, WEEKDAYS), _bounded(int(occurrence), 1, 5)))
        else:
            days |= _values(token, 1, 7, WEEKDAYS)
    return DayOfWeek(frozenset(days), frozenset(last), frozenset(nth))


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """Expand ``*``, ``a``, ``a-b``, ``a/s``, ``*/s``, ``a-b/s`` and lists of them."""
    result: set[int] = set()
    for token in field.upper().split(","):
        if not token:
            raise ValueError(f"empty value in {field!r}")
        base, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"step must be positive in {token!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, second = base.partition("-")
            start, end = _number(first, low, high, names), _number(second, low, high, names)
        else:
            start = _number(base, low, high, names)
            end = high if step_text else start
        span = list(range(start, end + 1)) if start <= end else [*range(start, high + 1), *range(low, end + 1)]
        result.update(span[::step])
    return result


def _number(text: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    text = text.strip().upper()
    if names and text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a valid value")
    return _bounded(int(text), low, high)


def _bounded(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value
