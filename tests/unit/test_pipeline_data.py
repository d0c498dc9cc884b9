"""The gates' view of a team's data, with real git and DVC: pushed or not, and the hold-out set at a version."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlopshub.accounts import ensure_unix_user, unix_name
from mlopshub.services.pipeline.holdout import dvc_holdout_loader, local_remote_check
from mlopshub.services.pipeline.projects import ProjectReader, ProjectRefused

DVC = [sys.executable, "-m", "dvc"]
LOAN_ROWS = "amount,default\n1,0\n"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "ann", "GIT_AUTHOR_EMAIL": "ann@test",
       "GIT_COMMITTER_NAME": "ann", "GIT_COMMITTER_EMAIL": "ann@test"}  # fmt: skip


def run(args: list[str], cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


def md5_of(dvc_file: Path) -> str:
    return next(line.split()[-1] for line in dvc_file.read_text().splitlines() if "md5:" in line)


@pytest.fixture
def project(tmp_path):
    """A git + DVC project of ann's, team sme-credit, in <homes>/ann/project, its remote at <remotes>/sme-credit."""
    remotes, root = tmp_path / "remotes", tmp_path / "homes" / "ann" / "project"
    (remotes / "sme-credit").mkdir(parents=True)
    (root / "data").mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], root)
    run([*DVC, "init", "-q"], root)
    run([*DVC, "remote", "add", "-d", "team", str(remotes / "sme-credit")], root)
    (root / "data" / "holdout.csv").write_text("amount,default\n100,0\n900,1\n")
    (root / "data" / "loans").mkdir()
    (root / "data" / "loans" / "a.csv").write_text(LOAN_ROWS)
    run([*DVC, "add", "-q", "data/holdout.csv", "data/loans"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "data"], root)
    return root, remotes


def test_a_version_is_pushed_only_once_dvc_push_put_it_in_the_team_remote(project):
    root, remotes = project
    pushed = local_remote_check(remotes)("sme-credit")
    holdout, folder = md5_of(root / "data" / "holdout.csv.dvc"), md5_of(root / "data" / "loans.dvc")
    assert folder.endswith(".dir")
    assert not pushed("data/holdout.csv", holdout) and not pushed("data/loans", folder)
    run([*DVC, "push", "-q"], root)
    assert pushed("data/holdout.csv", holdout) and pushed("data/loans", folder)
    # A folder is pushed only with every file in it.
    file_md5 = hashlib.md5(LOAN_ROWS.encode()).hexdigest()  # DVC 3 hashes a file's bytes
    (remotes / "sme-credit" / "files" / "md5" / file_md5[:2] / file_md5[2:]).unlink()
    assert not pushed("data/loans", folder)
    assert local_remote_check(remotes)("retail-scoring") is None, "no remote folder: nothing to check against"


def test_holdout_is_read_at_the_named_revision_with_its_dvc_version(project):
    root, remotes = project
    run([*DVC, "push", "-q"], root)
    first = md5_of(root / "data" / "holdout.csv.dvc")
    run(["git", "tag", "v1"], root)
    (root / "data" / "holdout.csv").write_text("amount,default\n100,0\n900,1\n50,0\n")
    run([*DVC, "add", "-q", "data/holdout.csv"], root)
    run(["git", "commit", "-qam", "more hold-out rows"], root)
    load = dvc_holdout_loader(ProjectReader(root.parents[1], as_accounts=False))
    spec = {"path": "data/holdout.csv", "target": "default", "repo": str(root), "publisher": "ann"}
    old = load("sme-credit", {**spec, "rev": "v1"})
    new = load("sme-credit", {**spec, "rev": "main"})
    assert (len(old.frame), old.version, old.target) == (2, first, "default")
    assert len(new.frame) == 3 and new.version == md5_of(root / "data" / "holdout.csv.dvc")


