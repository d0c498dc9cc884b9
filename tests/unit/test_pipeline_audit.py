"""The append-only audit log: entries, reopening, tamper detection (chain and head file), exports, concurrent
writers, ``mlopshub audit verify``, and the pipeline refusing to record on a broken chain."""

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from pipeline_harness import PipelineService

from mlopshub.pipeline.audit import (
    CONTENT_CHANGED,
    HEAD_DAMAGED,
    HEAD_DISAGREES,
    LINK_BROKEN,
    MISSING,
    TAIL_DELETED,
    AuditLog,
    AuditLogBroken,
    Problem,
    next_chain,
)
from mlopshub.pipeline.gates import GateResult
from mlopshub.pipeline.release import ReleaseStore, validate_publish


@pytest.fixture
def log(tmp_path) -> AuditLog:
    return AuditLog(tmp_path / "pipeline.db")


def tamper(path, sql: str, *params) -> None:
    """Change the file as someone with write access to it could: triggers dropped first."""
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER IF EXISTS audit_no_update")
    connection.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    connection.execute(sql, params)
    connection.commit()
    connection.close()


def written(log: AuditLog, count: int) -> AuditLog:
    """``log`` with ``count`` entries, the 4th an approval by val (as a release's would be)."""
    for number in range(1, count + 1):
        actor, action = ("val", "approved") if number == 4 else ("ann", f"step {number}")
        log.record(actor, action, release_id="rel-1", details={"state": action})
    return log


def first_bad(log: AuditLog) -> tuple[int, str]:
    report = log.check()
    assert not report.intact
    return report.first.seq, report.first.kind


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


# --- tampering: each change is found, and the first bad entry named -----------------------------------------


def test_an_approver_changed_in_the_database_is_the_first_bad_entry(log):
    written(log, 6)
    tamper(log.path, "UPDATE audit SET actor = 'mallory' WHERE id = 4")
    report = log.check()
    assert report.first == Problem(report.first.seq, CONTENT_CHANGED, report.first.message)
    assert report.first.seq == 4
    assert "approved by mallory" in report.first.message
    assert len(report.problems) == 1  # the entries after it still chain from its stored chain


def test_an_entry_deleted_in_the_middle_is_named_as_missing_and_the_next_as_unlinked(log):
    written(log, 6)
    tamper(log.path, "DELETE FROM audit WHERE id = 3")
    report = log.check()
    assert [(p.seq, p.kind) for p in report.problems] == [(3, MISSING), (4, LINK_BROKEN)]
    assert report.first.message == "entries 3..3 are missing"


def test_a_deleted_tail_is_found_through_the_head_file_even_with_the_counter_reset(log):
    written(log, 6)
    tamper(log.path, "DELETE FROM audit WHERE id >= 5")
    tamper(log.path, "UPDATE sqlite_sequence SET seq = 4 WHERE name = 'audit'")
    assert first_bad(log) == (5, TAIL_DELETED)
    assert "entries 5..6 are named by" in log.check().first.message


def test_a_truncated_head_file_is_found(log):
    written(log, 6)
    head = log.head_file.path
    head.write_text("".join(head.read_text().splitlines(keepends=True)[:2]))
    assert first_bad(log) == (3, HEAD_DAMAGED)


def test_an_edited_head_line_is_found(log):
    written(log, 6)
    head = log.head_file.path
    lines = head.read_text().splitlines(keepends=True)
    lines[2] = f"3 {'0' * 64}\n"
    head.write_text("".join(lines))
    assert first_bad(log) == (3, HEAD_DISAGREES)


def test_a_rewritten_chain_is_found_by_the_head_file_and_breaks_the_next_link(log):
    written(log, 4)
    entries = log.entries()
    forged = entries[1].__class__(**{**entries[1].to_dict(), "reason": "forged"})
    tamper(log.path, "UPDATE audit SET reason = 'forged', chain = ? WHERE id = 2", next_chain(entries[0].chain, forged))
    report = log.check()
    assert {(p.seq, p.kind) for p in report.problems} == {(2, HEAD_DISAGREES), (3, LINK_BROKEN)}
    assert report.first.seq == 2


