"""The pipeline file's schema version: a file written before versions is upgraded keeping every release and audit
entry, with the chain intact; a file from a newer mlopshub is refused untouched; opening again changes nothing; a
migration that fails half-way leaves the file as it was."""

import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

from mlopshub.pipeline import AuditLog, ReleaseStore, validate_publish
from mlopshub.pipeline.audit import HEAD_FILE
from mlopshub.pipeline.database import Database
from mlopshub.pipeline.gates import GateResult
from mlopshub.pipeline.schema import MIGRATIONS, SCHEMA
from mlopshub.sqlite_schema import Schema, SchemaError

# The statements the pipeline ran at every open before its file carried a schema version, copied from the code as
# it was and frozen here on purpose: these are the files in existing data dirs, whatever the code says today.
# AUDIT_TABLES: audit.py's SCHEMA of 45d54f7 (the first pipeline); RELEASE_TABLES: release.py's SCHEMA, unchanged
# from 45d54f7 to 69f6433; HEAD_MARKER: the table audit.py's SCHEMA gained in db11f8b (the chain head file).
AUDIT_TABLES = (
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
HEAD_MARKER = (
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        file TEXT NOT NULL,
        created TEXT NOT NULL,
        since INTEGER NOT NULL
    )""",
)
RELEASE_TABLES = (
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
)
#: What a data dir holds, by the code that wrote it (the audit log opened first, then the releases).
FIRST_PIPELINE = (*AUDIT_TABLES, *RELEASE_TABLES)
BEFORE_VERSIONS = (*AUDIT_TABLES, *HEAD_MARKER, *RELEASE_TABLES)

RUN = "0123456789abcdef0123456789abcdef"
PASSED = [GateResult("model_loads", True, "the model loads"), GateResult("lineage", True, "clean")]


def request(name: str):
    body = {"model_uri": f"runs:/{RUN}/model", "name": name, "kind": "online", "description": "gradient boosting"}
    return validate_publish(body, {RUN: "sme-credit"}.get)


def to_awaiting_approval(store: ReleaseStore, name: str, version: int):
    release = store.create(request(name), version=version, publisher="pat")
    store.start_gating(release.id)
    store.record_gate_results(release.id, PASSED)
    return store.mark_staging_ready(release.id, {"staging": f"/services/models/{name}/staging/invocations"})


def history(store: ReleaseStore) -> ReleaseStore:
    """Releases in every kind of state, through the public API: two in production (one rolled back), one rejected,
    one failed, one awaiting approval."""
    for version in (1, 2):
        release = to_awaiting_approval(store, "credit-default", version)
        store.approve(release.id, "val", "checked the hold-out metrics")
        store.mark_production(release.id, endpoints={"production": "/services/models/credit-default/production"})
    store.rollback("credit-default", "val", "version 2 scores drift")
    store.reject(to_awaiting_approval(store, "churn", 1).id, "val", "no lineage for the training data")
    failed = store.create(request("fraud"), version=1, publisher="pat")
    store.start_gating(failed.id)
    store.mark_failed(failed.id, "gates could not run")
    to_awaiting_approval(store, "fraud", 2)
    return store


def unversioned_file(tmp_path, statements, source: ReleaseStore | None, name="pipeline.sqlite"):
    """A data dir as the code before versions left it: its tables made by ``statements``, holding the rows (and the
    head file, if it had one) of ``source``."""
    folder = tmp_path / "old"
    folder.mkdir(exist_ok=True)
    path = folder / name
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")  # as the old code's ensure_schema set it
    for statement in statements:
        connection.execute(statement)
    if source is not None:
        connection.execute("ATTACH DATABASE ? AS filled", (str(source.database.path),))
        connection.execute("BEGIN")
        connection.execute("INSERT INTO main.audit SELECT * FROM filled.audit ORDER BY id")
        if "releases" in tables(connection):
            connection.execute("INSERT INTO main.releases SELECT * FROM filled.releases")
        if "audit_head" in tables(connection):
            connection.execute(
                "INSERT INTO main.audit_head SELECT id, ?, created, since FROM filled.audit_head",
                (str(path.with_name(HEAD_FILE)),),
            )
            shutil.copyfile(source.audit.head_file.path, path.with_name(HEAD_FILE))
        connection.execute("COMMIT")
        connection.execute("DETACH DATABASE filled")
    connection.close()
    return path


def tables(connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}


def layout(path) -> tuple[int, list[tuple[str, ...]]]:
    """The file's user_version and every table, index and trigger with its SQL."""
    connection = sqlite3.connect(path)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        objects = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        connection.close()
    return version, objects


@pytest.fixture
def written(tmp_path) -> ReleaseStore:
    """A store of today's code with a history, whose rows the old files are filled with."""
    return history(ReleaseStore(tmp_path / "written" / "pipeline.sqlite"))


def audit_verify(path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mlopshub.cli", "audit", "verify", "--database", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


# --- an upgrade keeps everything --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statements", [FIRST_PIPELINE, BEFORE_VERSIONS], ids=["first pipeline, no head file", "just before versions"]
)
def test_a_file_from_before_versions_is_upgraded_keeping_every_release_and_an_intact_chain(
    tmp_path, written, statements
):
    path = unversioned_file(tmp_path, statements, written)
    releases, entries = written.releases(), written.audit.entries()
    assert len(releases) == 5 and len(entries) > 20

    store = ReleaseStore(path)

    assert store.releases() == releases
    assert store.production("credit-default") == written.production("credit-default")
    assert store.audit.entries() == entries
    report = store.audit.start()  # the pipeline's start: a full check, and the head file for a first-pipeline dir
    assert report.intact, report.summary()
    assert report.entries == len(entries) and report.head == (entries[-1].id, entries[-1].chain)
    assert store.audit.verify() == []
    # The upgraded file is the file a new store makes, and the log goes on from where it was.
    fresh = ReleaseStore(tmp_path / "fresh" / "pipeline.sqlite")
    assert layout(path) == layout(fresh.database.path)
    assert layout(path)[0] == SCHEMA.version
    store.approve(store.in_flight("fraud").id, "val", "after the upgrade")
    assert store.audit.entries()[-1].id == entries[-1].id + 1
    result = audit_verify(path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"audit log intact: {len(entries) + 1} entries")


def test_an_audit_log_opened_alone_before_versions_gets_its_releases_table(tmp_path, written):
    # Before versions, AuditLog(path) without a ReleaseStore made the audit tables only.
    path = unversioned_file(tmp_path, (*AUDIT_TABLES, *HEAD_MARKER), written)
    store = ReleaseStore(path)
    assert store.releases() == [] and store.audit.entries() == written.audit.entries()
    assert store.audit.start().intact
    assert layout(path)[0] == SCHEMA.version
    release = store.create(request("credit-default"), version=1, publisher="pat")
    assert store.get(release.id) == release


def test_a_file_whose_tables_are_not_the_pipelines_is_refused_untouched(tmp_path):
    path = tmp_path / "pipeline.sqlite"
    foreign = sqlite3.connect(path)
    foreign.execute("CREATE TABLE releases (id TEXT PRIMARY KEY, version TEXT)")
    foreign.close()
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="has a table releases with the columns id, version, not those of the"):
        ReleaseStore(path)
    assert path.read_bytes() == before


