"""The append-only audit log: who did what to which release, when and why.

One SQLite table. Rows are only ever inserted: triggers refuse UPDATE and
DELETE, so no code path of ours can rewrite history by mistake. Someone with
the file can drop the triggers, so each row also carries ``chain``, the
SHA-256 of the previous row's chain followed by this row's canonical JSON
(every column but ``chain``). A row must be stored exactly as :meth:`AuditLog.append`
writes it (text columns as text, ``details`` in canonical JSON), so no change
to the stored bytes keeps its chain. Changing, reordering or removing a row
breaks the chain from there on, and :meth:`AuditLog.check` says where.

Removing the *last* rows leaves a valid shorter chain, so the chain head is
also kept apart from the database: ``audit-head.log`` beside it, one line
``<seq> <chain>`` per entry, opened O_APPEND, mode 0600, fsync'd. Order of
the two writes: the database commits first (``synchronous=FULL``), then the
line is written, under ``audit-head.lock`` held from the append to the line
(so lines stay in order across processes, and a check sees the two agree).

* A crash between the two leaves the file **one entry behind**: the
  database's last entry still chains from the file's last line, so the check
  accepts it with a note, and the pipeline's start rewrites the file from the
  verified chain (as it does for a torn last line).
* The file can never be legitimately **ahead**: a line naming an entry the
  database lacks means rows were deleted from the end ("tail deleted").
* A line disagreeing with the database means the file was edited, or the
  rows from there on were rewritten with a recomputed chain.

A data dir from before the head file gets one at the pipeline's start, from
the verified chain (:meth:`AuditLog.start`); the ``audit_head`` table then
records that it exists, so removing it later is noticed too.

While the pipeline runs, each append first checks the tail incrementally
(the last verified entry unchanged, new entries chained, the head file's last
line equal to the database's last entry); a full check runs at start.
On any problem the log refuses to record (:class:`AuditLogBroken`, HTTP 503)
until an admin has looked (``mlopshub audit verify``) and the pipeline restarts.

Why written here and not taken from a library: the tamper-evident logs that
exist (Trillian, immudb) are servers a one-machine platform would have to
run, secure and back up beside it, and Python's ``logging`` or structlog
write records with no chain at all. The chain is :mod:`hashlib` over rows
SQLite already holds, checked by the same code that writes it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .database import Connection, Database, as_utc_iso, utc_now
from .errors import PipelineError
from .schema import SCHEMA

log = logging.getLogger("mlopshub.pipeline.audit")

#: Chain value "before" the first row.
GENESIS = ""
#: Columns of an exported row, in order.
COLUMNS = ("id", "at", "actor", "action", "release_id", "model", "version", "reason", "details", "chain")
#: The fields the chain covers (all but the chain).
CONTENT_FIELDS = COLUMNS[:-1]
#: The chain head file and its lock, beside the database.
HEAD_FILE = "audit-head.log"
HEAD_LOCK = "audit-head.lock"
HEAD_LINE = re.compile(r"([0-9]+) ([0-9a-f]{64})")

#: The triggers that keep the table append-only (defined in .schema; put back on open if dropped).
TRIGGERS = ("audit_no_update", "audit_no_delete")

#: What can be wrong with the log, as :attr:`Problem.kind` says it.
CONTENT_CHANGED = "content changed"
LINK_BROKEN = "link broken"
MISSING = "missing entries"
TAIL_DELETED = "tail deleted"
HEAD_DISAGREES = "head file disagrees"
HEAD_DAMAGED = "head file damaged"


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: str
    actor: str
    action: str
    release_id: str | None
    model: str | None
    version: str | None
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    chain: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-ready data (the API's and the JSON export's shape)."""
        data = asdict(self)
        data["details"] = dict(self.details)
        return data

    def content(self) -> str:
        """The canonical JSON the chain covers: every field but the chain itself."""
        # Built by hand rather than with to_dict: asdict's deep copy was 80 % of checking 100k entries.
        data = {name: getattr(self, name) for name in CONTENT_FIELDS}
        data["details"] = dict(self.details)
        return canonical_json(data)


