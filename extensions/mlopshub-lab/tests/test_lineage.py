"""Lineage tags from a real git repository and a real DVC project."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlopshub_lab.lineage import lineage_tags

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
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True)


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
