"""Five-field cron schedules for batch models: parse, match a minute, find the next run.

The syntax is standard cron's (what a Kubernetes CronJob accepts, so a
schedule means the same on one machine and on the cluster)::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``,
or a comma list of those. As in cron, when both day-of-month and day-of-week
are restricted (neither is ``*``), a day matches when *either* does. Times are
taken as they are given (the service passes UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: (name, lowest, highest) of each field, in order.
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
#: How far :meth:`Schedule.next_after` looks before saying a schedule never runs (e.g. ``0 0 30 2 *``).
HORIZON_DAYS = 5 * 366


class ScheduleError(ValueError):
    """A schedule that is not five valid cron fields; the message names the field and shows an example."""


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression: the allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: Whether day-of-month / day-of-week were ``*`` (cron's either-day rule needs to know).
    any_day: bool
    any_weekday: bool

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in the minute of ``moment``."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after ``moment`` when the schedule fires (same time zone as ``moment``)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=HORIZON_DAYS)
        while candidate < limit:
            if candidate.month not in self.months or not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise ScheduleError(f"schedule '{self.expression}' never fires (no such date in {HORIZON_DAYS} days)")

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        # Python: Monday is 0; cron: Sunday is 0 (and 7, folded to 0 when parsed).
        weekday = (moment.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday


def parse(expression: str) -> Schedule:
    """The :class:`Schedule` of a five-field cron ``expression``; :class:`ScheduleError` naming the bad field."""
    if not isinstance(expression, str):
        raise ScheduleError(f"expected a cron expression as text, e.g. '0 6 * * *', got {expression!r}")
    parts = expression.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"schedule '{expression}': expected five cron fields (minute hour day-of-month month day-of-week), "
            "e.g. '0 6 * * *' for 06:00 every day"
        )
    values = [_field(part, name, low, high) for part, (name, low, high) in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    return Schedule(
        expression=" ".join(parts),
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    allowed: set[int] = set()
    for item in text.split(","):
        allowed.update(_item(item, text, name, low, high))
    return frozenset(allowed)


def _item(item: str, text: str, name: str, low: int, high: int) -> range:
    where = f"{name} field '{text}'"
    span, slash, step_text = item.partition("/")
    step = _number(step_text, where) if slash else 1
    if step < 1:
        raise ScheduleError(f"{where}: the step after '/' must be 1 or more")
    if span == "*":
        first, last = low, high
    elif "-" in span:
        start, _, end = span.partition("-")
        first, last = _number(start, where), _number(end, where)
        if first > last:
            raise ScheduleError(f"{where}: range '{span}' runs backwards; write it low-high")
    else:
        first = _number(span, where)
        # "5/15" means from 5 to the end, every 15, as in Vixie cron.
        last = high if slash else first
    for value in (first, last):
        if not low <= value <= high:
            raise ScheduleError(f"{where}: {value} is out of range {low}-{high}")
    return range(first, last + 1, step)


def _number(text: str, where: str) -> int:
    if not text.isdigit():
        raise ScheduleError(f"{where}: '{text}' is not a number; use numbers, '*', 'a-b', '*/n' or 'a,b'")
    return int(text)
