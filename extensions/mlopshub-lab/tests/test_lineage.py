"""Lineage tags from a real git repository and a real DVC project."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlopshub_lab.lineage import MAX_SNAPSHOT_FILE, SNAPSHOT_REFS, lineage_tags

DVC = [sys.executable, "-m", "dvc"]
ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def run(args, cwd):
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def workspace_identity(monkeypatch, tmp_path_factory):
    """The identity the spawner gives a workspace, and no git configuration of the machine's."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Alice Martin")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "alice@bank.example")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Alice Martin")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "alice@bank.example")


def user_state(project: Path) -> dict[str, str | bytes]:
    """Everything of the user's repository a snapshot must leave as it was."""
    return {
        "head": run(["git", "rev-parse", "HEAD"], project),
        "branches": run(["git", "branch", "-a", "-v"], project),
        "index": (project / ".git" / "index").read_bytes(),
        "status": run(["git", "status", "--porcelain", "--untracked-files=all"], project),
        "reflog": run(["git", "reflog", "--all"], project),
        "stash": run(["git", "stash", "list"], project),
        "train.py": (project / "train.py").read_text(),
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    run(["git", "init", "-q"], tmp_path)
    run([*DVC, "init", "-q"], tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "loans.csv").write_text("amount,default\n100,0\n250,1\n")
    run([*DVC, "add", "-q", "data/loans.csv"], tmp_path)
    (tmp_path / "train.py").write_text("print('train')\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "data v1"], tmp_path)
    return tmp_path


def test_tags_record_commit_clean_tree_data_hash_notebook_and_profile(project):
    env = {"MLOPSHUB_PROFILE": "python-cpu", "MLOPSHUB_IMAGE": "python", "MLOPSHUB_TEAMS": "sme-credit"}
    tags = lineage_tags(project, "credit/train.ipynb", env)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    md5 = next(
        line.split()[-1] for line in (project / "data" / "loans.csv.dvc").read_text().splitlines() if "md5" in line
    )
    assert tags["mlopshub.git.commit"] == tags["mlflow.source.git.commit"] == commit
    assert tags["mlopshub.git.dirty"] == "false"
    assert tags["mlopshub.data.data/loans.csv"] == md5
    assert tags["mlopshub.data.count"] == "1"
    assert tags["mlopshub.notebook"] == "credit/train.ipynb"
    assert tags["mlopshub.project"] == str(project.resolve())
    assert (tags["mlopshub.profile"], tags["mlopshub.image"], tags["mlopshub.teams"]) == (
        "python-cpu",
        "python",
        "sme-credit",
    )


def test_changed_tracked_code_marks_the_tree_dirty(project):
    (project / "train.py").write_text("print('changed')\n")
    assert lineage_tags(project, None, {})["mlopshub.git.dirty"] == "true"


def test_a_dirty_tree_is_recorded_as_a_snapshot_commit_with_exactly_the_code(project):
    head = run(["git", "rev-parse", "HEAD"], project).strip()
    (project / ".gitignore").write_text("*.log\n")
    run(["git", "add", ".gitignore"], project)
    run(["git", "commit", "-qm", "ignore logs"], project)
    head = run(["git", "rev-parse", "HEAD"], project).strip()
    (project / "train.py").write_text("print('changed, not committed')\n")
    (project / "features.py").write_text("COLUMNS = ['amount']\n")  # untracked: part of the code
    (project / "notes").mkdir()
    (project / "notes" / "idea.md").write_text("try depth 4\n")
    (project / "train.log").write_text("ignored\n")
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "train-checkpoint.ipynb").write_text("{}")
    (project / ".local" / "share" / "jupyter" / "runtime").mkdir(parents=True)
    (project / ".local" / "share" / "jupyter" / "runtime" / "kernel-1.json").write_text('{"key": "secret"}')
    (project / "notes" / ".gitignore").write_text("*.tmp\n")  # a hidden file is code
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "features.cpython-311.pyc").write_bytes(b"\0")
    (project / "model.pkl").write_bytes(b"\0" * (MAX_SNAPSHOT_FILE + 1))
    # A new data version, re-added but not committed: its .dvc file is code, the data stays with DVC.
    (project / "data" / "loans.csv").write_text("amount,default\n100,0\n250,1\n900,1\n")
    run([*DVC, "add", "-q", "data/loans.csv"], project)
    # The data would be listed as untracked without DVC's own ignore file: it stays out all the same.
    (project / "data" / ".gitignore").unlink()
    (project / "staged.py").write_text("x = 1\n")
    run(["git", "add", "staged.py"], project)
    before = user_state(project)

    tags = lineage_tags(project, None, {})

    snapshot = tags["mlopshub.git.commit"]
    assert snapshot != head and tags["mlflow.source.git.commit"] == snapshot
    assert tags["mlopshub.git.snapshot"] == "true" and tags["mlopshub.git.dirty"] == "true"
    assert tags["mlopshub.git.head"] == head
    assert tags["mlopshub.git.branch"] == run(["git", "symbolic-ref", "--short", "HEAD"], project).strip()
    assert tags["mlopshub.git.snapshot.skipped"] == f"1 untracked file(s) over {MAX_SNAPSHOT_FILE} bytes: model.pkl"
    files = set(run(["git", "ls-tree", "-r", "--name-only", snapshot], project).split())
    assert files == {
        ".dvc/.gitignore",
        ".dvc/config",
        ".dvcignore",
        ".gitignore",
        "data/loans.csv.dvc",
        "features.py",
        "notes/.gitignore",
        "notes/idea.md",
        "staged.py",
        "train.py",
    }
    assert run(["git", "show", f"{snapshot}:train.py"], project) == "print('changed, not committed')\n"
    assert (
        run(["git", "show", f"{snapshot}:data/loans.csv.dvc"], project)
        == (project / "data" / "loans.csv.dvc").read_text()
    )
    assert run(["git", "rev-parse", f"{snapshot}^"], project).strip() == head
    assert run(["git", "log", "-1", "--format=%an <%ae>", snapshot], project).strip() == (
        "Alice Martin <alice@bank.example>"
    )
    assert run(["git", "for-each-ref", "--format=%(refname)", SNAPSHOT_REFS], project).split() == [
        SNAPSHOT_REFS + snapshot
    ]
    # The user's branch, index, files, status and reflog are as they were; the big file was never hashed.
    assert user_state(project) == before
    big = run(["git", "hash-object", "model.pkl"], project).strip()
    assert subprocess.run(["git", "cat-file", "-e", big], cwd=project, check=False).returncode != 0


