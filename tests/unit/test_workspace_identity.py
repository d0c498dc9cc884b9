"""A workspace's git identity is the hub user's: for commits, and for tools that read git's configuration."""

import os
import subprocess

import pytest

from mlopshub.catalog import SpawnSettings
from mlopshub.spawners import LocalWorkspaceSpawner, email_claim, git_identity, remember_email, workspace_environment


def git(args, cwd, env):
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize(
    ("email", "expected"),
    [(None, "alice@users.mlopshub"), ("alice.martin@bank.example", "alice.martin@bank.example")],
)
def test_git_in_a_workspace_commits_as_the_hub_user_and_the_git_panel_finds_the_identity(tmp_path, email, expected):
    home = tmp_path / "home"
    home.mkdir()
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    env = {**base, **git_identity("alice", email)}
    git(["init", "-q"], tmp_path, env)
    (tmp_path / "train.py").write_text("print('train')\n")
    git(["add", "train.py"], tmp_path, env)
    git(["commit", "-qm", "train"], tmp_path, env)
    assert git(["log", "-1", "--format=%an <%ae> / %cn <%ce>"], tmp_path, env) == (
        f"alice <{expected}> / alice <{expected}>"
    )
    # What JupyterLab's Git panel reads before a commit; without these it asks "Who is committing?".
    listed = git(["config", "--list"], tmp_path, env).splitlines()
    assert {"user.name=alice", f"user.email={expected}"} <= set(listed)
    assert "user.name" not in git(["config", "--list"], tmp_path, base)


def test_the_oidc_email_claim_is_remembered_for_the_workspace():
    spawner = LocalWorkspaceSpawner()
    assert spawner.auth_state_hook is remember_email
    spawner.auth_state_hook(spawner, {"oauth_user": {"email": "alice.martin@bank.example", "groups": []}})
    assert spawner.git_email == "alice.martin@bank.example"
    spawner.auth_state_hook(spawner, None)  # the local authenticator keeps no auth state
    assert spawner.git_email is None


@pytest.mark.parametrize("claim", ["", "not an email", "a@b\nGIT_DIR=/x", ["alice@bank.example"], None])
def test_an_email_claim_that_is_not_one_address_is_not_used(claim):
    assert email_claim({"oauth_user": {"email": claim}}) is None


def test_workspace_environment_carries_the_identity():
    settings = SpawnSettings(
        profile="python-cpu", display_name="Python", image="python", kernels=("python3",), default_kernel="python3",
        cpu_guarantee=None, cpu_limit=None, mem_guarantee=None, mem_limit=None, gpu=0, node_selector={},
        tolerations=(), environment={}, choices={},
    )  # fmt: skip
    env = workspace_environment(settings, ["sme-credit"], "http://h/services/mlflow", "t", "alice", "a@bank.example")
    assert env["GIT_AUTHOR_EMAIL"] == env["GIT_CONFIG_VALUE_1"] == "a@bank.example"
    assert env["GIT_COMMITTER_NAME"] == env["GIT_CONFIG_VALUE_0"] == "alice"
