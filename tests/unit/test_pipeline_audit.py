"""The append-only audit log: entries, reopening, tamper detection, exports, concurrent writers."""

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from mlopshub.pipeline.audit import AuditLog


@pytest.fixture
def log(tmp_path) -> AuditLog:
    return AuditLog(tmp_path / "pipeline.db")


def tamper(path, sql: str, *params) -> None:
    """Change the file as someone with write access to it could: triggers dropped first."""
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER audit_no_update")
    connection.execute("DROP TRIGGER audit_no_delete")
    connection.execute(sql, params)
    connection.commit()
    connection.close()


def test_entry_records_who_what_when_why_with_a_utc_time_and_chain(log):
    entry = log.record(
        "ann", "approved", release_id="rel-1", model="credit", version=3, reason="looks good", details={"auc": 0.8}
    )
    assert entry.id == 1
    assert datetime.fromisoformat(entry.at).utcoffset() == timedelta(0)
    assert (entry.actor, entry.action, entry.release_id, entry.model, entry.version) == (
        "ann",
        "approved",
        "rel-1",
        "credit",
        "3",
    )
    assert entry.reason == "looks good" and entry.details == {"auc": 0.8}
    assert len(entry.chain) == 64
    assert log.entries() == [entry]


def test_audit_log_survives_reopen_and_detects_tampering(tmp_path):
    path = tmp_path / "pipeline.db"
    first = AuditLog(path)
    for action in ("registered", "gates passed", "approved"):
        first.record("ann", action, release_id="rel-1")
    reopened = AuditLog(path)
    assert [e.action for e in reopened.entries()] == ["registered", "gates passed", "approved"]
    assert reopened.verify() == []
    reopened.record("bob", "production", release_id="rel-1")
    assert reopened.verify() == []

    tamper(path, "UPDATE audit SET actor = 'mallory' WHERE id = 3")
    problems = AuditLog(path).verify()
    assert len(problems) == 1
    assert problems[0].startswith("entry 3 (approved by mallory")


def test_rows_cannot_be_updated_or_deleted_through_sqlite(log):
    log.record("ann", "registered")
    connection = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("UPDATE audit SET reason = 'hidden'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("DELETE FROM audit")
    connection.close()
    assert log.verify() == []


def test_deleted_entries_are_named_by_verify_in_the_middle_and_at_the_end(log):
    for number in range(1, 6):
        log.record("ann", f"step {number}")
    head = log.head()
    tamper(log.path, "DELETE FROM audit WHERE id IN (2, 5)")
    problems = log.verify(expected_head=head)
    assert "entries 2..2 are missing (deleted)" in problems
    assert any(p.startswith("entry 3 ") for p in problems)  # its chain no longer follows entry 1
    assert "entries 5..5 are missing (deleted from the end)" in problems
    assert any(p.startswith("entry 5 no longer has the chain") for p in problems)


def test_a_rewritten_chain_still_breaks_at_the_next_entry(log):
    for number in range(3):
        log.record("ann", f"step {number}")
    entries = log.entries()
    forged = entries[1].__class__(**{**entries[1].to_dict(), "reason": "forged"})
    from mlopshub.pipeline.audit import next_chain

    chain = next_chain(entries[0].chain, forged)
    tamper(log.path, "UPDATE audit SET reason = 'forged', chain = ? WHERE id = 2", chain)
    assert [p.split(" ")[1] for p in log.verify()] == ["3"]


def test_entries_filter_by_release_and_time(log):
    log.record("ann", "registered", release_id="rel-1")
    log.record("ann", "registered", release_id="rel-2")
    later = datetime.now(UTC)
    log.record("bob", "approved", release_id="rel-1")
    assert [e.action for e in log.entries(release_id="rel-1")] == ["registered", "approved"]
    assert [e.actor for e in log.entries(since=later)] == ["bob"]
    assert [e.actor for e in log.entries(since=later.isoformat(), release_id="rel-2")] == []
    with pytest.raises(ValueError, match="not an ISO 8601 time: 'yesterday'"):
        log.entries(since="yesterday")


def test_export_csv_and_json_hold_every_entry_with_its_chain(log, tmp_path):
    log.record("ann", "registered", release_id="rel-1", model="credit", version="1", details={"uri": "runs:/a/m"})
    log.record("bob", "rejected", release_id="rel-1", reason='says "no", politely')
    assert log.export_csv(tmp_path / "audit.csv") == 2
    rows = list(csv.DictReader((tmp_path / "audit.csv").open(newline="")))
    assert [r["action"] for r in rows] == ["registered", "rejected"]
    assert json.loads(rows[0]["details"]) == {"uri": "runs:/a/m"}
    assert rows[1]["reason"] == 'says "no", politely'
    assert rows[1]["chain"] == log.entries()[1].chain

    stream = io.StringIO()
    assert log.export_json(stream) == 2
    exported = json.loads(stream.getvalue())
    assert exported == [e.to_dict() for e in log.entries()]


def test_record_refuses_missing_actor_and_details_that_are_not_json(log):
    with pytest.raises(ValueError, match="non-empty actor"):
        log.record("  ", "approved")
    with pytest.raises(TypeError, match="audit details of 'approved' must be JSON data"):
        log.record("ann", "approved", details={"when": datetime.now()})
    assert log.entries() == []


WRITER = """
import sys, time
from pathlib import Path
from mlopshub.pipeline.audit import AuditLog
path, actor, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
log = AuditLog(path)
(go.parent / f"ready-{actor}").touch()
while not go.exists():
    time.sleep(0.01)
for number in range(count):
    log.record(actor, f"step {number}")
"""


def test_concurrent_threads_and_processes_keep_one_unbroken_chain(tmp_path):
    path, go = tmp_path / "pipeline.db", tmp_path / "go"
    log = AuditLog(path)
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"process-{n}", "25", str(go)]) for n in range(2)
    ]
    start = threading.Event()

    def write(actor: str) -> None:
        start.wait()
        for number in range(25):
            log.record(actor, f"step {number}")

    threads = [threading.Thread(target=write, args=(f"thread-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    # Start everyone at once, once the processes have imported, so they write while the threads do.
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    start.set()
    for thread in threads:
        thread.join(timeout=60)
    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    entries = log.entries()
    assert len(entries) == 150
    assert [e.id for e in entries] == list(range(1, 151))
    assert {e.actor for e in entries} == {"process-0", "process-1", "thread-0", "thread-1", "thread-2", "thread-3"}
    assert log.verify() == []