def test_runs_started_one_after_another_on_the_same_changes_each_record_a_snapshot(project):
    (project / "train.py").write_text("print('changed')\n")
    first, second = lineage_tags(project, None, {}), lineage_tags(project, None, {})
    assert first["mlopshub.git.snapshot"] == second["mlopshub.git.snapshot"] == "true"
    for tags in (first, second):
        assert (
            run(["git", "rev-parse", SNAPSHOT_REFS + tags["mlopshub.git.commit"]], project).strip()
            == (tags["mlopshub.git.commit"])
        )


def test_a_clean_tree_records_head_and_makes_no_snapshot(project):
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "train-checkpoint.ipynb").write_text("{}")
    tags = lineage_tags(project, None, {})
    assert tags["mlopshub.git.commit"] == run(["git", "rev-parse", "HEAD"], project).strip()
    assert tags["mlopshub.git.dirty"] == "false"
    assert "mlopshub.git.snapshot" not in tags and "mlopshub.git.head" not in tags
    assert run(["git", "for-each-ref", SNAPSHOT_REFS], project) == ""


def test_a_repository_without_a_commit_records_no_commit(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / "train.py").write_text("print('train')\n")
    tags = lineage_tags(tmp_path, None, {})
    assert not any(key.startswith("mlopshub.git.") for key in tags)
    assert run(["git", "for-each-ref"], tmp_path) == ""


def test_a_run_in_a_subfolder_snapshots_the_whole_repository(project):
    (project / "notebooks").mkdir()
    (project / "notebooks" / "train.ipynb").write_text("{}")
    (project / "train.py").write_text("print('changed')\n")
    tags = lineage_tags(project / "notebooks", None, {})
    files = run(["git", "ls-tree", "-r", "--name-only", tags["mlopshub.git.commit"]], project).split()
    assert {"notebooks/train.ipynb", "train.py"} <= set(files)
    assert run(["git", "show", f"{tags['mlopshub.git.commit']}:train.py"], project) == "print('changed')\n"


def test_new_data_version_changes_the_recorded_hash(project):
    before = lineage_tags(project, None, {})["mlopshub.data.data/loans.csv"]
    (project / "data" / "loans.csv").write_text("amount,default\n100,0\n250,1\n900,1\n")
    run([*DVC, "add", "-q", "data/loans.csv"], project)
    assert lineage_tags(project, None, {})["mlopshub.data.data/loans.csv"] != before


def test_outside_any_project_only_workspace_tags(tmp_path):
    assert lineage_tags(tmp_path, None, {"MLOPSHUB_PROFILE": "r-cpu"}) == {"mlopshub.profile": "r-cpu"}


def test_notebook_path_is_relative_to_the_home(tmp_path):
    tags = lineage_tags(tmp_path, "/home/jovyan/credit/train.ipynb", {"HOME": "/home/jovyan"})
    assert tags["mlopshub.notebook"] == "credit/train.ipynb"
