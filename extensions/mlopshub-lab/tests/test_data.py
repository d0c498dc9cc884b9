"""Data versioning through the REST API, against real git and DVC projects in the server root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labtesting import DVC, sh
from mlopshub_lab import data

LOANS_V1 = "amount,default\n100,0\n250,1\n"
LOANS_V2 = "amount,default\n100,0\n250,1\n900,1\n"


def git_log(folder: Path) -> list[str]:
    return sh(["git", "log", "--format=%s"], folder).splitlines()


@pytest.fixture
def project(root) -> Path:
    """A DVC project "credit" (git and DVC, no remote) holding data/loans.csv, not yet tracked."""
    folder = root / "credit"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "loans.csv").write_text(LOANS_V1)
    sh(["git", "init", "-q"], folder)
    sh([*DVC, "init", "-q"], folder)
    sh(["git", "commit", "-qm", "Enable data versioning"], folder)
    return folder


async def test_a_folder_in_no_project_has_no_project(root, api):
    (root / "notes").mkdir()
    status, body, _ = await api("GET", "data/project", params={"path": "notes"})
    assert (status, body) == (200, {"path": "notes", "project": None})


async def test_a_folder_that_does_not_exist_is_404(root, api):
    status, body, _ = await api("GET", "data/project", params={"path": "nowhere"})
    assert (status, body) == (404, {"message": "folder 'nowhere' does not exist"})


async def test_enable_creates_git_and_dvc_commits_them_and_says_there_is_no_remote(root, api):
    project = root / "credit"
    (project / "data").mkdir(parents=True)
    status, body, _ = await api("POST", "data/enable", body={"path": "credit"})
    assert status == 200, body
    assert "MLOPSHUB_DVC_REMOTE is not set" in body["message"]
    assert (project / ".git").is_dir() and (project / ".dvc").is_dir()
    assert git_log(project) == ["Enable data versioning"]
    assert sh(["git", "status", "--porcelain", "--", ".dvc", ".dvcignore"], project) == ""
    # On main, the branch the release pipeline reads the hold-out set from; JupyterLab's autosaves ignored.
    assert sh(["git", "branch", "--show-current"], project).strip() == "main"
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "train-checkpoint.ipynb").write_text("{}")
    assert sh(["git", "status", "--porcelain"], project) == "", "nothing left untracked or changed"
    status, body, _ = await api("GET", "data/project", params={"path": "credit/data"})
    assert body == {"path": "credit/data", "project": {"root": "credit", "dvc": True, "git": True, "remote": None}}
    status, body, _ = await api("POST", "data/enable", body={"path": "credit/data"})
    assert status == 200 and "already enabled in 'credit'" in body["message"]


async def test_enable_sets_the_team_remote_as_default(root, api, monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPSHUB_DVC_REMOTE", str(tmp_path / "team-remote"))
    (root / "fraud").mkdir()
    status, body, _ = await api("POST", "data/enable", body={"path": "fraud"})
    assert status == 200, body
    assert body["project"] == {
        "root": "fraud",
        "dvc": True,
        "git": True,
        "remote": {"name": "team", "url": str(tmp_path / "team-remote")},
    }
    assert "team remote 'team'" in body["message"]


async def test_enable_in_the_home_itself_makes_the_root_the_project(root, api):
    status, body, _ = await api("POST", "data/enable", body={"path": ""})
    assert status == 200 and body["project"]["root"] == ""


async def test_track_version_change_history_and_restore(root, api, project, commands):
    # Track: dvc add, then the .dvc file and .gitignore are staged for the next version.
    status, body, _ = await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    assert status == 200, body
    md5_v1 = body["dataset"]["hash"]
    assert body["dataset"] == {
        "path": "credit/data/loans.csv",
        "size": len(LOANS_V1),
        "hash": md5_v1,
        "short_hash": md5_v1[:8],
        "status": [],
    }
    assert [*DVC, "add", "--", "data/loans.csv"] in commands
    assert ["git", "add", "--", "data/.gitignore", "data/loans.csv.dvc"] in commands

    # First version: the staged .dvc file is committed with the message, by the hub user.
    status, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "loans as received"})
    assert status == 200, body
    v1 = body["commit"]
    assert body["datasets"] == ["credit/data/loans.csv"]
    assert git_log(project)[0] == "loans as received"

    # Change the data: the list shows it as changed.
    (project / "data" / "loans.csv").write_text(LOANS_V2)
    status, body, _ = await api("GET", "data/datasets", params={"path": "credit/data"})
    assert status == 200
    assert body["total"] == 1 and body["datasets"][0]["status"] == ["changed"]

    # Second version: dvc add of the changed dataset, then a commit of exactly its files.
    commands.clear()
    status, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "v2: more loans"})
    assert status == 200, body
    v2 = body["commit"]
    assert commands[0] == [*DVC, "add", "--", "data/loans.csv"]
    assert ["git", "add", "-A", "--", "data/.gitignore", "data/loans.csv.dvc"] in commands
    assert ["git", "commit", "-q", "-m", "v2: more loans", "--", "data/.gitignore", "data/loans.csv.dvc"] in commands
    status, body, _ = await api("GET", "data/datasets", params={"path": "credit"})
    md5_v2 = body["datasets"][0]["hash"]
    assert body["datasets"][0]["status"] == [] and md5_v2 != md5_v1

    # History: both versions, newest first, each with the data hash it recorded.
    status, body, _ = await api("GET", "data/history", params={"path": "credit/data/loans.csv"})
    assert status == 200
    versions = body["versions"]
    assert [(v["commit"], v["message"], v["hash"]) for v in versions] == [
        (v2, "v2: more loans", md5_v2),
        (v1, "loans as received", md5_v1),
    ]
    assert versions[0]["author"] == "alice" and versions[0]["short"] == v2[: len(versions[0]["short"])]
    assert versions[0]["date"][:2] == "20" and "T" in versions[0]["date"]

    # Restore v1: git brings back the .dvc file, DVC the data.
    commands.clear()
    status, body, _ = await api("POST", "data/restore", body={"path": "credit/data/loans.csv", "commit": v1})
    assert status == 200, body
    assert (project / "data" / "loans.csv").read_text() == LOANS_V1
    assert body["dataset"]["hash"] == md5_v1 and body["dataset"]["status"] == []
    assert ["git", "checkout", v1, "--", "data/loans.csv.dvc"] in commands
    assert [*DVC, "checkout", "--", "data/loans.csv.dvc"] in commands


async def test_version_refuses_an_empty_message(api, project):
    status, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "  "})
    assert (status, body) == (400, {"message": "a version needs a message: say what changed in the data"})


async def test_version_with_nothing_changed_says_so(api, project):
    status, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "again"})
    assert status == 400 and body["message"].startswith("nothing to version under 'credit'")


async def test_restore_refuses_to_lose_unsaved_changes(api, project):
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    _, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "v1"})
    (project / "data" / "loans.csv").write_text("unsaved work\n")
    status, answer, _ = await api(
        "POST", "data/restore", body={"path": "credit/data/loans.csv", "commit": body["commit"]}
    )
    assert status == 400 and "unsaved changes" in answer["message"]
    assert (project / "data" / "loans.csv").read_text() == "unsaved work\n"


async def test_restore_discarding_changes_keeps_them_in_the_cache(root, api, project):
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    _, body, _ = await api("POST", "data/version", body={"path": "credit", "message": "v1"})
    v1 = (project / "data" / "loans.csv").read_text()
    (project / "data" / "loans.csv").write_text("unsaved work\n")
    status, answer, _ = await api(
        "POST",
        "data/restore",
        body={"path": "credit/data/loans.csv", "commit": body["commit"], "discard_changes": True},
    )
    assert status == 200, answer
    assert (project / "data" / "loans.csv").read_text() == v1
    kept = answer["dataset"]["discarded_changes_hash"]
    cached = next(project.glob(f".dvc/cache/files/md5/{kept[:2]}/{kept[2:]}"))
    assert cached.read_text() == "unsaved work\n"


async def test_restore_of_an_unknown_version_is_404_and_a_bad_commit_400(api, project):
    status, body, _ = await api("POST", "data/restore", body={"path": "credit/data/loans.csv", "commit": "deadbeef"})
    assert status == 404 and "has no version at commit 'deadbeef'" in body["message"]
    status, body, _ = await api("POST", "data/restore", body={"path": "credit/data/loans.csv", "commit": "--force"})
    assert status == 400


async def test_history_of_an_untracked_file_is_404(api, project):
    status, body, _ = await api("GET", "data/history", params={"path": "credit/data/loans.csv"})
    assert status == 404 and "not a tracked dataset" in body["message"]


async def test_history_of_the_project_folder_itself_is_404_not_a_git_failure(api, project):
    status, body, _ = await api("GET", "data/history", params={"path": "credit"})
    assert status == 404 and "'credit' is not a tracked dataset" in body["message"], (status, body)


@pytest.mark.parametrize(
    ("method", "endpoint", "key"),
    [("GET", "data/project", None), ("GET", "data/datasets", None), ("POST", "data/track", "path")],
)
@pytest.mark.parametrize("path", ["../", "../outside.csv", "/etc", "/etc/passwd", "credit/../../x"])
async def test_paths_outside_the_workspace_are_refused(root, api, method, endpoint, key, path):
    if method == "GET":
        status, body, _ = await api(method, endpoint, params={"path": path})
    else:
        status, body, _ = await api(method, endpoint, body={key: path})
    assert (status, body) == (
        400,
        {"message": f"path '{path}' is outside the workspace; use a path inside your home folder"},
    )


async def test_a_second_operation_in_a_project_while_one_runs_is_409(root, api, project):
    with data.OPERATIONS.hold(project, "push", root):
        for endpoint, body in (
            ("data/version", {"path": "credit", "message": "m"}),
            ("data/track", {"path": "credit/data/loans.csv"}),
            ("data/pull", {"path": "credit/data"}),
        ):
            status, answer, _ = await api("POST", endpoint, body=body)
            assert status == 409, endpoint
            assert answer["message"].startswith("'push' is already running in 'credit'")
    status, _, _ = await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    assert status == 200


@pytest.mark.parametrize(
    ("remote", "dvc_says"),
    [
        ("{tmp}/a-file/remote", "Not a directory"),  # a local path DVC can't create
        ("s3://mlopshub-no-such-bucket/data", "Unable to locate credentials"),
    ],
)
async def test_push_to_an_unreachable_remote_is_500_with_dvcs_message_and_loses_nothing(
    api, project, tmp_path, monkeypatch, remote, dvc_says
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    (tmp_path / "a-file").write_text("not a folder")
    sh([*DVC, "remote", "add", "-d", "team", remote.format(tmp=tmp_path)], project)
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    status, body, _ = await api("POST", "data/push", body={"path": "credit"})
    assert status == 500
    assert body["message"].startswith("`dvc push` failed in 'credit': ERROR:") and dvc_says in body["message"]
    assert "Having any troubles" not in body["message"]
    assert (project / "data" / "loans.csv").read_text() == LOANS_V1
    assert (project / "data" / "loans.csv.dvc").is_file()
    status, listed, _ = await api("GET", "data/datasets", params={"path": "credit"})
    assert status == 200 and listed["datasets"][0]["path"] == "credit/data/loans.csv"


async def test_a_listing_says_why_it_could_not_ask_the_remote_and_still_shows_the_datasets(
    api, project, tmp_path, monkeypatch
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    sh([*DVC, "remote", "add", "-d", "team", "s3://mlopshub-no-such-bucket/data"], project)
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    status, listed, _ = await api("GET", "data/datasets", params={"path": "credit"})
    assert status == 200
    assert listed["datasets"][0]["status"] == [] and listed["remote_checked"] is False
    assert "Unable to locate credentials" in listed["remote_error"]
    status, body, _ = await api("GET", "data/datasets", params={"path": "credit", "remote": "1"})
    assert status == 500 and body["message"].startswith("cannot ask the remote of 'credit': ")


async def test_not_pushed_shows_after_track_and_after_save_version_until_a_push(api, project, tmp_path):
    sh([*DVC, "remote", "add", "-d", "team", str(tmp_path / "remote")], project)
    (project / "data" / "parts").mkdir()
    (project / "data" / "parts" / "a.csv").write_text(LOANS_V2)

    async def statuses() -> dict[str, list[str]]:
        status, listed, _ = await api("GET", "data/datasets", params={"path": "credit"})
        assert status == 200 and listed["remote_checked"] is True and listed["remote_error"] is None
        return {dataset["path"]: dataset["status"] for dataset in listed["datasets"]}

    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    await api("POST", "data/track", body={"path": "credit/data/parts"})
    not_pushed = {"credit/data/loans.csv": ["not_pushed"], "credit/data/parts": ["not_pushed"]}
    assert await statuses() == not_pushed
    await api("POST", "data/version", body={"path": "credit", "message": "v1"})
    assert await statuses() == not_pushed

    status, body, _ = await api("POST", "data/push", body={"path": "credit"})
    assert status == 200 and "3 files pushed" in body["output"]
    assert await statuses() == {"credit/data/loans.csv": [], "credit/data/parts": []}
    _, unchecked, _ = await api("GET", "data/datasets", params={"path": "credit", "remote": "0"})
    assert unchecked["remote_checked"] is False and unchecked["remote_error"] is None

    # A file of a pushed folder lost from the remote: the folder is not all there.
    listing = (project / "data" / "parts.dvc").read_text().split("md5: ")[1].split(".dir")[0]
    entries = (project / ".dvc" / "cache" / "files" / "md5" / listing[:2] / f"{listing[2:]}.dir").read_text()
    lost = entries.split('"md5": "')[1].split('"')[0]
    (tmp_path / "remote" / "files" / "md5" / lost[:2] / lost[2:]).unlink()
    assert await statuses() == {"credit/data/loans.csv": [], "credit/data/parts": ["not_pushed"]}


async def test_push_then_pull_brings_data_back(api, project, tmp_path):
    sh([*DVC, "remote", "add", "-d", "team", str(tmp_path / "remote")], project)
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    await api("POST", "data/version", body={"path": "credit", "message": "v1"})
    status, body, _ = await api("POST", "data/push", body={"path": "credit"})
    assert status == 200 and "1 file pushed" in body["output"]

    # Lose the data and the local cache; the .dvc file says it is missing; pull brings it back.
    (project / "data" / "loans.csv").unlink()
    sh(["rm", "-rf", ".dvc/cache"], project)
    _, listed, _ = await api("GET", "data/datasets", params={"path": "credit"})
    assert listed["datasets"][0]["status"] == ["missing"]
    status, body, _ = await api("POST", "data/pull", body={"path": "credit"})
    assert status == 200, body
    assert (project / "data" / "loans.csv").read_text() == LOANS_V1


async def test_datasets_are_paged_and_only_the_page_is_read(root, api, monkeypatch):
    folder = root / "many"
    folder.mkdir()
    sh(["git", "init", "-q"], folder)
    sh([*DVC, "init", "-q"], folder)
    for index in range(5):
        sub = folder / f"set{index}"
        sub.mkdir()
        (sub / f"part{index}.csv.dvc").write_text(
            f"outs:\n- md5: {'a' * 31}{index}\n  size: {index * 10}\n  hash: md5\n  path: part{index}.csv\n"
        )
    (folder / "node_modules").mkdir()
    (folder / "node_modules" / "ignored.dvc").write_text("outs: []\n")
    read: list[Path] = []
    real = data.read_outs
    monkeypatch.setattr(data, "read_outs", lambda path: read.append(path) or real(path))

    status, body, _ = await api("GET", "data/datasets", params={"path": "many", "offset": "2", "limit": "2"})
    assert status == 200
    assert (body["total"], body["offset"], body["limit"]) == (5, 2, 2)
    assert body["datasets"] == [
        {
            "path": f"many/set{i}/part{i}.csv",
            "size": i * 10,
            "hash": f"{'a' * 31}{i}",
            "short_hash": "a" * 8,
            "status": ["missing"],
        }
        for i in (2, 3)
    ]
    assert sorted(p.name for p in read) == ["part2.csv.dvc", "part3.csv.dvc"]
    _, last, _ = await api("GET", "data/datasets", params={"path": "many", "offset": "4"})
    assert [d["path"] for d in last["datasets"]] == ["many/set4/part4.csv"] and last["limit"] == 100


async def test_datasets_of_a_folder_in_no_project_is_an_empty_page(root, api):
    status, body, _ = await api("GET", "data/datasets", params={"path": ""})
    assert (status, body) == (
        200,
        {"datasets": [], "total": 0, "offset": 0, "limit": 100, "remote_checked": False, "remote_error": None},
    )


def test_dvc_files_skips_hidden_tracked_and_nested_project_folders(tmp_path):
    for rel in ["a.csv.dvc", "raw.dvc", "raw/inner.dvc", ".venv/x.dvc", "sub/b.dvc", "nested/c.dvc"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("outs: []\n")
    (tmp_path / "nested" / ".dvc").mkdir()
    assert data.dvc_files(tmp_path) == ["a.csv.dvc", "raw.dvc", "sub/b.dvc"]


@pytest.mark.parametrize("path", ["credit", "credit/.dvc/config", "credit/data/loans.csv.dvc"])
async def test_what_is_not_data_cannot_be_tracked(api, project, path):
    sh([*DVC, "add", "-q", "data/loans.csv"], project)
    status, body, _ = await api("POST", "data/track", body={"path": path})
    assert status == 400 and "can't be tracked as a dataset" in body["message"]


async def test_track_outside_a_dvc_project_says_to_enable_first(root, api):
    (root / "plain").mkdir()
    (root / "plain" / "x.csv").write_text("x\n")
    status, body, _ = await api("POST", "data/track", body={"path": "plain/x.csv"})
    assert (status, body["message"]) == (
        400,
        "'plain/x.csv' is not in a data-versioned project; enable data versioning for its folder first",
    )


def test_a_symlinked_dataset_folder_is_not_followed(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.dvc").write_text("outs: []\n")
    (tmp_path / "proj").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "proj" / "link")
    assert data.dvc_files(tmp_path / "proj") == []


async def test_a_restore_dvc_cannot_complete_puts_the_dvc_file_back(api, project):
    await api("POST", "data/track", body={"path": "credit/data/loans.csv"})
    _, v1, _ = await api("POST", "data/version", body={"path": "credit", "message": "v1"})
    (project / "data" / "loans.csv").write_text(LOANS_V2)
    await api("POST", "data/version", body={"path": "credit", "message": "v2"})
    dvcfile_v2 = (project / "data" / "loans.csv.dvc").read_text()
    sh(["rm", "-rf", ".dvc/cache"], project)  # v1's data is nowhere now

    status, body, _ = await api("POST", "data/restore", body={"path": "credit/data/loans.csv", "commit": v1["commit"]})
    assert status == 500
    assert body["message"].startswith("`dvc checkout` could not restore 'credit/data/loans.csv' (nothing was changed)")
    assert (project / "data" / "loans.csv").read_text() == LOANS_V2
    assert (project / "data" / "loans.csv.dvc").read_text() == dvcfile_v2
    assert sh(["git", "status", "--porcelain"], project) == ""
