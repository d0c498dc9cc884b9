"""Cron schedules of batch models: what a Kubernetes CronJob accepts is accepted, what it refuses is refused, and a
schedule fires at the minutes cron's rules give (names, macros, steps, the day fields' OR rule).

The verdicts in ``CRONJOB_ACCEPTS`` and ``CRONJOB_REFUSES`` are those of the parser a CronJob's ``spec.schedule`` goes
through (robfig/cron v3 ``ParseStandard``: five fields or a descriptor; day of week 0-6; names of three letters).
"""

from datetime import UTC, datetime

import pytest

from mlopshub.serving import kserve
from mlopshub.serving.schedule import ScheduleError, parse

#: Schedules a CronJob accepts: each must be accepted, kept as written, and given to the CronJob as written.
CRONJOB_ACCEPTS = [
    "* * * * *",
    "*/15 * * * *",
    "0-30/10 * * * *",
    "5/20 * * * *",
    "1,2,40-41 * * * *",
    "0 6 * * MON-FRI",
    "0 6 * * mon-fri",
    "0 6 * * 1-5",
    "0 0 1 JAN *",
    "0 0 1 jan-mar,oct *",
    "0 0 13 * FRI",
    "0 0 ? * SUN",
    "0 0 30 2 *",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
]

#: Schedules a CronJob refuses, with what the message names.
CRONJOB_REFUSES = [
    ("daily", "five cron fields"),
    ("0 6 * *", "five cron fields"),
    ("0 0 6 * * *", "five cron fields"),  # seconds: not in a CronJob
    ("0 0 6 * * * 2026", "five cron fields"),
    ("CRON_TZ=UTC 0 6 * * *", "no time zone"),
    ("TZ=Europe/Paris 0 6 * *", "no time zone"),
    ("@every 1h", "not a macro a CronJob takes"),
    ("@reboot", "not a macro a CronJob takes"),
    ("@DAILY", "not a macro a CronJob takes"),
    ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
    ("0 24 * * *", "hour field"),
    ("0 0 0 * *", "day of month field"),
    ("0 0 * 13 *", "month field"),
    ("0 0 * * 7", "day of week field '7': 7 is out of range 0-6 (Sunday is 0)"),
    ("0 0 * * 8", "day of week field"),
    ("0 0 * JANUARY *", "'JANUARY' is not a number; names: JAN"),
    ("0 0 * * MON-FUN", "'FUN' is not a number; names: SUN"),
    ("0 0 JAN * *", "day of month field 'JAN': 'JAN' is not a number"),
    ("0 0 L * *", "day of month field 'L'"),
    ("0 0 * * 1#2", "is not a number, name"),
    ("0 0 15W * *", "is not a number, name"),
    ("H * * * *", "minute field 'H'"),
    ("*/0 * * * *", "step"),
    ("5-1 * * * *", "runs backwards"),
    ("1,,2 * * * *", "'' is not a number, name"),
    ("-1 * * * *", "is not a number, name"),
]


@pytest.mark.parametrize("expression", CRONJOB_ACCEPTS)
def test_a_schedule_a_cronjob_accepts_is_accepted_and_the_cronjob_gets_it_as_written(expression):
    assert parse(expression).expression == expression
    cronjob = kserve.batch_cronjob("m", "1", "models:/m/1", "t", "in.csv", "v1", "/out", expression)
    assert cronjob["spec"]["schedule"] == expression


@pytest.mark.parametrize(("expression", "message"), CRONJOB_REFUSES)
def test_a_schedule_a_cronjob_refuses_is_refused_naming_the_problem(expression, message):
    with pytest.raises(ScheduleError) as refused:
        parse(expression)
    assert message in str(refused.value)
    with pytest.raises(ValueError, match="schedule"):
        kserve.batch_cronjob("m", "1", "models:/m/1", "t", "in.csv", "v1", "/out", expression)


def test_not_text_is_refused():
    with pytest.raises(ScheduleError, match="expected a cron expression as text"):
        parse(6)


