"""Usage accounting: sessions from polls, clipping to a period, restart recovery, series, CSV, schema upgrades."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from mlopshub.usage import SCHEMA_VERSION, Running, UsageRow, UsageStore, to_csv

T0 = datetime(2026, 11, 2, tzinfo=UTC)
GIB = 2**30


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def server(user: str = "alice", started: float = 0, *, name: str = "", team: str = "risk", **resources) -> Running:
    limits = {"cpu": 2.0, "memory": 4 * GIB, "gpus": 0, **resources}
    return Running(user, name, at(started), team, "python-cpu", **limits)


def replay(store: UsageStore, sessions: list[tuple[Running, float]]) -> None:
    """Poll at every start and stop: each server runs from its start until (not at) its stop time, in hours."""
    moments = sorted({s.started for s, _ in sessions} | {at(stop) for _, stop in sessions})
    for moment in moments:
        store.observe([s for s, stop in sessions if s.started <= moment < at(stop)], moment)


def hours(row: UsageRow) -> tuple:
    return (row.sessions, row.server_hours, row.cpu_hours, row.memory_gib_hours, row.gpu_hours)


@pytest.fixture
def store(tmp_path) -> UsageStore:
    return UsageStore(tmp_path / "usage.sqlite")


def test_a_session_runs_from_the_hubs_start_until_the_poll_it_disappeared_from(store):
    store.observe([server(started=0)], at(1))  # first seen an hour after it started
    store.observe([server(started=0)], at(2))
    store.observe([], at(3))

    (row,) = store.report(at(0), at(24), now=at(24))

    assert (row.team, row.user) == ("risk", None)
    assert hours(row) == pytest.approx((1, 3.0, 6.0, 12.0, 0.0))
    assert store.running_now() == []


def test_sessions_crossing_the_period_edges_count_only_their_time_inside(store):
    replay(
        store,
        [
            (server("alice", started=-2), 3),  # crosses since: 3 h inside
            (server("bob", started=5), 6.5),  # inside: 1.5 h
            (server("carol", started=22, team="retail", cpu=4.0, gpus=1), 26),  # crosses until: 2 h inside
            (server("dave", started=-5), -1),  # before the period
            (server("erin", started=25, team="retail"), 27),  # after it
            (server("frank", started=-1, team="retail", memory=GIB // 2), 30),  # covers it all: 24 h
            (server("gina", started=-3), 0),  # stops as the period begins
            (server("hank", started=24), 25),  # starts as it ends
        ],
    )

    rows = store.report(at(0), at(24), now=at(40))

    assert [(row.team, *hours(row)) for row in rows] == [
        ("retail", 2, 2.0 + 24.0, pytest.approx(8.0 + 48.0), pytest.approx(8.0 + 12.0), 2.0),
        ("risk", 2, 3.0 + 1.5, pytest.approx(9.0), pytest.approx(18.0), 0.0),
    ]


def test_a_session_still_open_counts_until_now_or_the_end_of_the_period(store):
    store.observe([server(started=20)], at(21))

    (early,) = store.report(at(0), at(24), now=at(22))
    (late,) = store.report(at(0), at(24), now=at(30))

    assert early.server_hours == pytest.approx(2.0)
    assert late.server_hours == pytest.approx(4.0)
    assert store.report(at(0), at(24), now=at(20)) == []


def test_report_per_team_and_user_and_per_user(store):
    replay(
        store,
        [
            (server("bob", started=0), 2),
            (server("alice", started=0), 1),
            (server("alice", started=3, name="gpu", team="vision", gpus=2), 4),
        ],
    )

    per_team_user = store.report(at(0), at(24), ("team", "user"))
    per_user = store.report(at(0), at(24), ("user",))

    assert [(row.team, row.user, row.server_hours, row.gpu_hours) for row in per_team_user] == [
        ("risk", "alice", 1.0, 0.0),
        ("risk", "bob", 2.0, 0.0),
        ("vision", "alice", 1.0, 2.0),
    ]
    assert [(row.team, row.user, row.sessions, row.server_hours) for row in per_user] == [
        (None, "alice", 2, 2.0),
        (None, "bob", 1, 2.0),
    ]


def test_the_same_poll_twice_changes_nothing(store):
    store.observe([server(started=0), server("bob", started=0)], at(1))
    store.observe([server(started=0)], at(2))
    before = (store.running_now(), store.report(at(0), at(24), now=at(5)))

    store.observe([server(started=0)], at(2))

    assert (store.running_now(), store.report(at(0), at(24), now=at(5))) == before
    assert before[1][0].server_hours == pytest.approx(5.0 + 2.0)  # alice still runs at 5; bob went at 2


def test_a_restarted_server_and_a_named_server_are_sessions_of_their_own(store):
    store.observe([server(started=0), server(started=0, name="big")], at(1))
    store.observe([server(started=2), server(started=0, name="big")], at(2))  # default server restarted at 2

    running = store.running_now()

    assert [(s.server, s.started) for s in running] == [("", at(2)), ("big", at(0))]
    (row,) = store.report(at(0), at(24), now=at(3))
    assert row.sessions == 3
    assert row.server_hours == pytest.approx(2.0 + 1.0 + 3.0)


def test_the_team_charged_is_the_one_the_server_was_first_seen_with(store):
    store.observe([server(started=0, team="risk")], at(1))
    store.observe([server(started=0, team="retail")], at(2))
    store.observe([], at(3))

    assert [(row.team, row.server_hours) for row in store.report(at(0), at(24))] == [("risk", 3.0)]


def test_running_now_says_since_when_for_which_team(store):
    store.observe([server("bob", started=1, team="retail", cpu=0.5, gpus=1), server(started=0)], at(2))

    running = store.running_now()

    assert [(s.team, s.user, s.server, s.started, s.last_seen, s.stopped) for s in running] == [
        ("retail", "bob", "", at(1), at(2), None),
        ("risk", "alice", "", at(0), at(2), None),
    ]
    assert (running[0].profile, running[0].cpu, running[0].memory, running[0].gpus) == ("python-cpu", 0.5, 4 * GIB, 1)


def test_after_a_restart_sessions_left_open_end_when_they_were_last_seen(tmp_path):
    before = UsageStore(tmp_path / "usage.sqlite")
    before.observe([server(started=0), server("bob", started=0)], at(1))
    before.observe([server(started=0), server("bob", started=0)], at(2))

    after = UsageStore(tmp_path / "usage.sqlite")  # the process died; the next one starts at 5
    closed = after.recover(at(5))

    assert closed == 2
    assert after.running_now() == []
    assert [row.server_hours for row in after.report(at(0), at(24), ("user",), now=at(9))] == [2.0, 2.0]


def test_a_session_seen_again_after_a_restart_is_reopened_and_ran_through_the_gap(tmp_path):
    UsageStore(tmp_path / "usage.sqlite").observe([server(started=0), server("bob", started=0)], at(2))
    after = UsageStore(tmp_path / "usage.sqlite")
    after.recover(at(5))

    after.observe([server(started=0)], at(5))  # alice's server never stopped (same start); bob's did

    assert [(s.user, s.last_seen) for s in after.running_now()] == [("alice", at(5))]
    after.observe([], at(7))
    assert [(row.user, row.server_hours) for row in after.report(at(0), at(24), ("user",), now=at(9))] == [
        ("alice", 7.0),
        ("bob", 2.0),
    ]


def test_series_splits_usage_into_steps_per_team_with_zeros(store):
    replay(
        store,
        [
            (server(started=20), 28),  # 4 h on day 0, 4 h on day 1
            (server("carol", started=30, team="retail", gpus=1), 33),  # 3 h on day 1
        ],
    )

    points = store.series(at(0), at(72), timedelta(days=1), now=at(80))

    assert [(p.start, p.end, p.team, p.server_hours, p.cpu_hours, p.gpu_hours) for p in points] == [
        (at(0), at(24), "retail", 0.0, 0.0, 0.0),
        (at(0), at(24), "risk", 4.0, 8.0, 0.0),
        (at(24), at(48), "retail", 3.0, 6.0, 3.0),
        (at(24), at(48), "risk", 4.0, 8.0, 0.0),
        (at(48), at(72), "retail", 0.0, 0.0, 0.0),
        (at(48), at(72), "risk", 0.0, 0.0, 0.0),
    ]
    assert [p.memory_gib_hours for p in points if p.team == "risk"] == [16.0, 16.0, 0.0]


def test_series_of_one_team_with_a_step_that_does_not_divide_the_period(store):
    replay(store, [(server(started=0), 10), (server("carol", started=0, team="retail"), 10)])

    points = store.series(at(0), at(10), timedelta(hours=4), team="risk")

    assert [(p.start, p.end, p.team, p.server_hours) for p in points] == [
        (at(0), at(4), "risk", 4.0),
        (at(4), at(8), "risk", 4.0),
        (at(8), at(10), "risk", 2.0),
    ]
    assert [p.server_hours for p in store.series(at(0), at(10), timedelta(hours=4), team="nobody")] == [0.0] * 3


def test_series_adds_up_to_the_report(store):
    replay(store, [(server(started=-3), 5), (server("bob", started=7.25), 40), (server("eve", started=11), 11.5)])

    points = store.series(at(0), at(36), timedelta(hours=5), now=at(50))
    (row,) = store.report(at(0), at(36), now=at(50))

    assert sum(p.cpu_hours for p in points) == pytest.approx(row.cpu_hours)
    assert row.server_hours == pytest.approx(5.0 + (36 - 7.25) + 0.5)


def test_csv_export_has_a_header_rounded_hours_and_quotes_what_needs_quoting():
    rows = [
        UsageRow("risk", "alice", 3, 1.23456, 2.46912, 4.5, 0.0),
        UsageRow('retail, "emea"', "bob", 1, 1 / 3, 0.005, 0.0, 2.0),
    ]

    text = to_csv(rows)

    assert text.split("\r\n")[0] == "team,user,sessions,server_hours,cpu_hours,memory_gib_hours,gpu_hours"
    assert list(csv.reader(io.StringIO(text))) == [
        ["team", "user", "sessions", "server_hours", "cpu_hours", "memory_gib_hours", "gpu_hours"],
        ["risk", "alice", "3", "1.23", "2.47", "4.50", "0.00"],
        ['retail, "emea"', "bob", "1", "0.33", "0.01", "0.00", "2.00"],
    ]
    assert '"retail, ""emea"""' in text  # RFC 4180: quoted field, doubled quote


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tcmd"])
def test_a_name_a_spreadsheet_would_run_as_a_formula_is_exported_as_text(name):
    text = to_csv([UsageRow(name, name, 1, 1.0, 1.0, 1.0, 0.0)])

    team, user = next(iter(list(csv.reader(io.StringIO(text)))[1:]))[:2]

    assert team == user == "'" + name


