"""Paths stay inside the server root; commands run as argument lists, off the event loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlopshub_lab import runner
from mlopshub_lab.errors import BadRequest
from mlopshub_lab.paths import relative, resolve


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / "credit" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return Path(os.path.realpath(home))


@pytest.mark.parametrize("value", ["", ".", "credit", "credit/data/", "credit/../credit/data", "new/file.csv"])
def test_paths_inside_the_root_resolve_under_it(home, value):
    assert resolve(home, value) == Path(os.path.realpath(home / value))


def test_an_absolute_path_inside_the_root_is_accepted(home):
    assert resolve(home, str(home / "credit")) == home / "credit"


@pytest.mark.parametrize("value", ["..", "../elsewhere", "credit/../../elsewhere", "/etc", "/etc/passwd"])
def test_paths_outside_the_root_are_refused(home, value):
    with pytest.raises(BadRequest) as refused:
        resolve(home, value)
    assert refused.value.message.startswith(f"path '{value}' is outside the workspace")
    assert refused.value.status_code == 400


def test_a_symlink_out_of_the_root_is_refused(home):
    (home / "credit" / "escape").symlink_to(home.parent / "elsewhere")
    with pytest.raises(BadRequest):
        resolve(home, "credit/escape/secret.csv")


@pytest.mark.parametrize("value", ["a" * 256, "credit/" + "é" * 128 + "/x.csv", "credit/" * 600])
def test_a_name_or_path_longer_than_the_file_system_takes_is_a_400_naming_it(home, value):
    with pytest.raises(BadRequest) as refused:
        resolve(home, value)
    assert refused.value.status_code == 400
    assert value[:40] in refused.value.message and "at most" in refused.value.message


def test_a_path_the_file_system_cannot_encode_is_a_400(home):
    with pytest.raises(BadRequest) as refused:
        resolve(home, "credit/\ud800.csv")
    assert refused.value.status_code == 400


def test_relative_paths_use_slashes_and_the_root_is_empty(home):
    assert relative(home, home) == ""
    assert relative(home, home / "credit" / "data") == "credit/data"


async def test_execute_answers_code_stdout_stderr(tmp_path):
    code, stdout, stderr = await runner.execute(["git", "--version"], tmp_path)
    assert (code, stderr) == (0, "") and stdout.startswith("git version")


async def test_execute_passes_arguments_literally_never_through_a_shell(tmp_path):
    result = await runner.execute(["echo", "a; touch pwned", "$(id)"], tmp_path)
    assert result.stdout == "a; touch pwned $(id)\n"
    assert not (tmp_path / "pwned").exists()


async def test_execute_sets_dvc_analytics_off_and_adds_the_callers_env(tmp_path):
    result = await runner.execute(["sh", "-c", 'echo "$DVC_NO_ANALYTICS $EXTRA"'], tmp_path, env={"EXTRA": "yes"})
    assert result.stdout == "1 yes\n"


async def test_execute_reports_a_missing_command_and_a_timeout_like_a_shell(tmp_path):
    assert (await runner.execute(["no-such-tool-here"], tmp_path)).code == 127
    slow = await runner.execute(["sleep", "5"], tmp_path, timeout=0.2)
    assert slow.code == 124 and "was stopped" in slow.message
