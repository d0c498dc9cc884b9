"""Versioned schemas for our SQLite files: ``PRAGMA user_version`` and ordered migrations.

A file records the version of its schema in SQLite's ``user_version``
header field. A :class:`Schema` lists its migrations in order, entry ``n``
bringing a file from version ``n`` to ``n + 1``, and :meth:`Schema.migrate`
applies the missing ones and the new version inside the caller's write
transaction: DDL and ``user_version`` are transactional in SQLite, so an
upgrade that fails half-way leaves the file as it was, and two processes
opening an old file at once upgrade it once.

A file written by a newer version is refused, never downgraded: its tables
may hold what this code would misread or drop. :meth:`Schema.found_version`
says so before anything is written to it (not even the journal mode).

A file written before its schema carried a version has ``user_version`` 0;
:attr:`Schema.unversioned` tells which version its tables are, so that it is
upgraded from there rather than recreated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


class SchemaError(RuntimeError):
    """A file this code cannot bring to its schema: newer than it knows, foreign, or a migration failed."""


def _empty(connection: sqlite3.Connection, path: Path) -> int:
    return 0


@dataclass(frozen=True)
class Schema:
    """The schema of one kind of SQLite file, as the migrations that build it.

    ``what`` names the file in messages ("usage database"). Never edit a
    shipped migration: append a new one. ``unversioned(connection, path)``
    returns the version of a file whose ``user_version`` is 0 (by default 0:
    the file is new), or raises :class:`SchemaError` for a file that is not
    one of ours.
    """

    what: str
    migrations: tuple[tuple[str, ...], ...]
    unversioned: Callable[[sqlite3.Connection, Path], int] = _empty

    @property
    def version(self) -> int:
        """The version this code writes: the number of migrations."""
        return len(self.migrations)

    def found_version(self, connection: sqlite3.Connection, path: Path) -> int:
        """The version of the file: its ``user_version``, or for a file without one, what :attr:`unversioned` says.

        Reads only, so that a file this code must not open is refused before
        anything is written to it: :class:`SchemaError` naming the file if it
        is newer than :attr:`version` (or not one of ours).
        """
        recorded = connection.execute("PRAGMA user_version").fetchone()[0]
        if recorded > self.version:
            raise SchemaError(
                f"the {self.what} {path} has schema version {recorded}, newer than this mlopshub knows "
                f"({self.version}); run the mlopshub version that wrote it, or a newer one"
            )
        return recorded or self.unversioned(connection, path)

    def migrate(self, connection: sqlite3.Connection, path: Path) -> int:
        """Bring the file to :attr:`version` inside the caller's write transaction; returns the version it had.

        The caller must roll back on an exception (as ``BEGIN IMMEDIATE`` …
        ``ROLLBACK`` does): a migration that fails raises :class:`SchemaError`
        naming the file and the step, and the rollback leaves the file as it was.
        """
        found = self.found_version(connection, path)
        for number in range(found, self.version):
            try:
                for statement in self.migrations[number]:
                    connection.execute(statement)
            except sqlite3.Error as error:
                raise SchemaError(
                    f"cannot upgrade the {self.what} {path} from schema version {number} to {number + 1}: "
                    f"{error}; nothing was changed, the file is still at version {found}"
                ) from error
        if connection.execute("PRAGMA user_version").fetchone()[0] != self.version:
            # PRAGMA takes no parameters; the version is our own integer.
            connection.execute(f"PRAGMA user_version = {self.version}")
        return found

    @cached_property
    def definitions(self) -> dict[str, str]:
        """The SQL of each table, index and trigger of a file at :attr:`version`, by name."""
        reference = sqlite3.connect(":memory:")
        try:
            for statements in self.migrations:
                for statement in statements:
                    reference.execute(statement)
            rows = reference.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        finally:
            reference.close()
        return dict(rows)

    def restore(self, connection: sqlite3.Connection, names: Iterable[str]) -> list[str]:
        """Put back those of ``names`` missing from the file (dropped by someone), as :attr:`version` defines them.

        For objects whose absence would go unnoticed otherwise (a trigger that
        guards a table); returns the names put back. Call it after
        :meth:`migrate`, in a write transaction.
        """
        present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        missing = [name for name in names if name not in present]
        for name in missing:
            connection.execute(self.definitions[name])
        return missing


class SqliteFile:
    """One SQLite file of ours: a new connection per use, write and read transactions, bringing it to a schema.

    Connections are in autocommit mode (transactions are begun explicitly), wait up to ``busy_timeout`` seconds
    for another process's write, and use WAL. ``synchronous`` is ``NORMAL`` by default (a power cut may lose the
    last transactions, never corrupt the file); ``foreign_keys`` turns SQLite's checks on; ``factory`` is the
    connection class. A new connection per use, because sqlite3 connections must not cross threads and a web
    service answers on several. ``what`` names the file in messages ("usage database").
    """

    def __init__(
        self,
        path: Path,
        what: str,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        foreign_keys: bool = False,
        factory: type[sqlite3.Connection] = sqlite3.Connection,
    ):
        self.path = path
        self.what = what
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.foreign_keys = foreign_keys
        self.factory = factory

    def migrate(self, schema: Schema, *, restore: Iterable[str] = ()) -> list[str]:
        """Bring the file to ``schema``'s version (a new file gets every table) in one transaction.

        A newer or foreign file is refused (:class:`SchemaError`) before anything is written to it, not even
        the journal mode. ``restore`` names objects to put back if someone dropped them (see
        :meth:`Schema.restore`); returns those put back.
        """
        connection = self.connect()
        try:
            schema.found_version(connection, self.path)
            # WAL lets readers read while a writer commits; it is a property of the file, so setting it again
            # on reopen is a no-op.
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        with self.transaction() as connection:
            schema.migrate(connection, self.path)
            return schema.restore(connection, restore)

    def connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode (transactions are begun explicitly)."""
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, factory=self.factory
            )
        except sqlite3.OperationalError as error:
            raise OSError(
                f"cannot open the {self.what} {self.path}: {error}; check that the file and its folder are writable"
            ) from error
        connection.row_factory = sqlite3.Row
        # Our own literal, not a caller's: PRAGMA takes no parameters.
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        if self.foreign_keys:
            connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on any exception."""
        connection = self.connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection in one read transaction, so that every statement sees the same snapshot."""
        connection = self.connect()
        try:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("ROLLBACK")
        finally:
            connection.close()
