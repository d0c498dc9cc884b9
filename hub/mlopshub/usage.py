"""Usage accounting: which servers ran, for whom, how long, with what resources (issue 14).

The pipeline service polls the hub for the servers that run (``GET
/hub/api/users?state=active``, every ~15 s) and hands each poll to
:meth:`UsageStore.observe` as :class:`Running` records. The store keeps one
row per session, a session being one run of one server: ``(user, server,
started)``, with ``started`` the hub's own start time, so the same run seen
by many polls is one row, and a server started again is a new one.

What the numbers mean, and how far they can be off:

* A session counts from the hub's ``started``, not from the poll that first
  saw it: the hub saw it start even when nobody polled.
* A session that disappears from a poll is closed at that poll's time. It
  stopped somewhere between the previous poll and this one, so its end is late
  by at most one poll interval (~15 s): usage is over-counted by at most one
  interval per session, never under-counted while polls arrive.
* After a crash or restart of the polling process, :meth:`UsageStore.recover`
  closes the sessions left open at their ``last_seen``, the last time a poll
  saw them, so no session is counted for time nobody saw. If the first poll
  after the restart sees the same session again (same ``started``: the server
  never stopped), :meth:`UsageStore.observe` reopens it, and the gap counts:
  the hub's unchanged start time proves the server ran through it. A session
  that both started and stopped while nobody polled is not recorded at all.
* The team, profile and resources of a session are those of the poll that
  first saw it: the team charged is the team the server was started for.
* CPU and memory are the server's limits (what it may take from the
  machine), not what it used.

Times are stored as integer microseconds since the Unix epoch (UTC), so that
clipping a session to a period is integer arithmetic SQLite does in the query
(:meth:`UsageStore.report`), and the session key compares exactly.

The schema carries its version in ``PRAGMA user_version`` and is brought up to
date by :data:`MIGRATIONS`, in order, in one transaction, when a store opens
(see :mod:`mlopshub.sqlite_schema`).
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .sqlite_schema import Schema, SqliteFile

#: The longest period a report or series covers; a longer one is almost surely a typo in a date.
MAX_PERIOD = timedelta(days=400)
#: The most steps a series has (an hourly series over :data:`MAX_PERIOD` has 9,600).
MAX_STEPS = 10_000
#: Columns a report can be grouped by, in the order they appear when grouped by several.
GROUP_COLUMNS = ("team", "user")
#: Seconds a writer waits for another connection's transaction before giving up.
BUSY_TIMEOUT = 30.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECONDS_PER_HOUR = 3_600_000_000
_BYTES_PER_GIB = 2**30
#: Characters that make a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: Schema changes, in order: entry ``n`` brings a store from version ``n`` to ``n + 1``.
#: Version 1 is the session table; version 2 adds the index the period queries use.
#: Never edit a shipped entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sessions (
            user TEXT NOT NULL,
            server TEXT NOT NULL,
            started INTEGER NOT NULL,
            team TEXT NOT NULL,
            profile TEXT NOT NULL,
            cpu REAL NOT NULL,
            memory INTEGER NOT NULL,
            gpus INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            stopped INTEGER,
            PRIMARY KEY (user, server, started)
        )""",
    ),
    (
        # A period [since, until) needs the sessions that stopped after `since` or still run: the index on
        # `stopped` finds both (NULLs included) without reading the history before the period, which is
        # what grows. (An index on `started` would read all of it for the recent periods asked for most.)
        "CREATE INDEX sessions_by_stopped ON sessions (stopped)",
    ),
)
SCHEMA = Schema("usage database", MIGRATIONS)
SCHEMA_VERSION = SCHEMA.version


@dataclass(frozen=True)
class Running:
    """One server the hub reports as running, as one poll saw it.

    ``server`` is the named server's name, ``""`` for the default server;
    ``started`` the hub's ``started`` (an aware datetime); ``team`` the team
    charged (``""`` for none); ``cpu`` the CPU limit in CPUs, ``memory`` the
    memory limit in bytes, ``gpus`` the number of GPUs.
    """

    user: str
    server: str
    started: datetime
    team: str
    profile: str
    cpu: float
    memory: int
    gpus: int

    def __post_init__(self) -> None:
        _micros(self.started, f"started of {self.user}'s server {self.server!r}")
        for name in ("cpu", "memory", "gpus"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} of {self.user}'s server {self.server!r} is {getattr(self, name)}; it must be 0 or more"
                )