def test_csv_of_a_per_team_report_leaves_the_user_empty(store):
    store.observe([server(started=0)], at(1))

    text = to_csv(store.report(at(0), at(24), now=at(2)))

    assert text == (
        "team,user,sessions,server_hours,cpu_hours,memory_gib_hours,gpu_hours\r\nrisk,,1,2.00,4.00,8.00,0.00\r\n"
    )


@pytest.mark.parametrize(
    ("since", "until", "group_by", "problem"),
    [
        (at(5), at(5), ("team",), "the period is empty"),
        (at(6), at(5), ("team",), "the period is empty"),
        (at(0), at(0) + timedelta(days=401), ("team",), "at most 400 days"),
        (at(0), at(1), ("profile",), "cannot group usage by"),
        (at(0), at(1), ("team", "team"), "cannot group usage by"),
        (at(0), at(1), (), "cannot group usage by"),
        (datetime(2026, 11, 2), at(1), ("team",), "since 2026-11-02T00:00:00 has no time zone"),
    ],
)
def test_report_refuses_bad_input_naming_the_problem(store, since, until, group_by, problem):
    with pytest.raises(ValueError, match=problem):
        store.report(since, until, group_by)


def test_a_period_of_exactly_400_days_is_allowed(store):
    assert store.report(at(0), at(0) + timedelta(days=400)) == []