# --- a newer file is refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [ReleaseStore, AuditLog])
def test_a_file_from_a_newer_mlopshub_is_refused_naming_it_and_left_untouched(tmp_path, opener):
    path = tmp_path / "pipeline.sqlite"
    history(ReleaseStore(path))
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version = {SCHEMA.version + 1}")
    newer.close()
    before, head = path.read_bytes(), path.with_name(HEAD_FILE).read_bytes()

    with pytest.raises(SchemaError) as refused:
        opener(path)

    assert str(refused.value) == (
        f"the pipeline database {path} has schema version {SCHEMA.version + 1}, newer than this mlopshub knows "
        f"({SCHEMA.version}); run the mlopshub version that wrote it, or a newer one"
    )
    assert path.read_bytes() == before
    assert path.with_name(HEAD_FILE).read_bytes() == head
    assert layout(path)[0] == SCHEMA.version + 1


# --- opening again --------------------------------------------------------------------------------------------


def test_opening_again_changes_nothing(tmp_path, written):
    path = unversioned_file(tmp_path, BEFORE_VERSIONS, written)
    ReleaseStore(path)
    upgraded, upgraded_bytes = layout(path), path.read_bytes()

    again = ReleaseStore(path)
    AuditLog(path)

    assert layout(path) == upgraded
    assert path.read_bytes() == upgraded_bytes
    assert again.releases() == written.releases()
    assert again.audit.entries() == written.audit.entries()


def test_a_new_file_is_at_the_current_version_in_wal_mode(tmp_path):
    store = ReleaseStore(tmp_path / "pipeline.sqlite")
    connection = sqlite3.connect(store.database.path)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    connection.close()


def test_dropped_triggers_are_put_back_on_open_and_noted_at_start(tmp_path):
    store = history(ReleaseStore(tmp_path / "pipeline.sqlite"))
    connection = sqlite3.connect(store.database.path)
    connection.execute("DROP TRIGGER audit_no_delete")
    connection.close()

    reopened = ReleaseStore(store.database.path)

    assert any("audit_no_delete had been dropped (put back)" in note for note in reopened.audit.start().notes)
    connection = sqlite3.connect(store.database.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("DELETE FROM audit WHERE id = 1")
    connection.close()


# --- a failed migration -----------------------------------------------------------------------------------------


def test_a_migration_that_fails_half_way_leaves_the_file_as_it_was(tmp_path, written):
    path = unversioned_file(tmp_path, FIRST_PIPELINE, written)
    before, before_bytes = layout(path), path.read_bytes()
    # A third version whose second statement fails (no column owner): version 2 and the first statement of 3 ran.
    broken = Schema(
        SCHEMA.what,
        (*MIGRATIONS, ("CREATE TABLE models (name TEXT)", "CREATE INDEX models_owner ON models (owner)")),
        SCHEMA.unversioned,
    )

    with pytest.raises(SchemaError) as failed:
        Database(path).migrate(broken)

    assert re.fullmatch(
        f"cannot upgrade the pipeline database {re.escape(str(path))} from schema version 2 to 3: "
        "no such column: owner; nothing was changed, the file is still at version 1",
        str(failed.value),
    )
    assert layout(path) == before
    assert path.read_bytes() == before_bytes
    store = ReleaseStore(path)  # and the code that knows it opens it
    assert store.releases() == written.releases()
    assert store.audit.start().intact
