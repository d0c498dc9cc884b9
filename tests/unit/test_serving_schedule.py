"""Five-field cron schedules of batch models: what each field form allows, matching, the next run."""

from datetime import UTC, datetime

import pytest

from mlopshub.serving.schedule import ScheduleError, parse


@pytest.mark.parametrize(
    ("expression", "field", "expected"),
    [
        ("* * * * *", "minutes", set(range(60))),
        ("5 * * * *", "minutes", {5}),
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("10-12 * * * *", "minutes", {10, 11, 12}),
        ("0-30/10 * * * *", "minutes", {0, 10, 20, 30}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("1,2,40-41 * * * *", "minutes", {1, 2, 40, 41}),
        ("0 9-17/4 * * *", "hours", {9, 13, 17}),
        ("0 0 1,15 * *", "days", {1, 15}),
        ("0 0 * */6 *", "months", {1, 7}),
        ("0 0 * * 7", "weekdays", {0}),
        ("0 0 * * 1-5", "weekdays", {1, 2, 3, 4, 5}),
    ],
)
def test_each_field_form_allows_the_values_cron_allows(expression, field, expected):
    assert set(getattr(parse(expression), field)) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("daily", "five cron fields"),
        ("0 6 * *", "five cron fields"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("0 24 * * *", "hour field"),
        ("0 0 0 * *", "day of month field"),
        ("0 0 * 13 *", "month field"),
        ("0 0 * * 8", "day of week field"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "runs backwards"),
        ("a * * * *", "'a' is not a number"),
        ("1,,2 * * * *", "'' is not a number"),
        ("-1 * * * *", "not a number"),
    ],
)
def test_a_bad_expression_names_the_field(expression, message):
    with pytest.raises(ScheduleError, match=message):
        parse(expression)


def test_matches_the_minute_and_either_day_when_both_days_are_restricted():
    weekdays_at_six = parse("0 6 * * 1-5")
    assert weekdays_at_six.matches(datetime(2025, 1, 6, 6, 0, 42))  # a Monday
    assert not weekdays_at_six.matches(datetime(2025, 1, 5, 6, 0))  # a Sunday
    assert not weekdays_at_six.matches(datetime(2025, 1, 6, 6, 1))
    # Cron's rule: the 1st of the month OR a Friday.
    first_or_friday = parse("0 0 1 * 5")
    assert first_or_friday.matches(datetime(2025, 1, 1))  # a Wednesday, the 1st
    assert first_or_friday.matches(datetime(2025, 1, 3))  # a Friday
    assert not first_or_friday.matches(datetime(2025, 1, 2))


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", datetime(2025, 1, 1, 10, 0, 30), datetime(2025, 1, 1, 10, 1)),
        ("0 6 * * *", datetime(2025, 1, 1, 6, 0), datetime(2025, 1, 2, 6, 0)),
        ("0 6 * * *", datetime(2025, 1, 1, 5, 59, 59), datetime(2025, 1, 1, 6, 0)),
        ("*/15 * * * *", datetime(2025, 1, 1, 23, 50), datetime(2025, 1, 2, 0, 0)),
        ("30 2 * * 0", datetime(2025, 1, 1), datetime(2025, 1, 5, 2, 30)),  # next Sunday
        ("0 0 29 2 *", datetime(2025, 3, 1), datetime(2028, 2, 29)),  # the next leap day
        ("0 12 31 12 *", datetime(2025, 12, 31, 12, 0), datetime(2026, 12, 31, 12, 0)),
    ],
)
def test_next_after_is_the_first_matching_minute_strictly_after(expression, after, expected):
    schedule = parse(expression)
    assert schedule.next_after(after) == expected
    assert schedule.matches(expected)


def test_next_after_keeps_the_time_zone_and_refuses_an_impossible_date():
    assert parse("0 6 * * *").next_after(datetime(2025, 1, 1, tzinfo=UTC)).tzinfo is UTC
    with pytest.raises(ScheduleError, match="never fires"):
        parse("0 0 30 2 *").next_after(datetime(2025, 1, 1))
