"""`mlopshub backup` and `restore` on a data dir of real SQLite databases, some written to while the backup runs."""

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from testing_support import until

from mlopshub import accounts, settings
from mlopshub.backup import MANIFEST, BackupError, backup, restore
from mlopshub.pipeline.audit import AuditLog, verify_file
from mlopshub.usage import UsageStore

REPO = Path(__file__).resolve().parents[2]
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="owners other than ours need root")
SECRET = "s3cr3t-admin-token-0123456789"


def database(path: Path, wal: bool = False) -> Path:
    """A SQLite file with two tables every transaction writes together (so a torn copy shows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS a (n INTEGER)")
    connection.execute("CREATE TABLE IF NOT EXISTS b (n INTEGER)")
    connection.commit()
    connection.close()
    return path


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def platform(tmp_path) -> settings.Settings:
    """A stopped platform's data dir as the one-machine mode lays it out, and its own copy of the catalog."""
    shutil.copytree(REPO / "profiles", tmp_path / "catalog")
    s = settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path / "data"), "MLOPSHUB_CATALOG": str(tmp_path / "catalog")})
    data = s.data_dir
    data.mkdir(mode=0o711)
    database(data / "jupyterhub.sqlite")
    database(s.mlflow_dir / "mlflow.sqlite", wal=True)
    database(s.mlflow_dir / "auth.sqlite")
    write(s.mlflow_dir / "artifacts" / "1" / "run" / "model.pkl", "model bytes")
    audit = AuditLog(s.pipeline_dir / "pipeline.sqlite")
    audit.start()
    audit.record("carol", "registered", model="credit", version=1)
    # Beside it, the usage store (Teams page), written while the backup runs: another database, not the audit log.
    UsageStore(s.pipeline_dir / "usage.sqlite")
    write(s.pipeline_dir / "models" / "sme-credit" / "credit-1" / "MLmodel", "flavors: {}", 0o640)
    write(data / "dvc-remotes" / "sme-credit" / "files" / "md5" / "ab" / "cdef", "data", 0o664)
    (data / "dvc-remotes" / "sme-credit").chmod(0o2770)
    write(s.homes_dir / "alice" / "train.ipynb", "{}", 0o644)
    (s.homes_dir / "alice").chmod(0o700)
    write(s.secrets_dir / "admin-token", SECRET)
    s.secrets_dir.chmod(0o700)
    write(s.run_dir / "supervisor.pid", "1\n")
    write(s.logs_dir / "hub.log", "a log line\n")
    write(s.logs_dir / "membership.log", '{"user": "alice"}\n')
    write(s.pipeline_dir / "logs" / "credit-production.log", "served\n")
    write(s.pipeline_dir / "control" / "serving.sock", "")
    return s


def entries(manifest: dict) -> dict[str, dict]:
    return {entry["path"]: entry for entry in manifest["entries"]}


def test_backup_copies_the_platforms_data_and_leaves_out_what_a_start_rebuilds(platform, tmp_path):
    manifest = backup(platform, tmp_path / "backup")
    listed = entries(manifest)
    assert manifest["databases"] == [
        "pipeline/pipeline.sqlite",
        "pipeline/usage.sqlite",
        "jupyterhub.sqlite",
        "mlflow/auth.sqlite",
        "mlflow/mlflow.sqlite",
    ]
    for path in (
        "data/mlflow/artifacts/1/run/model.pkl",
        "data/pipeline/models/sme-credit/credit-1/MLmodel",
        "data/dvc-remotes/sme-credit/files/md5/ab/cdef",
        "data/homes/alice/train.ipynb",
        "data/secrets/admin-token",
        "data/pipeline/audit-head.log",
        "data/logs/membership.log",
        "catalog/teams.yaml",
    ):
        assert listed[path]["type"] == "file", path
    for path in (
        "data/run",
        "data/logs/hub.log",
        "data/pipeline/logs",
        "data/pipeline/control",
        "data/mlflow/mlflow.sqlite-wal",
    ):
        assert path not in listed and not (tmp_path / "backup" / path).exists(), path
    assert manifest["audit"]["intact"] and manifest["audit"]["head"]["seq"] == 1
    assert manifest["mlopshub"] and manifest["created"]
    assert listed["data/secrets/admin-token"]["mode"] == "0o600" and listed["data/secrets"]["mode"] == "0o700"


