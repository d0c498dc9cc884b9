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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..sqlite_schema import SqliteFile

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


class Database(SqliteFile):
    """A SQLite file of the pipeline: short-lived connections (:class:`SqliteFile`), serialised writers.

    Unlike the other stores, a commit is on disk when COMMIT returns (``synchronous=FULL``): the audit head
    file is written after it and must never name an entry the database lost. Writers of one file are
    serialised within the process, and a transaction's :meth:`Connection.at_end` callbacks run under that lock.
    """

    def __init__(self, path: str | Path):
        resolved = Path(path).expanduser().resolve()
        try:
            resolved.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(
                f"cannot create the folder of the pipeline database {resolved}: {error}; "
                "set the pipeline's data dir to a writable folder"
            ) from error
        super().__init__(
            resolved, "pipeline database", busy_timeout=BUSY_TIMEOUT, synchronous="FULL", factory=Connection
        )
        self._lock = _lock_for(self.path)

    def connect(self) -> Connection:
        """A new connection (a :class:`Connection`, with its end-of-transaction callbacks)."""
        return super().connect()  # type: ignore[return-value]

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
