"""A real Jupyter server with the extension, real git and DVC projects in its root, a real MLflow server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from mlopshub_lab import runner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtesting import DVC, TEST_GIT_ENV, free_port, sh  # noqa: E402,F401

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    """Only this extension; the token is required (pytest-jupyter sets one and jp_fetch sends it)."""
    return {"ServerApp": {"jpserver_extensions": {"mlopshub_lab": True}}}


@pytest.fixture(autouse=True)
def workspace_environ(monkeypatch):
    """A workspace's environment without the machine's git identity or MLflow settings."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")  # HOME is a fresh folder (jp_environ), so no global config either
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_WORKSPACE",
        "MLOPSHUB_TEAMS",
        "MLOPSHUB_DVC_REMOTE",
        *TEST_GIT_ENV,
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def root(jp_root_dir, jp_serverapp) -> Path:
    """The server root (the user's home) as a real path, with the server running on it."""
    return Path(os.path.realpath(jp_root_dir))


@pytest.fixture
def api(jp_fetch):
    """Call ``/mlopshub-lab/<endpoint>`` and answer ``(status, JSON body)``, errors included."""

    async def call(method: str, endpoint: str, body: dict[str, Any] | None = None, params: Any = None, **kwargs):
        options: dict[str, Any] = {"method": method, "raise_error": False, **kwargs}
        if method == "POST":
            options["body"] = json.dumps(body or {})
        response = await jp_fetch("mlopshub-lab", *endpoint.split("/"), params=params, **options)
        text = response.body.decode() if response.body else ""
        return response.code, (json.loads(text) if text and response.code != 302 else text), response

    return call


@pytest.fixture
def commands(monkeypatch) -> list[list[str]]:
    """Every argument list the extension runs, in order; the commands still run for real."""
    recorded: list[list[str]] = []
    real = runner.execute

    async def spy(argv, cwd, env=None, timeout=runner.DEFAULT_TIMEOUT, input=None):
        recorded.append([str(arg) for arg in argv])
        return await real(argv, cwd, env=env, timeout=timeout, input=input)

    monkeypatch.setattr(runner, "execute", spy)
    return recorded


# --- MLflow ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server for the whole session, answering its URL.

    As the platform runs it (``mlopshub.configure.mlflow_process``): workspaces on, artifacts served by the
    server (``mlflow-artifacts:``); SQLite, no auth. Calls that name no workspace go to MLflow's default one.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_WORKSPACE", "MLFLOW_TRACKING_TOKEN"):
        env.pop(name, None)
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/m.db",
            "--enable-workspaces",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: mlflow starts uvicorn as a child, both must stop
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"MLflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.25)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="session")
def mlflow_runs(mlflow_server) -> dict[str, Any]:
    """Two experiments; "credit-default" has five finished runs with auc 0.70..0.78, params and lineage tags."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=mlflow_server)
    credit = client.create_experiment("credit-default")
    other = client.create_experiment("churn")
    runs = []
    for index, auc in enumerate([0.70, 0.78, 0.72, 0.76, 0.74]):
        run = client.create_run(credit, run_name=f"run-{index}", start_time=1_700_000_000_000 + index * 1000)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("auc", auc, now, 0), Metric("loss", 1 - auc, now, 0)]
            + ([] if index else [Metric("f1", 0.5, now, 0)]),
            params=[Param("max_depth", str(index + 3))],
            tags=[
                RunTag("mlopshub.git.commit", f"{index:040d}"),
                RunTag("mlflow.source.git.commit", f"{index:040d}"),
                RunTag("mlopshub.data.data/loans.csv", "f69f5b72bc79a92dc70c63c9aa142e36"),
                RunTag("unrelated", "x"),
            ],
        )
        client.set_terminated(run.info.run_id, end_time=1_700_000_000_000 + index * 1000 + 1500 + index)
        runs.append({"id": run.info.run_id, "auc": auc, "name": f"run-{index}"})
    return {"url": mlflow_server, "experiment": credit, "other": other, "runs": runs}


@pytest.fixture(scope="session")
def team_workspaces(mlflow_server) -> dict[str, str]:
    """MLflow workspaces "sme-credit" and "retail-scoring", each with an experiment "<team>-only"; answers their ids."""
    from mlflow import MlflowClient
    from mlflow.utils.workspace_context import WorkspaceContext

    client = MlflowClient(tracking_uri=mlflow_server)
    experiments = {}
    for team in ("sme-credit", "retail-scoring"):
        client.create_workspace(team)
        with WorkspaceContext(team):
            experiments[team] = client.create_experiment(f"{team}-only")
    return experiments