@pytest.mark.parametrize(
    "change",
    [
        # Same value to Python's json, but a duplicate key that SQLite's json_extract reads as 'mallory'.
        """UPDATE audit SET details = '{"state":"mallory","state":"approved"}' WHERE id = 4""",
        """UPDATE audit SET details = '{"state": "approved"}' WHERE id = 4""",  # another spelling
        "UPDATE audit SET actor = CAST('val' AS BLOB) WHERE id = 4",  # same bytes, another SQL type
        "UPDATE audit SET details = 'NaN' WHERE id = 4",
        "UPDATE audit SET actor = CAST(X'76616cff' AS TEXT) WHERE id = 4",  # not UTF-8
    ],
)
def test_a_stored_form_the_pipeline_never_writes_is_a_changed_entry_not_a_crash(log, change):
    written(log, 5)
    tamper(log.path, change)
    assert first_bad(log) == (4, CONTENT_CHANGED)


def test_dropped_triggers_are_noted_even_with_an_intact_chain(log):
    written(log, 2)
    tamper(log.path, "SELECT 1")
    report = log.check()
    assert report.intact
    assert any("append-only triggers" in note for note in report.notes)


# --- the head file: written after the commit, created for old data dirs ---------------------------------------


def test_head_file_has_one_line_per_entry_and_is_private(log):
    entries = [log.record("ann", f"step {n}") for n in range(3)]
    assert log.head_file.path.read_text() == "".join(f"{e.id} {e.chain}\n" for e in entries)
    assert log.head_file.path.stat().st_mode & 0o777 == 0o600


def test_a_head_file_one_entry_behind_is_a_crash_and_the_start_adds_the_line(log):
    written(log, 3)
    head = log.head_file.path
    head.write_text("".join(head.read_text().splitlines(keepends=True)[:2]))  # stopped between commit and line
    report = log.check()
    assert report.intact and report.rewrite_head
    assert any("one entry behind" in note for note in report.notes)
    restarted = AuditLog(log.path)
    restarted.start()
    assert [int(line.split()[0]) for line in head.read_text().splitlines()] == [1, 2, 3]
    assert restarted.check().notes == ()
    assert restarted.record("ann", "after restart").id == 4


def test_an_old_data_dir_gets_its_head_file_at_start_and_losing_it_later_is_found(log, caplog):
    written(log, 3)
    log.head_file.path.unlink()
    tamper(log.path, "DROP TABLE audit_head")  # as before the head file existed
    old = AuditLog(log.path)
    assert old.check().intact
    report = old.start()
    assert report.intact
    assert "written from the verified chain: audit log intact: 3 entries" in caplog.text
    assert len(log.head_file.path.read_text().splitlines()) == 3
    log.head_file.path.unlink()
    assert first_bad(AuditLog(log.path)) == (3, HEAD_DAMAGED)


# --- a broken chain refuses new entries ------------------------------------------------------------------------


def test_a_broken_chain_found_at_start_refuses_every_append_naming_the_entry(log):
    written(log, 5)
    tamper(log.path, "UPDATE audit SET actor = 'mallory' WHERE id = 4")
    restarted = AuditLog(log.path)
    assert not restarted.start().intact
    with pytest.raises(AuditLogBroken, match=r"broken at entry 4 \(content changed\)") as refused:
        restarted.record("ann", "one more")
    assert refused.value.http_status == 503
    assert [e.id for e in restarted.entries()] == [1, 2, 3, 4, 5]  # reads still work


def test_a_tail_deleted_while_running_is_found_by_the_next_append(log):
    written(log, 5)
    tamper(log.path, "DELETE FROM audit WHERE id = 5")
    with pytest.raises(AuditLogBroken, match="broken at entry 5 .tail deleted."):
        log.record("ann", "covering tracks")
    assert log.broken.seq == 5
    assert log.head()[0] == 4


def test_entries_of_other_writers_are_checked_before_an_append(tmp_path):
    mine, theirs = AuditLog(tmp_path / "pipeline.db"), AuditLog(tmp_path / "pipeline.db")
    written(mine, 2)
    written(theirs, 2)  # entries 3 and 4, by another process say
    assert mine.record("ann", "next").id == 5
    assert mine.check().intact


