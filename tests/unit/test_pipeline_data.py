"""The gates' view of a team's data, with real git and DVC: pushed or not, and the hold-out set at a version."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlopshub.services.pipeline.holdout import dvc_holdout_loader, local_remote_check

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
    """A git + DVC project of team sme-credit with its remote at <remotes>/sme-credit."""
    remotes, root = tmp_path / "remotes", tmp_path / "project"
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
    load = dvc_holdout_loader()
    old = load("sme-credit", {"path": "data/holdout.csv", "target": "default", "rev": "v1", "repo": str(root)})
    new = load("sme-credit", {"path": "data/holdout.csv", "target": "default", "rev": "main", "repo": str(root)})
    assert (len(old.frame), old.version, old.target) == (2, first, "default")
    assert len(new.frame) == 3 and new.version == md5_of(root / "data" / "holdout.csv.dvc")


def test_holdout_without_a_project_names_the_catalog_key(project):
    with pytest.raises(ValueError, match=r"teams\.sme-credit\.release\.holdout\.repo"):
        dvc_holdout_loader()("sme-credit", {"path": "data/holdout.csv", "target": "default", "rev": "main"})