# 2025-01-06 is a Monday; 2025-01-04 and -05 a Saturday and a Sunday.
@pytest.mark.parametrize(
    ("expression", "fires", "quiet"),
    [
        ("0 6 * * MON-FRI", [datetime(2025, 1, 6, 6, 0, 42), datetime(2025, 1, 10, 6)], [datetime(2025, 1, 4, 6)]),
        ("0 6 * * MON-FRI", [datetime(2025, 1, 3, 6)], [datetime(2025, 1, 5, 6), datetime(2025, 1, 6, 6, 1)]),
        ("0 0 1 JAN *", [datetime(2025, 1, 1), datetime(2026, 1, 1)], [datetime(2025, 2, 1), datetime(2025, 1, 2)]),
        ("@daily", [datetime(2025, 1, 4), datetime(2025, 7, 9)], [datetime(2025, 1, 4, 0, 1), datetime(2025, 1, 4, 9)]),
        ("@hourly", [datetime(2025, 1, 4, 13)], [datetime(2025, 1, 4, 13, 30)]),
        ("@weekly", [datetime(2025, 1, 5)], [datetime(2025, 1, 6)]),  # Sunday midnight
        ("*/15 * * * *", [datetime(2025, 1, 4, 9, m) for m in (0, 15, 30, 45)], [datetime(2025, 1, 4, 9, 10)]),
        ("0 0 * * 0", [datetime(2025, 1, 5)], [datetime(2025, 1, 6)]),  # 0 is Sunday
        # Both day fields restricted: the 1st of the month OR a Friday.
        ("0 0 1 * FRI", [datetime(2025, 1, 1), datetime(2025, 1, 3)], [datetime(2025, 1, 2)]),
        # A step in a day field restricts it too (a CronJob's parser: no "any day" mark): odd days OR Mondays.
        ("0 0 */2 * MON", [datetime(2025, 1, 3), datetime(2025, 1, 6)], [datetime(2025, 1, 4)]),
        # Only one restricted: both must hold.
        ("0 0 * JAN MON", [datetime(2025, 1, 6)], [datetime(2025, 1, 7), datetime(2025, 2, 3)]),
        ("0 0 ? * SUN", [datetime(2025, 1, 5)], [datetime(2025, 1, 6)]),
    ],
)
def test_a_schedule_fires_at_the_minutes_cron_gives(expression, fires, quiet):
    schedule = parse(expression)
    for moment in fires:
        assert schedule.matches(moment), f"{expression} should fire at {moment:%a %Y-%m-%d %H:%M}"
    for moment in quiet:
        assert not schedule.matches(moment), f"{expression} should not fire at {moment:%a %Y-%m-%d %H:%M}"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", datetime(2025, 1, 1, 10, 0, 30), datetime(2025, 1, 1, 10, 1)),
        ("0 6 * * *", datetime(2025, 1, 1, 6, 0), datetime(2025, 1, 2, 6, 0)),
        ("0 6 * * *", datetime(2025, 1, 1, 5, 59, 59), datetime(2025, 1, 1, 6, 0)),
        ("*/15 * * * *", datetime(2025, 1, 1, 23, 50), datetime(2025, 1, 2, 0, 0)),
        ("0 6 * * MON-FRI", datetime(2025, 1, 3, 6, 0), datetime(2025, 1, 6, 6, 0)),  # Friday -> Monday
        ("@daily", datetime(2025, 1, 31, 0, 0), datetime(2025, 2, 1, 0, 0)),
        ("0 0 1 JAN *", datetime(2025, 1, 1), datetime(2026, 1, 1)),
        ("0 0 29 2 *", datetime(2025, 3, 1), datetime(2028, 2, 29)),  # the next leap day
    ],
)
def test_next_after_is_the_first_matching_minute_strictly_after(expression, after, expected):
    schedule = parse(expression)
    assert schedule.next_after(after) == expected
    assert schedule.matches(expected)


def test_next_after_keeps_the_time_zone_and_refuses_an_impossible_date():
    assert parse("0 6 * * *").next_after(datetime(2025, 1, 1, tzinfo=UTC)).tzinfo is not None
    assert parse("0 6 * * *").next_after(datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2025, 1, 1, 6, tzinfo=UTC)
    # A CronJob accepts it too, and never runs it.
    with pytest.raises(ScheduleError, match="never fires"):
        parse("0 0 30 2 *").next_after(datetime(2025, 1, 1))