@pytest.mark.parametrize(
    ("step", "problem"),
    [(timedelta(0), "positive timedelta"), (timedelta(hours=-1), "positive"), (timedelta(seconds=1), "10000 steps")],
)
def test_series_refuses_a_bad_step(store, step, problem):
    with pytest.raises(ValueError, match=problem):
        store.series(at(0), at(24 * 30), step)


def test_a_running_server_with_negative_limits_or_a_naive_start_is_refused():
    with pytest.raises(ValueError, match="gpus of alice's server '' is -1"):
        server(gpus=-1)
    with pytest.raises(ValueError, match="started of alice's server 'big' .* has no time zone"):
        Running("alice", "big", datetime(2026, 11, 2), "risk", "python-cpu", 1.0, GIB, 0)


def test_a_new_store_is_in_wal_mode_at_the_current_schema_version(store):
    connection = sqlite3.connect(store.path)

    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_store_of_schema_version_1_is_upgraded_and_keeps_its_sessions(tmp_path):
    path = tmp_path / "usage.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE sessions (
            user TEXT NOT NULL, server TEXT NOT NULL, started INTEGER NOT NULL, team TEXT NOT NULL,
            profile TEXT NOT NULL, cpu REAL NOT NULL, memory INTEGER NOT NULL, gpus INTEGER NOT NULL,
            last_seen INTEGER NOT NULL, stopped INTEGER, PRIMARY KEY (user, server, started));
        PRAGMA user_version = 1;
        """
    )
    micros = int(at(0).timestamp()) * 10**6
    old.execute(
        "INSERT INTO sessions VALUES ('alice', '', ?, 'risk', 'python-cpu', 2.0, ?, 0, ?, ?)",
        (micros, 4 * GIB, micros + 3_600 * 10**6, micros + 3_600 * 10**6),
    )
    old.commit()
    old.close()

    store = UsageStore(path)

    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    indexes = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions'")
    assert ("sessions_by_stopped",) in indexes.fetchall()
    assert [hours(row) for row in store.report(at(0), at(24))] == [(1, 1.0, 2.0, 4.0, 0.0)]


def test_a_store_written_by_a_newer_version_is_refused_not_downgraded(tmp_path):
    path = tmp_path / "usage.sqlite"
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()

    with pytest.raises(RuntimeError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this mlopshub"):
        UsageStore(path)


def test_gib_hours_of_large_servers_add_up_without_overflow(store):
    # Each session alone is 6e8 microseconds x 8 GiB ~ 5.2e18; the two together pass a 64-bit integer.
    replay(
        store, [(server("alice", started=0, memory=8 * GIB), 1 / 6), (server("bob", started=0, memory=8 * GIB), 1 / 6)]
    )

    (row,) = store.report(at(0), at(24))

    assert row.memory_gib_hours == pytest.approx(2 * 8 / 6)
