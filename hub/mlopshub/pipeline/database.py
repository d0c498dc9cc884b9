"""One way to open the pipeline's SQLite file, so every writer serialises the same way.

The audit log and the release store share one file (see :class:`ReleaseStore`),
so a release transition and its audit entry commit in one transaction. Writers
take, in order, a per-file lock shared by every :class:`Database` object of the
process on that file (threads queue here instead of spinning on SQLITE_BUSY),
then SQLite's write lock with ``BEGIN IMMEDIATE`` (other processes queue there).
Taking the write lock at BEGIN, not at the first write, means a
read-check-write sequence (read the state, check it, write the next one) cannot
interleave with another writer.

The file's tables are those of :mod:`.schema`, brought up to date on open
by :meth:`Database.migrate`.

Something to do once a transaction ends goes in :meth:`Connection.at_end`:
the audit log writes its chain head file there, after the commit (see
:mod:`.audit`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..sqlite_schema import Schema

#: Seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT = 30.0

_locks: dict[Path, threading.RLock] = {}
_locks_guard = threading.Lock()


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 with microseconds: fixed width, so timestamps sort as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def as_utc_iso(moment: datetime | str) -> str:
    """``moment`` in the same text form as :func:`utc_now` (naive datetimes are taken as UTC)."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {moment!r}; use e.g. '2025-01-31T12:00:00+00:00'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class Connection(sqlite3.Connection):
    """A connection of :class:`Database`: callbacks run once its transaction ends (:meth:`at_end`)."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ended: list[Callable[[bool], None]] = []

    def at_end(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(committed)`` after this transaction's COMMIT (True) or rollback (False)."""
        self.ended.append(callback)


def _lock_for(path: Path) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(path, threading.RLock())


class Database:
    """A SQLite file of the pipeline: short-lived connections, serialised writers.

    A connection is opened per transaction rather than shared, because sqlite3
    connections must not cross threads and the service answers requests on
    several; opening one costs far less than a request.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(
                f"cannot create the folder of the pipeline database {self.path}: {error}; "
                "set the pipeline's data dir to a writable folder"
            ) from error
        self._lock = _lock_for(self.path)

    def connect(self) -> Connection:
        """A new connection in autocommit mode (transactions are begun explicitly)."""
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, factory=Connection)
        except sqlite3.OperationalError as error:
            raise OSError(
                f"cannot open the pipeline database {self.path}: {error}; check that the file is writable"
            ) from error
        connection.row_factory = sqlite3.Row
        # A commit is on disk when COMMIT returns (WAL's default, NORMAL, may lose the last ones on power loss):
        # the audit head file is written after it and must never name an entry the database lost.
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def migrate(self, schema: Schema, *, restore: Iterable[str] = ()) -> list[str]:
        """Bring the file to ``schema``'s version (a new file gets every table) in one transaction.

        A file from a newer mlopshub, or not a pipeline database, is refused
        (:class:`~mlopshub.sqlite_schema.SchemaError`) before anything is
        written to it. ``restore`` names objects to put back if someone
        dropped them (see :meth:`Schema.restore`); returns those put back.
        """
        connection = self.connect()
        try:
            schema.found_version(connection, self.path)  # refuses before the journal mode is written
            # WAL lets readers (the API listing releases) go on while a writer commits.
            # It is a property of the file, so setting it again on reopen is a no-op.
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        with self.transaction() as connection:
            schema.migrate(connection, self.path)
            return schema.restore(connection, restore)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on any exception.

        Its :meth:`Connection.at_end` callbacks run after COMMIT or ROLLBACK,
        still under the per-file lock, so no other thread of the process
        writes in between.
        """
        with self._lock:
            connection = self.connect()
            committed = False
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
                committed = True
            finally:
                try:
                    for callback in connection.ended:
                        callback(committed)
                finally:
                    connection.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only, in one read transaction so that every statement sees the same snapshot."""
        connection = self.connect()
        try:
            # A deferred BEGIN takes no lock until the first read, and under WAL never blocks writers.
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("ROLLBACK")
        finally:
            connection.close()