def test_the_backup_folder_is_private_to_root(platform, tmp_path):
    backup(platform, tmp_path / "backup")
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700
    assert (tmp_path / "backup").stat().st_uid == os.geteuid()
    assert stat.S_IMODE((tmp_path / "backup" / MANIFEST).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backup" / "data" / "secrets" / "admin-token").stat().st_mode) == 0o600


def test_every_database_copy_is_consistent_while_rows_are_written(platform, tmp_path):
    """Writers commit to the hub's (rollback journal), MLflow's (WAL) and the audit log all through the backup."""
    stop = threading.Event()
    written = {"jupyterhub.sqlite": 0, "mlflow/mlflow.sqlite": 0}
    audit = AuditLog(platform.pipeline_dir / "pipeline.sqlite")

    def insert(relative: str) -> None:
        connection = sqlite3.connect(platform.data_dir / relative, timeout=30)
        while not stop.is_set():
            with connection:
                connection.execute("INSERT INTO a VALUES (?)", (written[relative],))
                connection.execute("INSERT INTO b VALUES (?)", (written[relative],))
            written[relative] += 1
        connection.close()

    def record() -> None:
        while not stop.is_set():
            audit.record("writer", "tick")

    threads = [threading.Thread(target=insert, args=(name,)) for name in written] + [threading.Thread(target=record)]
    for thread in threads:
        thread.start()
    try:
        until(lambda: all(count > 50 for count in written.values()), "rows written before the backup")
        before = dict(written)
        manifest = backup(platform, tmp_path / "backup")
        until(lambda: all(written[name] > before[name] + 50 for name in written), "rows written after the backup")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    for relative in written:
        copy = sqlite3.connect(tmp_path / "backup" / "data" / relative)
        a, b = (copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("a", "b"))
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copy.close()
        assert a == b, f"{relative}: a transaction was torn in the copy"
        assert before[relative] <= a < written[relative], f"{relative}: not a copy taken while rows were written"
    copied = verify_file(tmp_path / "backup" / "data" / "pipeline" / "pipeline.sqlite")
    assert copied.intact, copied.summary()
    assert manifest["audit"]["head"] == {"seq": copied.head[0], "chain": copied.head[1]}
    assert 1 < copied.entries < len(audit.entries())


def test_a_symlink_or_fifo_in_a_home_is_copied_as_a_link_never_its_target(platform, tmp_path):
    home = platform.homes_dir / "alice"
    (home / "shadow").symlink_to("/etc/shadow")
    (home / "platform-secrets").symlink_to(platform.secrets_dir)
    os.mkfifo(home / "pipe")  # opening it to read would wait forever
    manifest = backup(platform, tmp_path / "backup")
    listed = entries(manifest)
    copy = tmp_path / "backup" / "data" / "homes" / "alice"
    assert (listed["data/homes/alice/shadow"]["type"], listed["data/homes/alice/shadow"]["target"]) == (
        "symlink",
        "/etc/shadow",
    )
    assert os.readlink(copy / "shadow") == "/etc/shadow"
    assert os.readlink(copy / "platform-secrets") == str(platform.secrets_dir)
    assert sorted(p.name for p in copy.iterdir() if not p.is_symlink()) == ["train.ipynb"]
    skipped = {item["path"]: item["why"] for item in manifest["skipped"]}
    assert "not a file, folder or symlink" in skipped["data/homes/alice/pipe"]
    secret_files = [p for p in (tmp_path / "backup").rglob("*") if p.is_file() and not p.is_symlink()]
    assert sum(SECRET in p.read_text(errors="replace") for p in secret_files) == 1, "the secret is copied once"

    shutil.rmtree(platform.data_dir)
    shadow = os.lstat("/etc/shadow")
    restore(platform, tmp_path / "backup")
    assert os.readlink(home / "shadow") == "/etc/shadow" and not (home / "pipe").exists()
    assert os.lstat("/etc/shadow") == shadow


def test_restore_refuses_to_write_through_a_symlink_a_manifest_names_as_a_folder(platform, tmp_path):
    (platform.homes_dir / "alice" / "etc").symlink_to("/etc")
    backup(platform, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    planted = {**entries(manifest)["data/homes/alice/train.ipynb"], "path": "data/homes/alice/etc/evil"}
    manifest["entries"].append(planted)
    (tmp_path / "backup" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="data/homes/alice/etc/evil: its folder data/homes/alice/etc is not"):
        restore(platform, tmp_path / "backup")
    assert not Path("/etc/evil").exists()


@AS_ROOT
def test_restore_keeps_owners_and_modes_of_homes_remotes_models_and_secrets(platform, tmp_path):
    nobody, nogroup = 65534, 65534
    home = platform.homes_dir / "alice"
    for path in (home, home / "train.ipynb"):
        os.chown(path, nobody, nogroup)
    os.chown(home / "train.ipynb", nobody, nogroup)
    (home / "link").symlink_to("train.ipynb")
    os.chown(home / "link", nobody, nogroup, follow_symlinks=False)
    os.chown(platform.data_dir / "dvc-remotes" / "sme-credit", 0, nogroup)
    models = platform.pipeline_dir / "models" / "sme-credit"
    os.chown(models / "credit-1" / "MLmodel", 0, nogroup)
    write(home / "setuid", "#!/bin/sh\n", 0o4755)
    os.chown(home / "setuid", nobody, nogroup)
    os.chmod(home / "setuid", 0o4755)
    times = (home / "train.ipynb").stat().st_mtime_ns
    backup(platform, tmp_path / "backup")
    shutil.rmtree(platform.data_dir)

    restore(platform, tmp_path / "backup")
    owner = lambda path: (path.lstat().st_uid, path.lstat().st_gid, stat.S_IMODE(path.lstat().st_mode))  # noqa: E731
    assert owner(home) == (nobody, nogroup, 0o700)
    assert owner(home / "train.ipynb") == (nobody, nogroup, 0o644)
    assert owner(home / "link")[:2] == (nobody, nogroup) and os.readlink(home / "link") == "train.ipynb"
    assert owner(home / "setuid") == (nobody, nogroup, 0o755), "no setuid file comes back from a workspace"
    assert owner(platform.data_dir / "dvc-remotes" / "sme-credit") == (0, nogroup, 0o2770)
    assert owner(models / "credit-1" / "MLmodel") == (0, nogroup, 0o640)
    assert owner(platform.secrets_dir) == (0, 0, 0o700) and owner(platform.secrets_dir / "admin-token")[2] == 0o600
    assert owner(platform.data_dir)[2] == 0o711
    assert (home / "train.ipynb").stat().st_mtime_ns == times


@AS_ROOT
def test_restore_on_a_machine_without_the_workspace_account_creates_it_for_the_home(platform, tmp_path):
    name = f"jupyter-bk{os.getpid()}"
    home = platform.homes_dir / "alice"
    account = accounts.ensure_unix_user(name, home)
    try:
        for path in (home, home / "train.ipynb"):
            os.chown(path, account.pw_uid, account.pw_gid)
        backup(platform, tmp_path / "backup")
        subprocess.run(["userdel", name], check=True)
        shutil.rmtree(platform.data_dir)

        restore(platform, tmp_path / "backup")
        created = pwd.getpwnam(name)
        assert created.pw_dir == str(home)
        assert (home.stat().st_uid, (home / "train.ipynb").stat().st_uid) == (created.pw_uid, created.pw_uid)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_restore_moves_the_current_data_dir_aside_and_the_audit_chain_verifies(platform, tmp_path):
    backup(platform, tmp_path / "backup")
    write(platform.data_dir / "after-the-backup", "kept aside")
    AuditLog(platform.pipeline_dir / "pipeline.sqlite").record("carol", "approved")

    done = restore(platform, tmp_path / "backup")
    (aside,) = tmp_path.glob("data.before-restore-*")
    assert done["moved_aside"] == str(aside) and (aside / "after-the-backup").read_text() == "kept aside"
    assert not (platform.data_dir / "after-the-backup").exists()
    assert (
        done["audit"]
        == "audit log intact: 1 entries, head entry 1 " + verify_file(platform.pipeline_dir / "pipeline.sqlite").head[1]
    )
    assert (platform.secrets_dir / "admin-token").read_text() == SECRET
    assert not list(tmp_path.glob("data.restoring-*"))


def test_without_homes_leaves_the_homes_out(platform, tmp_path):
    manifest = backup(platform, tmp_path / "backup", homes=False)
    assert "data/homes" in entries(manifest) and not any(p.startswith("data/homes/") for p in entries(manifest))
    assert "homes/ (--without-homes)" in manifest["left_out"]


@pytest.mark.parametrize(
    "tamper, named",
    [
        (lambda b: (b / "data" / "secrets" / "admin-token").write_text("another token"), "data/secrets/admin-token"),
        (lambda b: (b / "data" / "mlflow" / "mlflow.sqlite").unlink(), "data/mlflow/mlflow.sqlite: missing"),
        (lambda b: write(b / "data" / "homes" / "alice" / "planted.py", "x"), "planted.py: not listed"),
        (
            lambda b: edit(b, "data/jupyterhub.sqlite", {"sha256": "0" * 64}),
            "data/jupyterhub.sqlite: its content differs",
        ),
        (
            lambda b: edit(b, "data/jupyterhub.sqlite", {"path": "data/../../etc/passwd"}),
            "not a path inside the backup",
        ),
        (lambda b: (b / MANIFEST).write_text("{"), f"{MANIFEST} is not JSON"),
        (lambda b: (b / MANIFEST).unlink(), f"{MANIFEST} is missing"),
    ],
)
def test_restore_refuses_a_backup_that_does_not_match_its_manifest_naming_the_file(platform, tmp_path, tamper, named):
    backup(platform, tmp_path / "backup")
    tamper(tmp_path / "backup")
    before = sorted(p.name for p in platform.data_dir.iterdir())
    with pytest.raises(BackupError, match=named.replace(".", r"\.")):
        restore(platform, tmp_path / "backup")
    assert sorted(p.name for p in platform.data_dir.iterdir()) == before
    assert not list(tmp_path.glob("data.*-*")), "nothing moved aside, nothing half-written"


def edit(folder: Path, path: str, changes: dict) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["entries"] = [{**e, **changes} if e["path"] == path else e for e in manifest["entries"]]
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_restore_refuses_while_the_platform_runs_naming_its_supervisor(platform, tmp_path):
    backup(platform, tmp_path / "backup")
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlopshub.supervisor"])
    try:
        write(platform.run_dir / "supervisor.pid", f"{supervisor.pid}\n")
        with pytest.raises(BackupError, match=rf"mlopshub is running .*supervisor pid {supervisor.pid}.*mlopshub down"):
            restore(platform, tmp_path / "backup")
    finally:
        supervisor.kill()
        supervisor.wait()
    assert not list(tmp_path.glob("data.*-*"))


def test_backup_refuses_a_folder_inside_the_data_dir_or_one_that_is_not_empty(platform, tmp_path):
    with pytest.raises(BackupError, match="inside the data dir"):
        backup(platform, platform.data_dir / "backups")
    write(tmp_path / "full" / "something", "x")
    with pytest.raises(BackupError, match="exists and is not an empty folder"):
        backup(platform, tmp_path / "full")


def test_a_damaged_database_is_named_and_leaves_no_half_backup(platform, tmp_path):
    (platform.mlflow_dir / "mlflow.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(BackupError, match=f"{platform.mlflow_dir / 'mlflow.sqlite'}: "):
        backup(platform, tmp_path / "backup")
    assert list((tmp_path / "backup").iterdir()) == []


def test_restore_keeps_a_catalog_that_differs_unless_told_and_restores_a_missing_one(platform, tmp_path):
    backup(platform, tmp_path / "backup")
    same = restore(platform, tmp_path / "backup")
    assert same["catalog"] == f"the catalog in {platform.catalog_dir} is the backup's"
    original = (platform.catalog_dir / "teams.yaml").read_text()
    write(platform.catalog_dir / "teams.yaml", original + "\n# edited after the backup\n", 0o644)

    kept = restore(platform, tmp_path / "backup")["catalog"]
    assert "differs from the backup's (teams.yaml) and was kept" in kept and "--replace-catalog" in kept
    assert "edited after the backup" in (platform.catalog_dir / "teams.yaml").read_text()
    replaced = restore(platform, tmp_path / "backup", replace_catalog=True)
    (aside,) = tmp_path.glob("catalog.before-restore-*")
    assert replaced["catalog"].endswith(f"the one it replaced is at {aside}")
    assert (platform.catalog_dir / "teams.yaml").read_text() == original
    assert "edited after the backup" in (aside / "teams.yaml").read_text()
    shutil.rmtree(platform.catalog_dir)
    assert restore(platform, tmp_path / "backup")["catalog"] == f"the catalog restored into {platform.catalog_dir}"
    assert (platform.catalog_dir / "teams.yaml").read_text() == original


def test_the_commands_say_the_backup_holds_secrets_and_name_a_tampered_file(platform, tmp_path):
    env = {**os.environ, "MLOPSHUB_DATA_DIR": str(platform.data_dir), "MLOPSHUB_CATALOG": str(platform.catalog_dir)}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "mlopshub.cli", *args], env=env, capture_output=True, text=True, cwd=REPO
    )
    made = run("backup", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    assert "holds the platform's secrets" in made.stdout and "audit log intact: 1 entries" in made.stdout
    (tmp_path / "backup" / "data" / "mlflow" / "auth.sqlite").write_bytes(b"not the backup's")
    refused = run("restore", str(tmp_path / "backup"))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'backup' / 'data' / 'mlflow' / 'auth.sqlite'}: its content differs" in refused.stderr