def test_a_snapshot_commit_of_uncommitted_work_is_read_as_the_publisher_with_the_runs_data_versions(
    project, monkeypatch
):
    from mlopshub_lab.lineage import lineage_tags  # the workspace side: what a run's start records

    root, _ = project
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(name, ENV[name])
    (root / "data" / "holdout.csv").write_text("amount,default\n100,0\n900,1\n50,0\n")
    run([*DVC, "add", "-q", "data/holdout.csv"], root)  # a new data version, not committed
    (root / "train.py").write_text("print('not committed')\n")
    tags = lineage_tags(root, None, {})
    assert tags["mlopshub.git.snapshot"] == "true"
    commit, recorded = tags["mlopshub.git.commit"], {"data/holdout.csv", "data/loans"}
    reader = ProjectReader(root.parents[1], as_accounts=False)
    project_of_run = reader.resolve("ann", tags["mlopshub.project"], "sme-credit")

    versions = reader.versions_at(project_of_run, commit, sorted(recorded))
    assert versions == {path: tags[f"mlopshub.data.{path}"] for path in recorded}
    assert (
        versions["data/holdout.csv"] != run(["git", "show", "HEAD:data/holdout.csv.dvc"], root).split("md5: ")[1][:32]
    )
    held_out = reader.read(project_of_run, "data/holdout.csv", commit)
    assert len(held_out.frame()) == 3 and held_out.version == versions["data/holdout.csv"]
    with pytest.raises(OSError, match="RevError: unknown Git revision '5{40}'"):
        reader.versions_at(project_of_run, "5" * 40, sorted(recorded))
    with pytest.raises(ValueError, match="not a full git commit hash"):
        reader.versions_at(project_of_run, "--upload-pack=x", [])


def test_holdout_without_a_project_names_the_catalog_key(project):
    load = dvc_holdout_loader(ProjectReader(project[0].parents[1], as_accounts=False))
    with pytest.raises(ValueError, match=r"teams\.sme-credit\.release\.holdout\.repo"):
        load("sme-credit", {"path": "data/holdout.csv", "target": "default", "rev": "main", "publisher": "ann"})


def test_holdout_of_another_users_project_is_refused(project):
    root, _ = project
    other = root.parents[1] / "bob" / "project"
    other.mkdir(parents=True)
    load = dvc_holdout_loader(ProjectReader(root.parents[1], as_accounts=False))
    spec = {"path": "data/holdout.csv", "target": "default", "rev": "main", "publisher": "ann"}
    with pytest.raises(ProjectRefused, match="not in the home of ann"):
        load("sme-credit", {**spec, "repo": str(other)})
    (root / "link").symlink_to(other)
    with pytest.raises(ProjectRefused, match="not in the home of ann"):
        load("sme-credit", {**spec, "repo": str(root / "link")})


def test_a_member_symlink_in_the_team_remote_is_not_followed(project, tmp_path):
    root, remotes = project
    run([*DVC, "push", "-q"], root)
    folder = md5_of(root / "data" / "loans.dvc")
    listing = remotes / "sme-credit" / "files" / "md5" / folder[:2] / folder[2:]
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(listing.read_text())
    listing.unlink()
    listing.symlink_to(elsewhere)
    pushed = local_remote_check(remotes)("sme-credit")
    assert not pushed("data/loans", folder), "a symlink is not a pushed listing"
    with pytest.raises(ValueError, match="not a DVC content hash"):
        pushed("data/loans", "../../../../etc/passwd")


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another Unix account needs root (CI runs as root)")
def test_a_cache_symlink_to_a_root_secret_gives_permission_denied_not_the_secret():
    # The attack of issue 10: the DVC cache object of a tracked file replaced by a symlink to a platform secret.
    tmp_path = Path(tempfile.mkdtemp(prefix="mlopshub-reader-", dir="/tmp"))  # pytest's own is private to root
    homes = tmp_path / "homes"
    name = "mlopshub-test-reader"
    root = homes / name / "project"
    (root / "data").mkdir(parents=True)
    secret = tmp_path / "secrets" / "admin-token"
    secret.parent.mkdir(mode=0o700)
    secret.write_text("s3cr3t-admin-token\n")
    secret.chmod(0o600)
    run(["git", "init", "-q", "-b", "main"], root)
    run([*DVC, "init", "-q"], root)
    (root / "data" / "x.csv").write_text("a,b\n1,2\n")
    run([*DVC, "add", "-q", "data/x.csv"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "x"], root)
    digest = md5_of(root / "data" / "x.csv.dvc")
    cached = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    cached.unlink()
    cached.symlink_to(secret)
    (root / "data" / "x.csv").unlink()
    account = ensure_unix_user(unix_name(name), homes / name)
    for path in [homes / name, *(homes / name).rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    tmp_path.chmod(0o711)
    homes.chmod(0o711)
    (homes / name).chmod(0o700)
    reader = ProjectReader(homes, as_accounts=True)
    project = reader.resolve(name, str(root))
    try:
        with pytest.raises(OSError) as refused:
            reader.read(project, "data/x.csv", "main")
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert "s3cr3t" not in str(refused.value)
    assert "Permission denied" in str(refused.value) or "PermissionError" in str(refused.value), refused.value
