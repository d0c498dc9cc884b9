"""The tables of the pipeline's SQLite file (releases and their audit log) and how an older file is upgraded.

The file carries its schema version in ``PRAGMA user_version``; opening it
(:meth:`.Database.migrate`) applies the missing :data:`MIGRATIONS` in one
transaction and refuses a file from a newer mlopshub (see
:mod:`mlopshub.sqlite_schema`).

Files written before the version was recorded have ``user_version`` 0 and
are recognised by their tables (:func:`unversioned_version`):

* version 1, the first schema: ``audit`` (with its indexes and append-only
  triggers) and ``releases``;
* version 2 adds ``audit_head``, the marker that the audit log's head file
  exists (see :mod:`.audit`).

Before versions, every start ran all of these statements with IF NOT EXISTS,
and an audit log opened without a release store made only the audit tables.
So an old file may hold any subset of them: it counts as the last version
whose tables are all there, and the migrations from there on fill in the
rest. That is why entries 1 and 2 must keep IF NOT EXISTS; later ones need
not, since every file they run on records its version.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..sqlite_schema import Schema, SchemaError

#: Schema changes, in order: entry ``n`` brings the file from version ``n`` to ``n + 1``.
#: Never edit a shipped entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the audit log and the releases, as first shipped.
    (
        """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        release_id TEXT,
        model TEXT,
        version TEXT,
        reason TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}',
        chain TEXT NOT NULL
    )""",
        "CREATE INDEX IF NOT EXISTS audit_release ON audit (release_id)",
        "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
        """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows cannot be updated'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows cannot be deleted'); END""",
        """CREATE TABLE IF NOT EXISTS releases (
        id TEXT PRIMARY KEY,
        model_name TEXT NOT NULL,
        team TEXT NOT NULL,
        state TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        promoted TEXT,
        body TEXT NOT NULL
    )""",
        "CREATE INDEX IF NOT EXISTS releases_model_state ON releases (model_name, state)",
    ),
    # 2: one row once the head file exists: from then on a missing head file is a problem, not a fresh start.
    (
        """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        file TEXT NOT NULL,
        created TEXT NOT NULL,
        since INTEGER NOT NULL
    )""",
    ),
)

#: The tables each version added before versions were recorded, with their columns in order.
UNVERSIONED_TABLES: tuple[dict[str, tuple[str, ...]], ...] = (
    {
        "audit": ("id", "at", "actor", "action", "release_id", "model", "version", "reason", "details", "chain"),
        "releases": ("id", "model_name", "team", "state", "created", "updated", "promoted", "body"),
    },
    {"audit_head": ("id", "file", "created", "since")},
)


def unversioned_version(connection: sqlite3.Connection, path: Path) -> int:
    """The version of a file without ``user_version``: the last one whose tables are all there (0 for a new file).

    :class:`SchemaError` if one of those tables has other columns than ours:
    the file is not a pipeline database, and upgrading it would hide that.
    """
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = {name: _columns(connection, name) for name in tables}
    for added in UNVERSIONED_TABLES:
        for name, columns in added.items():
            if name in found and found[name] != columns:
                raise SchemaError(
                    f"{path} has a table {name} with the columns {', '.join(found[name])}, not those of the "
                    f"pipeline's ({', '.join(columns)}): it is not a pipeline database; give the pipeline its own "
                    "data dir, or move this file away"
                )
    version = 0
    for added in UNVERSIONED_TABLES:
        if not all(name in found for name in added):
            break
        version += 1
    return version


def _columns(connection: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(row[0] for row in connection.execute("SELECT name FROM pragma_table_info(?)", (table,)))


#: The pipeline file's schema: what :meth:`.Database.migrate` brings every file to.
SCHEMA = Schema("pipeline database", MIGRATIONS, unversioned_version)
