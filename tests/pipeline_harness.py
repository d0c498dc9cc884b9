"""The pipeline service without a hub, as its tests and its benchmark run it.

A real MLflow tracking server (:func:`tracking_server`), the pipeline's real
app and runner on an event loop in a thread (:class:`PipelineService`), and
hub tokens checked by the real :class:`jupyterhub.services.auth.HubAuth`
against a small endpoint that answers ``GET /hub/api/user`` from a token
table (:data:`TOKENS`), as the hub does. Requests are plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub import catalog
from mlopshub.launcher import free_port
from mlopshub.monitoring.monitor import Monitor
from mlopshub.pipeline.gates import HoldOut
from mlopshub.services.pipeline.app import make_app
from mlopshub.services.pipeline.auth import hub_authenticator
from mlopshub.services.pipeline.monitoring import ModelMonitoring
from mlopshub.services.pipeline.projects import ProjectReader
from mlopshub.services.pipeline.service import build_runner, resume_unless_audit_broken, team_releases
from mlopshub.serving.proxy import Observe

CATALOG = Path(__file__).resolve().parents[1] / "profiles"
TEAM = "sme-credit"
ACCESS = "access:services!service=pipeline"
#: What the Lab extension's run context provider records on a run trained in a clean, pushed project.
LINEAGE = {
    "mlopshub.team": TEAM,
    "mlopshub.git.commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    "mlopshub.git.dirty": "false",
    "mlopshub.data.data/loans.csv": "0123456789abcdef0123456789abcdef",
    "mlopshub.data.count": "1",
}
#: The token table the small hub endpoint answers from (the token is the user's name).
TOKENS = {
    "ann": {"name": "ann", "groups": [TEAM], "scopes": [ACCESS, f"custom:mlopshub:publish!group={TEAM}"]},
    # In the team and a validator: may approve, but never what she published.
    "sam": {
        "name": "sam",
        "groups": [TEAM, "model-validators"],
        "scopes": [ACCESS, f"custom:mlopshub:publish!group={TEAM}", "custom:mlopshub:approve"],
    },
    "val": {
        "name": "val",
        "groups": ["model-validators"],
        "scopes": [ACCESS, "custom:mlopshub:approve", "custom:mlopshub:read-releases"],
    },
    "bob": {
        "name": "bob",
        "groups": ["retail-scoring"],
        "scopes": [ACCESS, "custom:mlopshub:publish!group=retail-scoring"],
    },
    "eve": {"name": "eve", "groups": [TEAM], "scopes": [f"custom:mlopshub:publish!group={TEAM}"]},  # no access scope
}


class HubUserHandler(web.RequestHandler):
    """``GET /hub/api/user`` as the hub answers it: the token's owner and scopes, 403 for an unknown token."""

    def get(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        model = TOKENS.get(token.strip()) if scheme.lower() == "token" else None
        if model is None:
            raise web.HTTPError(403)
        self.finish({"kind": "user", **model})


def wait_for_url(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers 200; an error naming the process if it exits first, or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited with {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's session (it and what it started), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def tracking_server(folder: Path) -> Iterator[str]:
    """A real MLflow tracking server (one process, SQLite, local artifacts, no job runner); yields its URI."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlopshub.services.mlflow_server", "--backend-store-uri",
               f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", str(folder / "artifacts"), "--host",
               "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with open(folder / "mlflow-server.log", "wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{uri}/health", timeout=90, process=server)
        yield uri
    finally:
        stop_group(server)


class PipelineService:
    """The pipeline app, its runner and the small hub endpoint, on one event loop in a thread.

    ``load_holdout(team, spec)`` stands for the DVC read of the team's
    hold-out set; ``cache_max_age`` is HubAuth's (the service itself uses 60); ``homes`` holds
    the test users' homes (``<homes>/<user>``), where the projects releases read from must be.
    ``observe`` is the endpoints' monitoring hook (:class:`mlopshub.serving.proxy.Answered` of each call).
    """

    def __init__(
        self,
        data_dir: Path,
        tracking_uri: str,
        load_holdout: Callable[[str, dict], HoldOut],
        cache_max_age: int = 0,
        homes: Path | None = None,
        observe: Observe | None = None,
    ):
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = build_runner(
                data_dir=data_dir,
                tracking_uri=tracking_uri,
                teams=team_releases(catalog.load(CATALOG)),
                public_url=self.url,
                load_holdout=load_holdout,
                # Projects of the test users live in <homes>/<user>; the tests' users have no Unix accounts.
                projects=ProjectReader(homes or data_dir / "homes", as_accounts=False),
            )
            hub_auth = HubAuth(
                api_url=f"{self.url}/hub/api",
                api_token="service-token",
                cache_max_age=cache_max_age,
                access_scopes={ACCESS},
            )
            # Monitoring as the service runs it (baselines at release, batch captures, the API); no schedule.
            monitoring = ModelMonitoring(self.runner, Monitor(data_dir / "monitoring"), check_seconds=86400)
            self.runner.monitoring = monitoring
            app = make_app(self.runner, hub_authenticator(hub_auth), observe=observe, monitoring=monitoring)
            app.add_handlers(".*", [(r"/hub/api/user", HubUserHandler)])
            HTTPServer(app).add_sockets(sockets)
            # As the service starts: nothing is resumed on a broken audit chain (resuming records entries).
            self.loop.run_until_complete(resume_unless_audit_broken(self.runner))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not started.wait(60):
            raise TimeoutError("the pipeline service did not start")

    def call(self, coroutine: Any, timeout: float = 300) -> Any:
        """Run ``coroutine`` on the service's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def api(self, method: str, path: str, token: str | None, body: Any = None, **params: Any) -> requests.Response:
        """A request to ``/services/pipeline/api/<path>`` with ``token`` (None: without one)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.url}/services/pipeline/api/{path}"
        return requests.request(method, url, json=body, headers=headers, params=params, timeout=120)

    def endpoint(self, model: str, stage: str) -> str:
        """The address of ``model``'s endpoint at ``stage``."""
        return f"{self.url}/services/models/{model}/{stage}/invocations"

    def publish(self, token: str, uri: str, name: str, kind: str = "online") -> str:
        """Publish ``uri`` as ``name``; the release id (an error with the answer when refused)."""
        body = {"model_uri": uri, "name": name, "kind": kind, "description": "logistic regression on loans"}
        response = self.api("POST", "releases", token, body)
        assert response.status_code == 201, f"publish refused: {response.status_code} {response.text}"
        return str(response.json()["id"])

    def wait_for(self, release_id: str, *states: str, timeout: float = 120, poll: float = 0.05) -> dict:
        """The release once it is in one of ``states``; an error when it stopped elsewhere or took too long."""
        deadline = time.monotonic() + timeout
        while True:
            release = self.api("GET", f"releases/{release_id}", "val").json()
            if release["state"] in states:
                return release
            stopped = release["state"] in ("failed", "gates_failed")
            assert not stopped, f"release {release['state']}: {release['reason']}"
            assert time.monotonic() < deadline, f"release still {release['state']}: {release}"
            time.sleep(poll)

    def close(self) -> None:
        """Let running steps finish, stop the endpoints and the loop."""
        if not self.thread.is_alive():
            return
        self.call(self.runner.idle())
        self.call(self.runner.endpoints.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
