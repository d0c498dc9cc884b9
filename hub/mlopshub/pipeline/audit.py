"""The append-only audit log: who did what to which release, when and why.

One SQLite table. Rows are only ever inserted: triggers refuse UPDATE and
DELETE, so no code path of ours can rewrite history by mistake. Someone with
the file can drop the triggers, so each row also carries ``chain``, the
SHA-256 of the previous row's chain followed by this row's canonical JSON.
Changing, reordering or removing a row breaks the chain from there on, and
:meth:`AuditLog.verify` says where. Removing the *last* rows leaves a valid
shorter chain; SQLite's AUTOINCREMENT counter usually still shows it, and an
anchor kept elsewhere (:meth:`AuditLog.head`, e.g. written to the service log
at every start) proves it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .database import Database, as_utc_iso, utc_now

#: Chain value "before" the first row.
GENESIS = ""
#: Columns of an exported row, in order.
COLUMNS = ("id", "at", "actor", "action", "release_id", "model", "version", "reason", "details", "chain")

SCHEMA = (
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
)


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
        data = self.to_dict()
        del data["chain"]
        return canonical_json(data)


def canonical_json(value: Any) -> str:
    """One text for one value (sorted keys, no spaces), so a hash of it can be recomputed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def next_chain(previous: str, entry: AuditEntry) -> str:
    """The chain value of ``entry`` following a row whose chain is ``previous``."""
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


class AuditLog:
    """The audit log in the SQLite file at ``path`` (created if missing; reopening keeps every entry)."""

    def __init__(self, path: str | Path | Database):
        self.database = path if isinstance(path, Database) else Database(path)
        self.database.ensure_schema(SCHEMA)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self.database.path

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
        connection: sqlite3.Connection,
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
        entry together: either both are written or neither is.
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
        last = connection.execute("SELECT chain FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        # AUTOINCREMENT never reuses an id, so the id we take is the next one even after tampering.
        sequence = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        entry = AuditEntry(
            id=(sequence["seq"] if sequence else 0) + 1,
            at=utc_now(),
            actor=actor,
            action=action,
            release_id=release_id,
            model=model,
            version=None if version is None else str(version),
            reason=reason or "",
            details=json.loads(details_text),
        )
        entry = AuditEntry(**{**entry.to_dict(), "chain": next_chain(last["chain"] if last else GENESIS, entry)})
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
        return entry

    def entries(self, since: datetime | str | None = None, release_id: str | None = None) -> list[AuditEntry]:
        """Entries in the order they were written, optionally from ``since`` on and for one release."""
        clauses, values = [], []
        if since is not None:
            clauses.append("at >= ?")
            values.append(as_utc_iso(since))
        if release_id is not None:
            clauses.append("release_id = ?")
            values.append(release_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.database.reading() as connection:
            rows = connection.execute(f"SELECT * FROM audit {where} ORDER BY id", values).fetchall()
        return [_entry(row) for row in rows]

    def head(self) -> tuple[int, str] | None:
        """The id and chain of the last entry: an anchor to keep elsewhere, so truncation shows in :meth:`verify`."""
        with self.database.reading() as connection:
            row = connection.execute("SELECT id, chain FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        return (row["id"], row["chain"]) if row else None

    def verify(self, expected_head: tuple[int, str] | None = None) -> list[str]:
        """Problems found in the log (changed, missing or reordered entries); empty when it is intact.

        ``expected_head`` is a :meth:`head` taken earlier: the log must still
        contain that entry, unchanged.
        """
        problems: list[str] = []
        with self.database.reading() as connection:
            rows = connection.execute("SELECT * FROM audit ORDER BY id").fetchall()
            sequence = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        previous_chain, previous_id = GENESIS, 0
        for row in rows:
            try:
                entry = _entry(row)
            except (TypeError, ValueError):
                problems.append(f"entry {row['id']}: its details are not JSON (changed after it was written)")
                previous_chain, previous_id = row["chain"], row["id"]
                continue
            if entry.id != previous_id + 1:
                problems.append(f"entries {previous_id + 1}..{entry.id - 1} are missing (deleted)")
            if next_chain(previous_chain, entry) != entry.chain:
                problems.append(
                    f"entry {entry.id} ({entry.action} by {entry.actor} at {entry.at}): its chain does not match "
                    "its content and the entry before it (changed, inserted or reordered after it was written)"
                )
            # Go on from the stored chain, so each altered row is named rather than every row after it.
            previous_chain, previous_id = entry.chain, entry.id
        if sequence and sequence["seq"] > previous_id:
            problems.append(f"entries {previous_id + 1}..{sequence['seq']} are missing (deleted from the end)")
        if expected_head is not None:
            head_id, head_chain = expected_head
            stored = {row["id"]: row["chain"] for row in rows}
            if stored.get(head_id) != head_chain:
                problems.append(f"entry {head_id} no longer has the chain recorded as the log's head ({head_chain})")
        return problems

    def export_csv(self, file: str | Path | TextIO, since: datetime | str | None = None) -> int:
        """Write the entries as CSV (details as JSON text) to a path or open text file; return how many."""
        entries = self.entries(since=since)

        def write(stream: TextIO) -> None:
            writer = csv.writer(stream)
            writer.writerow(COLUMNS)
            for entry in entries:
                data = entry.to_dict()
                data["details"] = canonical_json(data["details"])
                writer.writerow([data[column] for column in COLUMNS])

        _write_to(file, write, newline="")
        return len(entries)

    def export_json(self, file: str | Path | TextIO, since: datetime | str | None = None) -> int:
        """Write the entries as a JSON list to a path or open text file; return how many."""
        entries = self.entries(since=since)
        _write_to(file, lambda stream: json.dump([e.to_dict() for e in entries], stream, indent=1), newline=None)
        return len(entries)


def _write_to(file: str | Path | TextIO, write: Any, newline: str | None) -> None:
    if isinstance(file, str | Path):
        with open(file, "w", encoding="utf-8", newline=newline) as stream:
            write(stream)
    else:
        write(file)
