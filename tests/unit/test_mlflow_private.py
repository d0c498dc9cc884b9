"""The private MLflow names mlopshub wraps (mlopshub.mlflow_private): each still exists and works as used.

A failure here after an MLflow upgrade means MLflow changed one of them: adapt the wrapper (or switch to the
public API the failure names) before the upgrade ships.
"""

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository
from mlflow.utils.workspace_context import ServerWorkspaceContext, get_request_workspace

from mlopshub import mlflow_private

#: ``mlflow server`` with the start replaced by one that reports what it was handed, in a child process:
#: the CLI sets process-wide environment variables.
SERVER = textwrap.dedent(
    """
    import json, sys
    from mlflow.cli import cli
    from mlopshub import mlflow_private

    def start(*args, **kwargs):
        print(json.dumps({"args": args, "kwargs": kwargs}))
        sys.exit(0)

    mlflow_private.replace_server_start(start)
    cli.main(args=["server", *sys.argv[1:]], prog_name="mlflow server")
    """
)


def test_mlflow_server_hands_its_web_server_command_to_the_replaced_start(tmp_path):
    args = ["--artifacts-only", "--artifacts-destination", str(tmp_path / "artifacts")]
    args += ["--host", "127.0.0.1", "--port", "5999", "--workers", "1", "--uvicorn-opts", "--timeout-keep-alive 75"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    done = subprocess.run(
        [sys.executable, "-c", SERVER, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    handed = json.loads(done.stdout.strip().splitlines()[-1])
    # mlopshub.services.mlflow_server execs the command in place: one positional command, the environment
    # as extra_env, and a --log-config it points at its own bounded-records configuration.
    (command,) = handed["args"]
    assert command[:3] == [sys.executable, "-m", "uvicorn"]
    assert command[command.index("--log-config") + 1].endswith(".yaml")
    assert ["--host", "127.0.0.1", "--port", "5999"] == command[command.index("--host") : command.index("--host") + 4]
    assert "--timeout-keep-alive" in command
    assert str(tmp_path / "artifacts") in handed["kwargs"]["extra_env"].values()  # the CLI's options, as env
    assert handed["kwargs"]["synchronous"] is False


def test_the_server_start_is_still_mlflows_exec_cmd_with_the_arguments_used():
    import mlflow.server
    import mlflow.utils.process

    assert getattr(mlflow.server, mlflow_private.SERVER_START) is mlflow.utils.process._exec_cmd
    parameters = inspect.signature(mlflow.utils.process._exec_cmd).parameters
    assert list(parameters)[0] == "cmd"
    assert parameters["extra_env"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "repository",
    [
        ArtifactRepository,
        LocalArtifactRepository,
        HttpArtifactRepository,
        MlflowArtifactsRepository,
        S3ArtifactRepository,
    ],
)
def test_every_artifact_repository_used_downloads_one_file_with_the_same_signature(repository):
    # The pipeline reads through MLflow's artifact proxy (mlflow-artifacts:, http) locally and S3 on Kubernetes.
    assert list(inspect.signature(repository._download_file).parameters) == ["self", "remote_file_path", "local_path"]


class WorkspaceSeeingRepository(LocalArtifactRepository):
    """MLflow's local repository, noting the request workspace each download sees."""

    seen: list[str | None]

    def _download_file(self, remote_file_path, local_path):
        self.seen.append(get_request_workspace())
        super()._download_file(remote_file_path, local_path)


def repository_with_a_file(tmp_path: Path) -> WorkspaceSeeingRepository:
    store = tmp_path / "store"
    (store / "model").mkdir(parents=True)
    (store / "model" / "MLmodel").write_text("flavors: {}\n")
    repository = WorkspaceSeeingRepository(str(store))
    repository.seen = []
    return repository


def test_download_file_copies_the_file_in_the_callers_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    repository = repository_with_a_file(tmp_path)
    with ServerWorkspaceContext("sme-credit"):
        mlflow_private.download_file(repository, "model/MLmodel", str(tmp_path / "MLmodel"))
    assert (tmp_path / "MLmodel").read_text() == "flavors: {}\n"
    assert repository.seen == ["sme-credit"]


def test_the_public_download_artifacts_still_loses_the_callers_workspace(tmp_path, monkeypatch):
    # Why download_file exists. When this fails, MLflow's download_artifacts keeps the request workspace:
    # use it in mlopshub.services.pipeline.registry and drop mlflow_private.download_file.
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    repository = repository_with_a_file(tmp_path)
    (tmp_path / "copy").mkdir()
    with ServerWorkspaceContext("sme-credit"):
        repository.download_artifacts("model", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "model" / "MLmodel").is_file()
    assert repository.seen == [None]