def test_a_state_change_is_refused_with_its_audit_entry_on_a_broken_chain(tmp_path):
    store = ReleaseStore(tmp_path / "pipeline.db")
    release = store.create(seeded_request(), version=1, publisher="ann")
    tamper(store.database.path, "UPDATE audit SET actor = 'mallory' WHERE id = 1")
    restarted = ReleaseStore(tmp_path / "pipeline.db")
    restarted.audit.start()
    with pytest.raises(AuditLogBroken):
        restarted.start_gating(release.id)
    assert restarted.get(release.id).state == "registered"  # the transition rolled back with its entry


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
    log.record("bob", "rejected", release_id="rel-2", model="churn")
    assert [e.id for e in log.entries(until=later)] == [1, 2], "until is exclusive of what comes after"
    assert [e.id for e in log.entries(model="churn", actor="bob", action="rejected")] == [4]
    assert [e.id for e in log.entries(actor="bob", action="approved")] == [3]
    assert [e.id for e in log.entries(after=1, limit=2)] == [2, 3]
    assert [e.id for e in log.entries(after=4)] == []


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
    # The head lock kept the head file's lines in the order of the commits.
    assert [int(line.split()[0]) for line in log.head_file.path.read_text().splitlines()] == list(range(1, 151))


# --- mlopshub audit verify ------------------------------------------------------------------------------------