@dataclass(frozen=True)
class Problem:
    """Something wrong with the log: the first entry concerned (``seq``), what (``kind``), and the detail."""

    seq: int
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    """What a full check of the log found (:meth:`AuditLog.check`)."""

    database: Path
    head_file: Path
    entries: int
    #: The database's last entry (seq, chain); None when the log is empty.
    head: tuple[int, str] | None
    problems: tuple[Problem, ...] = ()
    #: Things that are not wrong but an admin should know (a crash-recoverable head file, dropped triggers).
    notes: tuple[str, ...] = ()
    #: The head file needs writing from the chain at start (missing before there was one, one behind, torn).
    rewrite_head: bool = False
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        """True when the chain, the sequence and the head file all agree."""
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The problem at the lowest entry (the first bad entry)."""
        return min(self.problems, key=lambda problem: problem.seq) if self.problems else None

    def summary(self) -> str:
        """One line: intact with the entries and head, or the first bad entry."""
        if self.intact:
            head = f"entry {self.head[0]} {self.head[1]}" if self.head else "none (empty log)"
            return f"audit log intact: {self.entries} entries, head {head}"
        first = self.first
        assert first is not None
        more = f" ({len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        return f"audit log broken at entry {first.seq}: {first.kind}: {first.message}{more}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``mlopshub audit verify --json``)."""
        return {
            "intact": self.intact,
            "database": str(self.database),
            "head_file": str(self.head_file),
            "entries": self.entries,
            "head": {"seq": self.head[0], "chain": self.head[1]} if self.head else None,
            "first_bad": self.first.to_dict() if self.first else None,
            "problems": [problem.to_dict() for problem in sorted(self.problems, key=lambda p: p.seq)],
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


class AuditLogBroken(PipelineError):
    """The chain is broken: nothing new is recorded (answered 503) until an admin has looked and restarted."""

    http_status = 503

    def __init__(self, problem: Problem):
        self.problem = problem
        # Names the entry, not its content: the API's callers may not read the audit log.
        super().__init__(
            f"the audit log is broken at entry {problem.seq} ({problem.kind}), so the pipeline records nothing "
            "new; an admin must check it with `mlopshub audit verify` and restore it (reads still work)"
        )


def canonical_json(value: Any) -> str:
    """One text for one value (sorted keys, no spaces), so a hash of it can be recomputed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def next_chain(previous: str, entry: AuditEntry) -> str:
    """The chain value of ``entry`` following a row whose chain is ``previous``.

    ``previous`` is empty or 64 hex digits and the content starts with ``{``,
    so the concatenation cannot be read two ways.
    """
    return hashlib.sha256((previous + entry.content()).encode()).hexdigest()


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        release_id=row["release_id"],
        model=row["model"],
        version=row["version"],
        reason=row["reason"],
        details=json.loads(row["details"]),
        chain=row["chain"],
    )


def _sql_type(value: Any) -> str:
    return {int: "an integer", float: "a real", bytes: "a blob", type(None): "NULL"}.get(type(value), "text")


def stored_entry(row: Iterable[Any]) -> AuditEntry:
    """The entry in a row of :data:`COLUMNS`, if it is stored exactly as :meth:`AuditLog.append` writes it.

    Raises ValueError naming what is not: a column of another SQL type, details
    that are not canonical JSON (another spelling of the same value would keep
    the hash, e.g. a duplicate key that other JSON readers take instead),
    text that is not UTF-8.
    """
    id_, at, actor, action, release_id, model, version, reason, details_text, chain = row
    if type(id_) is not int:
        raise ValueError(f"its id is {_sql_type(id_)}")
    for name, value in (("at", at), ("actor", actor), ("action", action), ("reason", reason), ("chain", chain)):
        if not isinstance(value, str):
            raise ValueError(f"its {name} is stored as {_sql_type(value)}, not text")
    for name, value in (("release_id", release_id), ("model", model), ("version", version)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"its {name} is stored as {_sql_type(value)}, not text or NULL")
    if not isinstance(details_text, str):
        raise ValueError(f"its details are stored as {_sql_type(details_text)}, not text")
    try:
        details = json.loads(details_text)
        canonical = canonical_json(details)
    except ValueError:
        raise ValueError("its details are not JSON the pipeline could have written") from None
    if not isinstance(details, dict) or canonical != details_text:
        raise ValueError("its details are not stored in the canonical form the pipeline writes")
    return AuditEntry(id_, at, actor, action, release_id, model, version, reason, details, chain)


def chain_of(previous: str, entry: AuditEntry) -> str:
    """:func:`next_chain` of a stored entry; ValueError when it holds bytes that are not UTF-8 text."""
    try:
        return next_chain(previous, entry)
    except UnicodeEncodeError:
        raise ValueError("it holds bytes that are not UTF-8 text") from None


def _text_or_escaped(data: bytes) -> str:
    # Bytes that are not UTF-8 become lone surrogates, which stored_entry then refuses (instead of a crash).
    return data.decode("utf-8", "surrogateescape")


class HeadFile:
    """The chain head kept apart from the database: ``<seq> <chain>`` per entry, appended and fsync'd.

    ``lock()`` serialises writers across processes and lets a check read the
    database and the file as one consistent picture.
    """

    def __init__(self, database: Path):
        self.path = database.parent / HEAD_FILE
        self.lock_path = database.parent / HEAD_LOCK

    @contextlib.contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        """Hold the head lock (shared to read, exclusive to write); a reader without rights to it goes on unlocked."""
        try:
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            if exclusive:
                raise
            try:
                descriptor = os.open(self.lock_path, os.O_RDONLY)
            except OSError:
                yield
                return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(descriptor)

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> tuple[list[tuple[int, str]], list[Problem], bool]:
        """The file's lines, problems with its form (named at the entry after the last good line), and torn.

        ``torn`` is a last line without its newline: a write cut short by a
        crash, left out of the lines (the start rewrites the file).
        """
        text = self.path.read_bytes().decode("utf-8", "replace")
        raw = text.split("\n")
        torn = raw[-1] != ""
        lines: list[tuple[int, str]] = []
        problems: list[Problem] = []
        for number, line in enumerate(raw[:-1], start=1):
            match = HEAD_LINE.fullmatch(line)
            expected = lines[-1][0] + 1 if lines else 1
            if match is None:
                problems.append(Problem(expected, HEAD_DAMAGED, f"line {number} of {self.path} is not '<seq> <chain>'"))
                break
            if int(match[1]) != expected:
                problems.append(
                    Problem(
                        expected,
                        HEAD_DAMAGED,
                        f"line {number} of {self.path} names entry {match[1]} where entry {expected} belongs "
                        "(lines removed, reordered or added)",
                    )
                )
                break
            lines.append((expected, match[2]))
        return lines, problems, torn and not problems

    def last(self) -> tuple[int, str] | None:
        """The file's last complete line, read from its end (the check before each append)."""
        with open(self.path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 200))
            lines = stream.read().split(b"\n")
        if len(lines) < 2:
            return None
        seq, _, chain = lines[-2].decode("utf-8", "replace").partition(" ")
        return (int(seq), chain) if seq.isdigit() else None

    def append(self, lines: list[tuple[int, str]]) -> None:
        """Append ``lines`` and fsync (the file, and its folder when the file is new)."""
        new = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, "".join(f"{seq} {chain}\n" for seq, chain in lines).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if new:
            _fsync_folder(self.path.parent)

    def rewrite(self, lines: Iterable[tuple[int, str]]) -> None:
        """Replace the file by ``lines`` (written aside, fsync'd, renamed over it): only from a verified chain."""
        temporary = self.path.with_name(self.path.name + ".new")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, "".join(f"{seq} {chain}\n" for seq, chain in lines).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, self.path)
        _fsync_folder(self.path.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_chain(connection: sqlite3.Connection, head_file: HeadFile, database: Path) -> Verification:
    """Check every entry, the sequence and the head file, reading through ``connection`` (one snapshot).

    The caller holds ``head_file.lock`` so that no append is between its
    commit and its head line.
    """
    started = time.perf_counter()
    problems: list[Problem] = []
    notes: list[str] = []
    present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    if missing_triggers := [name for name in TRIGGERS if name not in present]:
        notes.append(f"the append-only triggers {', '.join(missing_triggers)} are missing (dropped by someone)")
    has_marker_table = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_head'").fetchone()
    # A database from before the head file has no audit_head table: nothing marks a head file as expected.
    marker = connection.execute("SELECT created FROM audit_head WHERE id = 1").fetchone() if has_marker_table else None
    head_lines: dict[int, str] = {}
    last_line = 0
    torn = False
    has_file = head_file.exists()
    if has_file:
        lines, head_problems, torn = head_file.read()
        problems += head_problems
        head_lines = dict(lines)
        last_line = lines[-1][0] if lines else 0
        if torn:
            notes.append(f"the last line of {head_file.path} is cut short (a crash while writing it)")

    factory = connection.text_factory
    connection.text_factory = _text_or_escaped
    try:
        cursor = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY id")
        cursor.row_factory = None
        previous_chain, previous_id, entries = GENESIS, 0, 0
        # The previous row's chain cannot be trusted (missing rows before it, or the head file disagrees).
        previous_suspect = False
        disagreeing: list[int] = []
        for row in cursor:
            entries += 1
            row_id, chain = row[0], row[-1]
            if row_id != previous_id + 1:
                problems.append(
                    Problem(previous_id + 1, MISSING, f"entries {previous_id + 1}..{row_id - 1} are missing")
                )
                previous_suspect = True
            try:
                entry = stored_entry(row)
                recomputed = chain_of(previous_chain, entry)
            except ValueError as error:
                problems.append(
                    Problem(row_id, CONTENT_CHANGED, f"entry {row_id}: {error} (changed after it was written)")
                )
            else:
                if recomputed != chain:
                    if previous_suspect:
                        problems.append(
                            Problem(
                                row_id,
                                LINK_BROKEN,
                                f"entry {row_id}: its chain does not follow from entry {row_id - 1}'s "
                                "(that one is missing or its chain was rewritten)",
                            )
                        )
                    else:
                        problems.append(
                            Problem(
                                row_id,
                                CONTENT_CHANGED,
                                f"entry {row_id} ({entry.action} by {entry.actor} at {entry.at}): its content no "
                                "longer gives its chain (changed after it was written)",
                            )
                        )
            previous_suspect = row_id in head_lines and head_lines[row_id] != chain
            if previous_suspect:
                disagreeing.append(row_id)
            # Go on from the stored chain, so each altered row is named rather than every row after it.
            previous_chain, previous_id = chain, row_id
    finally:
        connection.text_factory = factory
    if disagreeing:
        first = disagreeing[0]
        problems.append(
            Problem(
                first,
                HEAD_DISAGREES,
                f"entry {first}'s chain in the database is not the one line {first} of {head_file.path} recorded "
                f"(the head file was edited, or entries from {first} on were rewritten with a recomputed chain); "
                f"{len(disagreeing)} entries disagree",
            )
        )
    head = (previous_id, previous_chain) if entries else None
    sequence = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    counter = sequence[0] if sequence else 0
    if last_line > previous_id:
        problems.append(
            Problem(
                previous_id + 1,
                TAIL_DELETED,
                f"entries {previous_id + 1}..{last_line} are named by {head_file.path} but missing from the database "
                "(deleted from the end)",
            )
        )
    elif counter > previous_id:
        problems.append(
            Problem(
                previous_id + 1,
                TAIL_DELETED,
                f"entries {previous_id + 1}..{counter} are missing from the end (SQLite's counter says they were "
                "written)",
            )
        )
    rewrite = False
    if not has_file:
        if marker is not None:
            problems.append(
                Problem(
                    previous_id,
                    HEAD_DAMAGED,
                    f"{head_file.path} is missing (it was created on {marker[0]}); the end of the log cannot be "
                    "checked",
                )
            )
        else:
            rewrite = True
            notes.append(f"there is no {head_file.path} yet: the pipeline writes it from the verified chain at start")
    elif not any(p.kind == HEAD_DAMAGED for p in problems) and last_line < previous_id:
        if last_line == previous_id - 1:
            rewrite = True
            notes.append(
                f"{head_file.path} is one entry behind (entry {previous_id} has no line): the pipeline stopped between "
                "the database commit and the head write; the pipeline adds the line at start"
            )
        else:
            problems.append(
                Problem(
                    last_line + 1,
                    HEAD_DAMAGED,
                    f"{head_file.path} ends at entry {last_line} but the database goes on to {previous_id} "
                    "(lines removed from the head file)",
                )
            )
    return Verification(
        database=database,
        head_file=head_file.path,
        entries=entries,
        head=head,
        problems=tuple(problems),
        notes=tuple(notes),
        rewrite_head=(rewrite or torn) and not problems,
        seconds=time.perf_counter() - started,
    )


def verify_file(path: str | Path) -> Verification:
    """Check the audit log in the SQLite file at ``path`` without writing to it (``mlopshub audit verify``)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"no pipeline database at {path}; give --database or set MLOPSHUB_DATA_DIR")
    head_file = HeadFile(path)
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as error:
        raise ValueError(f"cannot open {path} to read: {error}") from None
    try:
        with head_file.lock(exclusive=False):
            connection.execute("BEGIN")
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "audit" not in tables:
                raise ValueError(f"{path} holds no audit log (no table 'audit'); is it the pipeline's database?")
            return check_chain(connection, head_file, path)
    except (sqlite3.DatabaseError, OSError) as error:
        raise ValueError(f"cannot read the audit log in {path}: {error}") from None
    finally:
        connection.close()


class AuditLog:
    """The audit log in the SQLite file at ``path`` (created if missing; reopening keeps every entry)."""

    def __init__(self, path: str | Path | Database):
        self.database = path if isinstance(path, Database) else Database(path)
        self.head_file = HeadFile(self.database.path)
        #: The first problem found (then nothing is recorded); None while the chain is intact.
        self.broken: Problem | None = None
        # The last entry checked (seq, chain): appends check only what came after it.
        self._verified: tuple[int, str] | None = None
        # Lines for the head file, per open transaction, written once it commits.
        self._pending: dict[int, list[tuple[int, str]]] = {}
        self.dropped_triggers = self._missing_triggers()
        # The whole file's schema, releases included (one file, one version). What an append-only log relies
        # on is put back if someone with the file dropped it: the triggers (noted at start) and the head marker.
        self.database.migrate(SCHEMA, restore=(*TRIGGERS, "audit_head"))

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self.database.path

    def _missing_triggers(self) -> list[str]:
        # Read before migrate puts them back, so that the start can say they had been dropped.
        if not self.database.path.exists():
            return []
        with self.database.reading() as connection:
            present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            has_table = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone()
        return [name for name in TRIGGERS if name not in present] if has_table else []

    def start(self) -> Verification:
        """At the pipeline's start: check everything, then write the head file if it is missing or behind.

        On a broken chain :attr:`broken` is set and every later append raises
        :class:`AuditLogBroken`.
        """
        with self.database.transaction() as connection, self.head_file.lock(exclusive=True):
            report = self._check_and_anchor(connection)
        return report

    def _check_and_anchor(self, connection: Connection) -> Verification:
        report = check_chain(connection, self.head_file, self.path)
        if self.dropped_triggers:
            dropped = f"the append-only triggers {', '.join(self.dropped_triggers)} had been dropped (put back)"
            report = replace(report, notes=(*report.notes, dropped))
        if not report.intact:
            self.broken = report.first
            return report
        if report.rewrite_head:
            rows = connection.execute("SELECT id, chain FROM audit ORDER BY id")
            self.head_file.rewrite((row[0], row[1]) for row in rows)
            if report.entries:  # an existing log: say that its anchor starts now
                log.warning(
                    "audit head file %s written from the verified chain: %s", self.head_file.path, report.summary()
                )
        if connection.execute("SELECT 1 FROM audit_head").fetchone() is None:
            connection.execute(
                "INSERT INTO audit_head VALUES (1, ?, ?, ?)",
                (str(self.head_file.path), utc_now(), report.head[0] if report.head else 0),
            )
        self.broken = None
        self._verified = report.head or (0, GENESIS)
        return report

    def check(self) -> Verification:
        """A full check of the log and its head file, without writing (the pipeline's periodic check uses it)."""
        with self.head_file.lock(exclusive=False), self.database.reading() as connection:
            report = check_chain(connection, self.head_file, self.path)
        if not report.intact and self.broken is None:
            self.broken = report.first
        return report

    def verify(self) -> list[str]:
        """The problems :meth:`check` finds, as messages; empty when the log is intact."""
        report = self.check()
        return [p.message for p in sorted(report.problems, key=lambda p: p.seq)]

    def record(
        self,
        actor: str,
        action: str,
        *,
        release_id: str | None = None,
        model: str | None = None,
        version: str | int | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry in its own transaction and return it (with its id, time and chain)."""
        with self.database.transaction() as connection:
            return self.append(
                connection,
                actor,
                action,
                release_id=release_id,
                model=model,
                version=version,
                reason=reason,
                details=details,
            )

    def append(
        self,
        connection: Connection,
        actor: str,
        action: str,
        *,
        release_id: str | None = None,
        model: str | None = None,
        version: str | int | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry inside the caller's write transaction (from :meth:`Database.transaction`).

        This is how the release store commits a state change and its audit
        entry together: either both are written or neither is. Refused with
        :class:`AuditLogBroken` (and so is the caller's transaction) when the
        chain is broken.
        """
        if not connection.in_transaction:
            # Reading the last chain outside the write lock could fork the chain.
            raise RuntimeError("AuditLog.append needs a write transaction; use AuditLog.record or Database.transaction")
        for name, value in (("actor", actor), ("action", action)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"audit entry needs a non-empty {name}, got {value!r}")
        details = dict(details or {})
        try:
            details_text = canonical_json(details)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"audit details of '{action}' must be JSON data (str, number, bool, None, list, dict): {error}"
            ) from None
        pending = self._hold_head(connection)
        last = pending[-1] if pending else self._check_tail(connection)
        entry = AuditEntry(
            id=last[0] + 1,
            at=utc_now(),
            actor=actor,
            action=action,
            release_id=release_id,
            model=model,
            version=None if version is None else str(version),
            reason=reason or "",
            details=json.loads(details_text),
        )
        try:
            entry = AuditEntry(**{**entry.to_dict(), "chain": next_chain(last[1], entry)})
        except UnicodeEncodeError:
            raise ValueError(f"audit entry '{action}' holds text that is not valid Unicode") from None
        connection.execute(
            f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            (
                entry.id,
                entry.at,
                entry.actor,
                entry.action,
                entry.release_id,
                entry.model,
                entry.version,
                entry.reason,
                details_text,
                entry.chain,
            ),
        )
        pending.append((entry.id, entry.chain))
        return entry

    def _hold_head(self, connection: Connection) -> list[tuple[int, str]]:
        """This transaction's head lines; on its first append, take the head lock until the lines are written."""
        key = id(connection)
        if key in self._pending:
            return self._pending[key]
        if self.broken is not None:
            raise AuditLogBroken(self.broken)
        lock = self.head_file.lock(exclusive=True)
        lock.__enter__()
        lines: list[tuple[int, str]] = []
        self._pending[key] = lines

        def write_lines(committed: bool) -> None:
            try:
                if committed and lines:
                    self.head_file.append(lines)
                    self._verified = lines[-1]
            except OSError as error:
                # The entries are committed, the anchor is not: refuse more until a restart rewrites the file.
                self.broken = Problem(lines[-1][0], HEAD_DAMAGED, f"could not write {self.head_file.path}: {error}")
                log.error("audit: %s", self.broken.message)
            finally:
                del self._pending[key]
                lock.__exit__(None, None, None)

        connection.at_end(write_lines)
        return lines

    def _check_tail(self, connection: Connection) -> tuple[int, str]:
        """The last entry (seq, chain), after checking what changed since the last check; raises when broken.

        Cheap: the last verified entry is looked up by id, only newer ones
        (another process's) are hashed, and the head file is read from its end.
        A log never checked by this object is checked in full once.
        """
        if self._verified is None:
            report = self._check_and_anchor(connection)
            if not report.intact:
                log.error("audit: %s", report.summary())
                raise AuditLogBroken(report.first)  # type: ignore[arg-type]
            assert self._verified is not None
            return self._verified
        seq, chain = self._verified
        problem = None
        if seq:
            row = connection.execute("SELECT chain FROM audit WHERE id = ?", (seq,)).fetchone()
            if row is None or row[0] != chain:
                problem = Problem(
                    seq,
                    CONTENT_CHANGED if row else TAIL_DELETED,
                    f"entry {seq} changed or removed since it was checked",
                )
        if problem is None:
            rows = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE id > ? ORDER BY id", (seq,))
            for row in rows:
                try:
                    entry = stored_entry(tuple(row))
                    good = entry.id == seq + 1 and chain_of(chain, entry) == entry.chain
                except ValueError:
                    good = False
                if not good:
                    problem = Problem(seq + 1, CONTENT_CHANGED, f"entry {seq + 1} does not follow entry {seq}")
                    break
                seq, chain = entry.id, entry.chain
        if problem is None:
            problem = self._head_problem(seq, chain)
        if problem is not None:
            self.broken = problem
            log.error("audit: the chain broke while running: %s; recording stops", problem.message)
            raise AuditLogBroken(problem)
        self._verified = (seq, chain)
        return seq, chain

    def _head_problem(self, seq: int, chain: str) -> Problem | None:
        """What is wrong with the head file's last line, given the database's last entry (None: they agree)."""
        on_file = self.head_file.last() if self.head_file.exists() else None
        if on_file == ((seq, chain) if seq else None):
            return None
        if on_file is not None and on_file[0] > seq:
            return Problem(
                seq + 1, TAIL_DELETED, f"{self.head_file.path} names entry {on_file[0]}, the database ends at {seq}"
            )
        if on_file is not None and on_file[0] == seq:
            return Problem(seq, HEAD_DISAGREES, f"{self.head_file.path} records another chain for entry {seq}")
        return Problem(
            on_file[0] + 1 if on_file else 1,
            HEAD_DAMAGED,
            f"{self.head_file.path} ends at entry {on_file[0] if on_file else 0}, the database at {seq}",
        )

    def entries(
        self,
        since: datetime | str | None = None,
        release_id: str | None = None,
        *,
        until: datetime | str | None = None,
        model: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries in the order they were written, those that pass every filter given.

        ``since`` is inclusive and ``until`` exclusive; the fields match exactly;
        ``after`` and ``limit`` page: the first ``limit`` entries with an id above ``after``.
        """
        clauses, values = [], []
        if since is not None:
            clauses.append("at >= ?")
            values.append(as_utc_iso(since))
        if until is not None:
            clauses.append("at < ?")
            values.append(as_utc_iso(until))
        for column, value in (("release_id", release_id), ("model", model), ("actor", actor), ("action", action)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if after is not None:
            clauses.append("id > ?")
            values.append(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        page = "" if limit is None else f"LIMIT {int(limit)}"
        with self.database.reading() as connection:
            rows = connection.execute(f"SELECT * FROM audit {where} ORDER BY id {page}", values).fetchall()
        return [_entry(row) for row in rows]

    def head(self) -> tuple[int, str] | None:
        """The id and chain of the last entry in the database."""
        with self.database.reading() as connection:
            row = connection.execute("SELECT id, chain FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        return (row["id"], row["chain"]) if row else None

    def export_csv(self, file: str | Path | TextIO, **filters: Any) -> int:
        """Write the entries that pass ``filters`` (:meth:`entries`) as CSV to a path or open text file; how many."""
        entries = self.entries(**filters)

        def write(stream: TextIO) -> None:
            writer = csv.writer(stream)
            writer.writerow(COLUMNS)
            for entry in entries:
                data = entry.to_dict()
                data["details"] = canonical_json(data["details"])
                writer.writerow([data[column] for column in COLUMNS])

        _write_to(file, write, newline="")
        return len(entries)

    def export_json(self, file: str | Path | TextIO, **filters: Any) -> int:
        """Write the entries that pass ``filters`` (:meth:`entries`) as a JSON list to a path or open file; how many."""
        entries = self.entries(**filters)
        _write_to(file, lambda stream: json.dump([e.to_dict() for e in entries], stream, indent=1), newline=None)
        return len(entries)


def _write_to(file: str | Path | TextIO, write: Any, newline: str | None) -> None:
    if isinstance(file, str | Path):
        with open(file, "w", encoding="utf-8", newline=newline) as stream:
            write(stream)
    else:
        write(file)