@dataclass(frozen=True)
class Session:
    """One run of one server as the store keeps it; ``stopped`` is None while it runs."""

    user: str
    server: str
    started: datetime
    team: str
    profile: str
    cpu: float
    memory: int
    gpus: int
    last_seen: datetime
    stopped: datetime | None


@dataclass(frozen=True)
class UsageRow:
    """Usage of one group over a period; ``team`` or ``user`` is None when the report is not grouped by it.

    ``sessions`` counts the sessions that ran during the period; hours are
    summed over each session's time within the period (CPU, GiB and GPU hours
    weight it by the session's limits).
    """

    team: str | None
    user: str | None
    sessions: int
    server_hours: float
    cpu_hours: float
    memory_gib_hours: float
    gpu_hours: float


@dataclass(frozen=True)
class UsagePoint:
    """Usage of one team in one step ``[start, end)`` of a series."""

    start: datetime
    end: datetime
    team: str
    server_hours: float
    cpu_hours: float
    memory_gib_hours: float
    gpu_hours: float


#: Column order of :func:`to_csv`.
CSV_COLUMNS = ("team", "user", "sessions", "server_hours", "cpu_hours", "memory_gib_hours", "gpu_hours")


class UsageStore:
    """Sessions in the SQLite file at ``path`` (created, or upgraded to :data:`SCHEMA_VERSION`, on open).

    One process writes (the pipeline service's poller); readers may be
    anywhere, since the file is in WAL mode. A connection is opened per call,
    because sqlite3 connections must not cross threads and a web service may
    answer on several.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(
                f"cannot create the folder of the usage database {self.path}: {error}; "
                "give the usage store a path in a writable folder"
            ) from error
        self._migrate()

    # --- writing ---

    def observe(self, running: Iterable[Running], now: datetime) -> None:
        """Record one poll at ``now``: ``running`` is every server that runs.

        Sessions seen for the first time are added; sessions seen again get
        ``last_seen = now`` (and are reopened if they were closed, see the
        module's notes); open sessions absent from this poll are closed at
        ``now``. Recording the same poll twice changes nothing the second time.
        """
        at = _micros(now, "now")
        seen = {(item.user, item.server, _micros(item.started)): item for item in running}
        with self._transaction() as connection:
            connection.executemany(
                """INSERT INTO sessions (user, server, started, team, profile, cpu, memory, gpus, last_seen)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (user, server, started) DO UPDATE
                   SET last_seen = max(last_seen, excluded.last_seen), stopped = NULL""",
                [
                    (*key, item.team, item.profile, float(item.cpu), int(item.memory), int(item.gpus), at)
                    for key, item in seen.items()
                ],
            )
            still_open = connection.execute("SELECT user, server, started FROM sessions WHERE stopped IS NULL")
            gone = [tuple(row) for row in still_open if tuple(row) not in seen]
            connection.executemany(
                "UPDATE sessions SET stopped = max(last_seen, ?) WHERE user = ? AND server = ? AND started = ?",
                [(at, *key) for key in gone],
            )

    def recover(self, now: datetime) -> int:
        """Close the sessions a previous process left open at their ``last_seen``; call once at start.

        Returns how many were closed. A session the next :meth:`observe` sees
        again is reopened there.
        """
        at = _micros(now, "now")
        with self._transaction() as connection:
            return connection.execute(
                "UPDATE sessions SET stopped = min(last_seen, ?) WHERE stopped IS NULL", (at,)
            ).rowcount

    # --- reading ---

    def report(
        self,
        since: datetime,
        until: datetime,
        group_by: Sequence[str] = ("team",),
        *,
        now: datetime | None = None,
    ) -> list[UsageRow]:
        """Usage per group over ``[since, until)``, each session clipped to the period, ordered by group.

        ``group_by`` is ``("team",)``, ``("team", "user")`` or ``("user",)``.
        A session still open counts up to ``min(until, now)``; ``now`` is the
        current time unless given.
        """
        columns = _group_columns(group_by)
        start, end = _period(since, until)
        at = _micros(now or datetime.now(UTC), "now")
        keys = ", ".join(columns)
        # `span` is the session's time inside the period, in microseconds: from the later of its start and
        # `since` to the earlier of its end (now, while open) and `until`. The WHERE keeps the sessions that
        # overlap the period, in the form the index on `stopped` answers. total(), not sum(): span * memory
        # (microseconds times bytes) passes 2**63 within hours; sum() of integers raises on overflow, total()
        # adds floats.
        query = f"""
            SELECT {keys}, count(*) AS sessions, total(span) AS server, total(span * cpu) AS cpu,
                   total(span * memory) AS memory, total(span * gpus) AS gpus
            FROM (
                SELECT {keys}, cpu, memory, gpus,
                       min(coalesce(stopped, :now), :until) - max(started, :since) AS span
                FROM sessions
                WHERE (stopped > :since OR stopped IS NULL) AND started < :until
            )
            WHERE span > 0
            GROUP BY {keys}
            ORDER BY {keys}
        """
        with self._reading() as connection:
            rows = connection.execute(query, {"since": start, "until": end, "now": at}).fetchall()
        return [
            UsageRow(
                team=row["team"] if "team" in columns else None,
                user=row["user"] if "user" in columns else None,
                sessions=row["sessions"],
                server_hours=row["server"] / _MICROSECONDS_PER_HOUR,
                cpu_hours=row["cpu"] / _MICROSECONDS_PER_HOUR,
                memory_gib_hours=row["memory"] / _BYTES_PER_GIB / _MICROSECONDS_PER_HOUR,
                gpu_hours=row["gpus"] / _MICROSECONDS_PER_HOUR,
            )
            for row in rows
        ]

    def series(
        self,
        since: datetime,
        until: datetime,
        step: timedelta,
        team: str | None = None,
        *,
        now: datetime | None = None,
    ) -> list[UsagePoint]:
        """Usage per step and team over ``[since, until)``, for a plot (e.g. daily CPU-hours per team).

        Steps start at ``since`` and are ``step`` long (the last one ends at
        ``until``). Every team with usage in the period (only ``team``, if
        given) has a point in every step, zero where it used nothing, ordered
        by step, then team. Open sessions count up to ``min(until, now)``.
        """
        start, end = _period(since, until)
        width = _step(step, start, end)
        at = _micros(now or datetime.now(UTC), "now")
        steps = range(start, end, width)
        totals: dict[str, list[list[float]]] = {} if team is None else {team: _zeros(len(steps))}
        for session_team, begun, ended, cpu, memory, gpus in self._overlapping(start, end, at, team):
            if session_team not in totals:
                totals[session_team] = _zeros(len(steps))
            _spread(totals[session_team], steps, begun, ended, (1.0, cpu, memory / _BYTES_PER_GIB, gpus))
        return [
            UsagePoint(
                _moment(step_start),
                _moment(min(step_start + width, end)),
                name,
                *(figure / _MICROSECONDS_PER_HOUR for figure in totals[name][index]),
            )
            for index, step_start in enumerate(steps)
            for name in sorted(totals)
        ]

    def running_now(self) -> list[Session]:
        """The sessions open now (as of the last poll), by team, user and server."""
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT * FROM sessions WHERE stopped IS NULL ORDER BY team, user, server, started"
            ).fetchall()
        return [
            Session(
                user=row["user"],
                server=row["server"],
                started=_moment(row["started"]),
                team=row["team"],
                profile=row["profile"],
                cpu=row["cpu"],
                memory=row["memory"],
                gpus=row["gpus"],
                last_seen=_moment(row["last_seen"]),
                stopped=None,
            )
            for row in rows
        ]

    def _overlapping(
        self, start: int, end: int, now: int, team: str | None
    ) -> list[tuple[str, int, int, float, int, int]]:
        """(team, start, end, cpu, memory, gpus) of each session with time in [start, end), clipped to it."""
        clause = "" if team is None else "AND team = :team"
        with self._reading() as connection:
            return connection.execute(
                f"""SELECT * FROM (
                        SELECT team, max(started, :since) AS begun, min(coalesce(stopped, :now), :until) AS ended,
                               cpu, memory, gpus
                        FROM sessions
                        WHERE (stopped > :since OR stopped IS NULL) AND started < :until {clause}
                    ) WHERE ended > begun""",
                {"since": start, "until": end, "now": now, "team": team},
            ).fetchall()

    # --- the file ---

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.transaction()

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.reading()

    def _migrate(self) -> None:
        """Bring the file to the schema's version, applying the missing :data:`MIGRATIONS` in order."""
        self._file = SqliteFile(self.path, SCHEMA.what, busy_timeout=BUSY_TIMEOUT)
        self._file.migrate(SCHEMA)


def to_csv(rows: Iterable[UsageRow]) -> str:
    """``rows`` as CSV (RFC 4180, CRLF line ends) with a header row in :data:`CSV_COLUMNS` order.

    Hours are rounded to 2 decimals (36 s, about two poll intervals). A name
    that a spreadsheet would read as a formula (starting with ``= + - @``, tab
    or carriage return) is written with a leading single quote, so that opening
    the export never runs anything. ``user`` is empty in per-team rows.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _cell(row.team),
                _cell(row.user),
                row.sessions,
                *(f"{hours:.2f}" for hours in (row.server_hours, row.cpu_hours, row.memory_gib_hours, row.gpu_hours)),
            ]
        )
    return out.getvalue()


def _zeros(steps: int) -> list[list[float]]:
    return [[0.0] * 4 for _ in range(steps)]


def _spread(per_step: list[list[float]], steps: range, begun: int, ended: int, weights: tuple[float, ...]) -> None:
    """Add a session's microseconds in each step it overlaps, times each weight (1, CPUs, GiB, GPUs)."""
    for index in range((begun - steps.start) // steps.step, len(steps)):
        step_start = steps[index]
        if step_start >= ended:
            break
        span = min(ended, step_start + steps.step) - max(begun, step_start)
        figures = per_step[index]
        for position, weight in enumerate(weights):
            figures[position] += span * weight


def _cell(name: str | None) -> str:
    if name is None:
        return ""
    return f"'{name}" if name.startswith(_FORMULA_STARTS) else name


def _micros(moment: datetime, what: str = "time") -> int:
    """``moment`` as integer microseconds since the epoch; a naive datetime is refused, not guessed."""
    if not isinstance(moment, datetime):
        raise ValueError(f"{what} must be a datetime, not {type(moment).__name__} {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no time zone; give an aware datetime, e.g. tzinfo=UTC")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _period(since: datetime, until: datetime) -> tuple[int, int]:
    """The period ``[since, until)`` in microseconds; ValueError if it is empty, reversed or too long."""
    start, end = _micros(since, "since"), _micros(until, "until")
    if start >= end:
        raise ValueError(f"the period is empty: since ({since.isoformat()}) must be before until ({until.isoformat()})")
    if until - since > MAX_PERIOD:
        raise ValueError(
            f"the period from {since.isoformat()} to {until.isoformat()} is {(until - since).days} days; "
            f"ask for at most {MAX_PERIOD.days} days at a time"
        )
    return start, end


def _step(step: timedelta, start: int, end: int) -> int:
    """The step in microseconds; ValueError if it is not positive or makes more than :data:`MAX_STEPS` steps."""
    if not isinstance(step, timedelta) or step <= timedelta(0):
        raise ValueError(f"the step must be a positive timedelta, not {step!r}")
    width = step // timedelta(microseconds=1)
    if -(-(end - start) // width) > MAX_STEPS:
        raise ValueError(f"a step of {step} makes more than {MAX_STEPS} steps in the period; choose a longer step")
    return width


def _group_columns(group_by: Sequence[str]) -> tuple[str, ...]:
    """``group_by`` checked against :data:`GROUP_COLUMNS` (the names go into the SQL, so only those pass)."""
    columns = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    unknown = [column for column in columns if column not in GROUP_COLUMNS]
    if not columns or unknown or len(set(columns)) != len(columns):
        raise ValueError(
            f"cannot group usage by {group_by!r}; group by one or both of {', '.join(GROUP_COLUMNS)}, "
            "each once, e.g. ('team',) or ('team', 'user')"
        )
    return columns