def audit_verify(*args: str, data_dir=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPSHUB_DATA_DIR": str(data_dir)} if data_dir else None
    command = [sys.executable, "-m", "mlopshub.cli", "audit", "verify", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_cli_says_intact_in_one_line_with_the_head_from_the_data_dir(tmp_path):
    log = written(AuditLog(tmp_path / "pipeline" / "pipeline.sqlite"), 3)
    result = audit_verify(data_dir=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"audit log intact: 3 entries, head entry 3 {log.head()[1]}\n"


def test_cli_names_the_first_bad_entry_and_exits_non_zero(tmp_path):
    log = written(AuditLog(tmp_path / "pipeline.sqlite"), 6)
    tamper(log.path, "UPDATE audit SET actor = 'mallory' WHERE id = 4")
    tamper(log.path, "DELETE FROM audit WHERE id = 6")
    result = audit_verify("--database", str(log.path))
    assert result.returncode == 3
    assert result.stdout.startswith("audit log broken at entry 4: content changed: entry 4 (approved by mallory")
    assert "also entry 6: tail deleted" in result.stdout
    report = json.loads(audit_verify("--database", str(log.path), "--json").stdout)
    assert report["intact"] is False
    assert (report["first_bad"]["seq"], report["first_bad"]["kind"]) == (4, "content changed")
    assert [p["seq"] for p in report["problems"]] == [4, 6]


def test_cli_refuses_a_path_without_a_database(tmp_path):
    result = audit_verify("--database", str(tmp_path / "nothing.sqlite"))
    assert result.returncode == 1
    assert "no pipeline database at" in result.stderr


# --- the pipeline service: checks at start, refuses to record, says so on health --------------------------------


def seeded_request():
    run = "0123456789abcdef0123456789abcdef"
    body = {"model_uri": f"runs:/{run}/model", "name": "credit-default", "kind": "online", "description": "lr"}
    return validate_publish(body, {run: "sme-credit"}.get)


@pytest.fixture
def pipeline_dir(tmp_path):
    """A pipeline data dir with one rejected release (nothing for a restart to resume): three entries."""
    store = ReleaseStore(tmp_path / "pipeline.sqlite")
    release = store.create(seeded_request(), version=1, publisher="ann")
    store.start_gating(release.id)
    store.mark_failed(release.id, "gates could not run")
    return tmp_path, release.id


def started(data_dir):
    # No MLflow: nothing these tests do reaches the registry.
    return PipelineService(data_dir, "http://127.0.0.1:9", load_holdout=lambda team, spec: None)


def test_pipeline_on_a_broken_chain_refuses_to_record_and_health_names_the_entry(pipeline_dir):
    data_dir, release_id = pipeline_dir
    tamper(data_dir / "pipeline.sqlite", "UPDATE audit SET actor = 'mallory' WHERE id = 2")
    service = started(data_dir)
    try:
        health = requests.get(f"{service.url}/services/pipeline/health", timeout=30)
        assert health.status_code == 503
        assert health.json()["audit"] == {"first_bad_entry": 2, "problem": "content changed"}
        assert "mallory" not in health.text  # public: no content of the log
        # A refused approval is recorded too, so even that is refused.
        refused = service.api("POST", f"releases/{release_id}/approve", "ann", {"comment": "ok"})
        assert refused.status_code == 503
        assert "broken at entry 2 (content changed)" in refused.json()["message"]
        assert service.api("GET", f"releases/{release_id}", "val").status_code == 200
        assert len(service.api("GET", "audit", "val").json()) == 3
    finally:
        service.close()


def test_pipeline_chain_is_intact_after_a_restart(pipeline_dir):
    data_dir, release_id = pipeline_dir
    service = started(data_dir)
    try:
        assert requests.get(f"{service.url}/services/pipeline/health", timeout=30).json() == {"status": "ok"}
        # Refused (no approve scope) and recorded: an entry written by the running service.
        assert service.api("POST", f"releases/{release_id}/approve", "ann", {"comment": "ok"}).status_code == 403
    finally:
        service.close()
    service = started(data_dir)
    try:
        assert requests.get(f"{service.url}/services/pipeline/health", timeout=30).status_code == 200
        assert service.api("POST", f"releases/{release_id}/approve", "ann", {"comment": "ok"}).status_code == 403
    finally:
        service.close()
    result = audit_verify("--database", str(data_dir / "pipeline.sqlite"))
    assert (result.returncode, result.stdout.split(",")[0]) == (0, "audit log intact: 5 entries")


# --- GET /api/audit: filters, pages, and a release's trail for its team -----------------------------------------


@pytest.fixture
def two_teams(tmp_path):
    """A running pipeline with three releases: two of sme-credit (one by sam, awaiting approval), one of retail."""
    store = ReleaseStore(tmp_path / "pipeline.sqlite")

    def release(name: str, team: str, publisher: str, awaiting: bool):
        run = "0123456789abcdef0123456789abcdef"
        body = {"model_uri": f"runs:/{run}/model", "name": name, "kind": "online", "description": "lr"}
        created = store.create(validate_publish(body, {run: team}.get), version=1, publisher=publisher)
        store.start_gating(created.id)
        if not awaiting:
            return store.mark_failed(created.id, "gates could not run")
        store.record_gate_results(created.id, [GateResult("model_loads", True, "the model loads")])
        return store.mark_staging_ready(created.id, {"staging": f"/services/models/{name}/staging/invocations"})

    ids = {
        "credit": release("credit-default", "sme-credit", "ann", awaiting=False).id,
        "retail": release("churn", "retail-scoring", "bob", awaiting=False).id,
    }
    service = started(tmp_path)
    # Made awaiting once the service runs: at start it would bring the staging endpoint back, from no MLflow.
    ids["awaiting"] = release("credit-limits", "sme-credit", "sam", awaiting=True).id
    yield service, ids
    service.close()


def test_a_team_member_reads_the_trail_of_the_teams_release_and_nothing_else(two_teams):
    service, ids = two_teams
    trail = service.api("GET", "audit", "ann", release_id=ids["credit"])
    assert trail.status_code == 200, trail.text
    assert [e["action"] for e in trail.json()] == ["registered", "gating started", "failed"]
    assert {e["release_id"] for e in trail.json()} == {ids["credit"]}
    csv_trail = service.api("GET", "audit", "ann", release_id=ids["credit"], format="csv")
    assert csv_trail.text.splitlines()[0] == "id,at,actor,action,release_id,model,version,reason,details,chain"
    assert len(csv_trail.text.splitlines()) == 4

    whole = service.api("GET", "audit", "ann")
    assert whole.status_code == 403 and "custom:mlopshub:read-releases" in whole.json()["message"]
    # Another team's release answers as one that does not exist: bob learns nothing of it.
    foreign = service.api("GET", "audit", "bob", release_id=ids["credit"])
    unknown = service.api("GET", "audit", "bob", release_id="rel-000000000000")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.text.replace(ids["credit"], "<id>") == unknown.text.replace("rel-000000000000", "<id>")
    assert service.api("GET", "audit", "bob", release_id=ids["retail"]).status_code == 200
    # A validator reads any release's trail, and an id with no entries is just an empty list to her.
    assert len(service.api("GET", "audit", "val", release_id=ids["retail"]).json()) == 3
    assert service.api("GET", "audit", "val", release_id="rel-000000000000").json() == []


def test_the_audit_log_filters_and_pages_on_the_server(two_teams):
    service, ids = two_teams
    everything = service.api("GET", "audit", "val").json()
    assert len(everything) == 10

    def ask(**params):
        answer = service.api("GET", "audit", "val", **params)
        assert answer.status_code == 200, answer.text
        return [e["id"] for e in answer.json()]

    assert ask(model="churn") == [e["id"] for e in everything if e["model"] == "churn"]
    assert ask(actor="sam", action="registered") == [everything[6]["id"]]
    assert ask(action="failed", model="credit-default") == [everything[2]["id"]]
    middle = everything[5]["at"]
    assert ask(since=middle) == [e["id"] for e in everything if e["at"] >= middle]
    assert ask(until=middle) == [e["id"] for e in everything if e["at"] < middle], "until is exclusive"
    assert ask(since=middle.replace("+00:00", "Z"), until="2999-01-01T01:00:00+01:00") == ask(since=middle)

    pages, after = [], 0
    while page := ask(limit=4, after=after):
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [4, 4, 2] and sum(pages, []) == [e["id"] for e in everything]
    assert ask(limit=1000) == ask()
    csv_page = service.api("GET", "audit", "val", format="csv", actor="pipeline", after=3, limit=2)
    rows = list(csv.DictReader(io.StringIO(csv_page.text)))
    assert [int(r["id"]) for r in rows] == ask(actor="pipeline", after=3)[:2]
    assert {r["actor"] for r in rows} == {"pipeline"} and rows[0]["release_id"] == ids["retail"]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"since": "2026-12-01T09:00"}, "since", "has no time zone"),
        ({"until": "2026-12-01T09:00:00"}, "until", "has no time zone"),
        ({"until": "yesterday"}, "until", "is not a time"),
        ({"limit": "0"}, "limit", "from 1 to 1000"),
        ({"limit": "1001"}, "limit", "from 1 to 1000"),
        ({"limit": "ten"}, "limit", "got 'ten'"),
        ({"after": "-1"}, "after", "whole number"),
        ({"after": "9" * 30}, "after", "whole number"),
        ({"model": "m" * 201}, "model", "at most 200"),
        ({"format": "xml"}, "format", "json or csv"),
    ],
)
def test_a_wrong_audit_filter_is_422_naming_it(two_teams, params, field, says):
    service, _ = two_teams
    answer = service.api("GET", "audit", "val", **params)
    assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    assert says in answer.json()["message"]


def test_an_approval_without_a_comment_is_422_and_a_refused_one_is_still_recorded(two_teams):
    service, ids = two_teams
    for body in ({}, {"comment": ""}, {"comment": " \t "}, {"comment": "x" * 2001}, {"comment": None}):
        answer = service.api("POST", f"releases/{ids['awaiting']}/approve", "val", body)
        assert (answer.status_code, answer.json()["field"]) == (422, "comment"), (body, answer.text)
    assert service.api("GET", f"releases/{ids['awaiting']}", "val").json()["state"] == "awaiting_approval"
    # Refused whatever the comment, and recorded: the publisher (four eyes), then a user without the scope.
    own = service.api("POST", f"releases/{ids['awaiting']}/approve", "sam", {})
    assert own.status_code == 403 and "published by 'sam'" in own.json()["message"]
    assert service.api("POST", f"releases/{ids['awaiting']}/approve", "ann", {}).status_code == 403
    refused = service.api("GET", "audit", "val", release_id=ids["awaiting"], action="approval refused").json()
    assert [e["actor"] for e in refused] == ["sam", "ann"]
