"""Cron schedules of batch models, as a Kubernetes CronJob takes them: check, match a minute, find the next run.

A schedule is either five fields or a macro::

    minute  hour  day-of-month  month          day-of-week
    0-59    0-23  1-31          1-12, JAN-DEC  0-6, SUN-SAT (0 is Sunday)

    @yearly (@annually)  @monthly  @weekly  @daily (@midnight)  @hourly

Each field is ``*`` (or ``?``), a number or name, a range ``a-b``, a step ``*/n``
or ``a-b/n``, or a comma list of those. When both day fields are restricted,
a day matches when *either* does (``0 0 13 * FRI``: every 13th and every
Friday).

Matching and the next run are croniter's (kept by pallets-eco; it counts
weekdays from Sunday and joins the day fields with OR as cron does, unlike
APScheduler's cron trigger; cronsim treats ``*/2`` as "any day" and has no
macros). What this module adds is the check that a schedule is one a
CronJob accepts (its parser is robfig/cron's ``ParseStandard``), so that a
schedule means the same on one machine and on the cluster: croniter alone
also takes seconds and year fields, ``L``, ``W``, ``#``, ``H`` and a weekday
``7``, which a CronJob refuses. ``@every <duration>``, which a CronJob takes,
is refused here: write it as five fields. Times are taken as given (the
service passes UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names from the lowest up) of each field, in order, with a CronJob's bounds.
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, WEEKDAYS),
)
#: The macros a CronJob takes (robfig/cron's descriptors but ``@every``).
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_ITEM = re.compile(r"(?P<start>\*|\?|[0-9]+|[A-Za-z]+)(?:-(?P<end>[0-9]+|[A-Za-z]+))?(?:/(?P<step>[0-9]+))?")
EXAMPLE = "e.g. '0 6 * * MON-FRI' for 06:00 on weekdays, or '@daily'"


class ScheduleError(ValueError):
    """A schedule a CronJob would refuse; the message names the field and shows an example."""


@dataclass(frozen=True)
class Schedule:
    """A checked cron expression, as given (a CronJob gets the same text)."""

    expression: str

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in the minute of ``moment``."""
        return bool(croniter.match(self.expression, moment.replace(second=0, microsecond=0)))

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after ``moment`` when the schedule fires (same time zone as ``moment``)."""
        try:
            return croniter(self.expression, moment).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(f"schedule '{self.expression}' never fires (no such date)") from None


def parse(expression: str) -> Schedule:
    """The :class:`Schedule` of ``expression``; :class:`ScheduleError` naming the bad field if a CronJob refuses it."""
    if not isinstance(expression, str):
        raise ScheduleError(f"expected a cron expression as text, {EXAMPLE}; got {expression!r}")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in MACROS:
            raise ScheduleError(f"schedule '{text}': not a macro a CronJob takes ({', '.join(MACROS)}); {EXAMPLE}")
    else:
        parts = text.split(" ")
        if len(parts) != 5 or "=" in parts[0]:
            raise ScheduleError(
                f"schedule '{text}': expected five cron fields (minute hour day-of-month month day-of-week) "
                f"and no time zone, {EXAMPLE}"
            )
        for part, field in zip(parts, FIELDS, strict=True):
            _check_field(part, *field)
    try:
        croniter(text)
    except CroniterBadCronError as error:  # what the check above let through, croniter can still refuse
        raise ScheduleError(f"schedule '{text}': {error}; {EXAMPLE}") from None
    return Schedule(expression=text)


def _check_field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    where = f"{name} field '{text}'"
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            raise ScheduleError(
                f"{where}: '{item}' is not a number, name, '*', 'a-b', '*/n' or 'a-b/n' (as a CronJob takes them)"
            )
        start, end, step = match["start"], match["end"], match["step"]
        if start in ("*", "?"):
            if end is not None:
                raise ScheduleError(f"{where}: '{item}' is a range from '*'; write it low-high")
            first = last = None
        else:
            first = _value(start, where, low, high, names)
            last = _value(end, where, low, high, names) if end is not None else first
            if first > last:
                raise ScheduleError(f"{where}: range '{item}' runs backwards; write it low-high")
        if step is not None and int(step) < 1:
            raise ScheduleError(f"{where}: the step after '/' must be 1 or more")


def _value(token: str, where: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        value = int(token)
        if not low <= value <= high:
            hint = " (Sunday is 0)" if names is WEEKDAYS and value == 7 else ""
            raise ScheduleError(f"{where}: {value} is out of range {low}-{high}{hint}")
        return value
    if token.lower() in names:
        return low + names.index(token.lower())
    known = f"; names: {', '.join(n.upper() for n in names)}" if names else ""
    raise ScheduleError(f"{where}: '{token}' is not a number{known}")
