"""Online endpoints: real MLflow scoring processes behind the tornado proxy, switched and killed under load.

The model servers listen on Unix sockets only the service can reach, serve only a model folder that still has
its recorded digest, and answer hostile bodies with a 400.
"""

import asyncio
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import mlflow
import pandas as pd
import psutil
import pytest
import requests
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub.serving import Endpoints, IntegrityError, endpoint_routes
from mlopshub.serving.integrity import tree_digest
from mlopshub.serving.server import MAX_SOCKET_PATH

COLUMNS = ["income", "debt", "age", "tenure"]


class LoopThread:
    """A tornado app on its own event loop in a thread, so tests can call it with plain ``requests``."""

    def __init__(self, endpoints: Endpoints):
        self.endpoints = endpoints
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(endpoint_routes("/services/models/", self.endpoints, authorize=None))
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        server = HTTPServer(app)
        server.add_sockets(sockets)
        self.ready.set()
        self.loop.run_forever()

    def call(self, coroutine, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def url(self, model: str, stage: str, action: str = "invocations") -> str:
        return f"http://127.0.0.1:{self.port}/services/models/{model}/{stage}/{action}"

    def close(self) -> None:
        self.call(self.endpoints.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two versions of a classifier saved as MLflow models with signature and input example."""
    folder = tmp_path_factory.mktemp("models")
    features, label = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    x = pd.DataFrame(features, columns=COLUMNS)
    paths = {}
    versions = {"1": LogisticRegression(), "2": DummyClassifier(strategy="constant", constant=1)}
    for version, model in versions.items():
        model.fit(x, label)
        path = folder / f"v{version}"
        mlflow.sklearn.save_model(model, path, input_example=x.head(3), pip_requirements=["scikit-learn"])
        paths[version] = path
    return {"paths": paths, "x": x}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, models):
    logs, sockets = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("sockets")
    running = LoopThread(Endpoints(log_dir=logs, socket_dir=sockets, drain_timeout=10))
    yield running
    running.close()


def predictions(response: requests.Response) -> list:
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_staging_answers_the_four_mlflow_input_formats(proxy, models):
    proxy.call(proxy.endpoints.deploy("loans", "staging", "1", models["paths"]["1"]))
    rows = models["x"].head(3)
    url = proxy.url("loans", "staging")
    bodies = {
        "dataframe_split": {"dataframe_split": rows.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": rows.to_dict(orient="records")},
        "instances": {"instances": rows.to_dict(orient="records")},
        "inputs": {"inputs": rows.to_dict(orient="list")},
    }
    answers = {name: predictions(requests.post(url, json=body, timeout=30)) for name, body in bodies.items()}
    assert all(len(answer) == 3 for answer in answers.values())
    assert len({tuple(answer) for answer in answers.values()}) == 1, answers
    assert requests.get(proxy.url("loans", "staging", "ping"), timeout=10).status_code == 200


def test_unknown_model_or_stage_is_404_naming_it(proxy):
    missing = requests.post(proxy.url("nobody", "production"), json={"inputs": []}, timeout=10)
    assert missing.status_code == 404 and "nobody" in missing.json()["message"]
    stage = requests.post(proxy.url("loans", "canary"), json={"inputs": []}, timeout=10)
    assert stage.status_code == 404 and "canary" in stage.json()["message"]


def send_continuously(url: str, body: dict, stop: threading.Event, seen: list, errors: list) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                response = session.post(url, json=body, timeout=60)
            except requests.RequestException as error:
                errors.append(repr(error))
                continue
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
            else:
                seen.append(response.headers["X-Mlopshub-Model-Version"])


def test_switching_versions_under_load_fails_no_request(proxy, models):
    proxy.call(proxy.endpoints.deploy("loans", "production", "1", models["paths"]["1"]))
    body = {"dataframe_split": models["x"].head(2).to_dict(orient="split")}
    stop, seen, errors = threading.Event(), [], []
    senders = [
        threading.Thread(target=send_continuously, args=(proxy.url("loans", "production"), body, stop, seen, errors))
        for _ in range(2)
    ]
    for sender in senders:
        sender.start()
    try:
        time.sleep(0.5)
        old = proxy.endpoints.get("loans", "production").server
        proxy.call(proxy.endpoints.deploy("loans", "production", "2", models["paths"]["2"]))  # promotion
        time.sleep(0.5)
        proxy.call(proxy.endpoints.deploy("loans", "production", "1", models["paths"]["1"]))  # rollback
        time.sleep(0.5)
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)
    assert errors == []
    assert {"1", "2"} <= set(seen) and seen[-1] == "1"
    assert old.pid is None, "the old server is stopped once drained"


def test_killed_model_server_is_restarted_and_answers_again(proxy, models):
    endpoint = proxy.call(proxy.endpoints.deploy("loans", "staging", "1", models["paths"]["1"]))
    pid = endpoint.server.pid
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    # The first request waits in the kept socket's backlog while the supervisor starts a new process.
    answer = predictions(
        requests.post(
            proxy.url("loans", "staging"), json={"inputs": models["x"].head(1).to_dict(orient="list")}, timeout=90
        )
    )
    assert len(answer) == 1
    assert time.monotonic() - started < 45
    assert endpoint.server.pid not in (None, pid)
    assert endpoint.server.restarts == 1


# --- where model servers listen ------------------------------------------------------------------------------------


def test_a_model_server_listens_only_on_a_unix_socket_in_a_folder_only_the_service_enters(proxy, models):
    server = proxy.call(proxy.endpoints.deploy("loans", "staging", "1", models["paths"]["1"])).server
    folder = server.socket_path.parent
    info = folder.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert len(os.fsencode(str(server.socket_path))) <= MAX_SOCKET_PATH
    child = psutil.Process(server.pid)
    assert child.net_connections(kind="inet") == [], "no TCP or UDP socket, listening or not"
    assert str(server.socket_path) in {connection.laddr for connection in child.net_connections(kind="unix")}


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another user needs root to switch to it")
def test_another_user_cannot_connect_to_a_model_server(proxy, models):
    server = proxy.call(proxy.endpoints.deploy("loans", "staging", "1", models["paths"]["1"])).server
    attempt = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    refused = subprocess.run(
        [sys.executable, "-c", attempt, str(server.socket_path)], user=65534, group=65534, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused.stderr


def test_a_socket_folder_too_long_for_sun_path_is_refused_naming_the_limit(tmp_path):
    folder = tmp_path / ("x" * (MAX_SOCKET_PATH - len(str(tmp_path))))
    with pytest.raises(ValueError, match=f"limit is {MAX_SOCKET_PATH}") as refused:
        Endpoints(socket_dir=folder)
    assert str(folder) in str(refused.value) and not folder.exists()


def test_stale_sockets_are_removed_when_the_endpoints_start(tmp_path):
    folder = tmp_path / "sockets"
    folder.mkdir(mode=0o755)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(folder / "0123456789abcdef.sock"))
    stale.close()  # the file stays behind, as after a crash
    Endpoints(socket_dir=folder)
    assert list(folder.iterdir()) == [] and stat.S_IMODE(folder.stat().st_mode) == 0o700


# --- what is served is what was registered -------------------------------------------------------------------------


def copy_with_digest(source, target):
    shutil.copytree(source, target)
    return tree_digest(target)


def test_a_model_changed_after_its_digest_was_taken_is_refused_and_the_previous_version_keeps_answering(
    proxy, models, tmp_path
):
    proxy.call(proxy.endpoints.deploy("cards", "production", "1", models["paths"]["1"]))
    copy = tmp_path / "v2"
    digest = copy_with_digest(models["paths"]["2"], copy)
    (copy / "python_model.py").write_text("import os  # swapped in from a workspace\n")

    with pytest.raises(IntegrityError) as refused:
        proxy.call(proxy.endpoints.deploy("cards", "production", "2", copy, digest=digest))

    assert digest in str(refused.value) and str(copy) in str(refused.value)
    assert proxy.endpoints.get("cards", "production").version == "1"
    body = {"inputs": models["x"].head(1).to_dict(orient="list")}
    answer = requests.post(proxy.url("cards", "production"), json=body, timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Mlopshub-Model-Version"] == "1"


def test_a_refused_first_deploy_leaves_no_endpoint(proxy, models, tmp_path):
    copy = tmp_path / "v1"
    digest = copy_with_digest(models["paths"]["1"], copy)
    (copy / "MLmodel").write_text((copy / "MLmodel").read_text() + "\n")
    with pytest.raises(IntegrityError, match=digest):
        proxy.call(proxy.endpoints.deploy("fresh", "staging", "1", copy, digest=digest))
    assert proxy.endpoints.get("fresh", "staging") is None
    assert requests.post(proxy.url("fresh", "staging"), json={"inputs": []}, timeout=10).status_code == 404


def test_a_supervised_restart_checks_the_digest_again_and_does_not_serve_a_changed_model(proxy, models, tmp_path):
    copy = tmp_path / "v1"
    digest = copy_with_digest(models["paths"]["1"], copy)
    refusals = []
    proxy.endpoints.on_refused = lambda endpoint, reason: refusals.append((endpoint.version, reason))
    try:
        endpoint = proxy.call(proxy.endpoints.deploy("audited", "production", "1", copy, digest=digest))
        server, pid = endpoint.server, endpoint.server.pid
        shutil.copytree(models["paths"]["2"], copy, dirs_exist_ok=True)  # the constant model, under version 1
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not refusals:
            assert time.monotonic() < deadline, "the supervisor neither refused nor gave up"
            time.sleep(0.05)
    finally:
        proxy.endpoints.on_refused = None
    assert refusals[0][0] == "1" and digest in refusals[0][1] and server.refused == refusals[0][1]
    assert server.pid is None and proxy.endpoints.get("audited", "production") is None
    assert not server.socket_path.exists(), "callers fail fast instead of waiting in a backlog nobody reads"
    answer = requests.post(proxy.url("audited", "production"), json={"inputs": []}, timeout=30)
    assert answer.status_code == 404


# --- hostile bodies -------------------------------------------------------------------------------------------------


def test_json_nested_fifty_thousand_levels_is_a_400_that_says_so(proxy, models):
    proxy.call(proxy.endpoints.deploy("loans", "staging", "1", models["paths"]["1"]))
    body = b"[" * 50_000 + b"]" * 50_000
    answer = requests.post(
        proxy.url("loans", "staging"), data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert answer.status_code == 400, answer.text[:300]
    assert "50000 levels deep" in answer.json()["message"]
    deep_object = b'{"inputs": ' + b'{"a": ' * 300 + b"1" + b"}" * 301
    json_type = {"Content-Type": "application/json"}
    assert (
        requests.post(proxy.url("loans", "staging"), data=deep_object, headers=json_type, timeout=30).status_code == 400
    )
    # Sent without a type, the body is not JSON to MLflow's protocol: 415 names the types it takes, never a 500.
    untyped = requests.post(proxy.url("loans", "staging"), data=deep_object, timeout=30)
    assert untyped.status_code == 415 and "application/json" in untyped.text


def test_a_long_path_is_not_logged_whole(proxy, caplog):
    model = "m" * 30_000  # tornado takes up to 64 KB of headers
    with caplog.at_level(logging.DEBUG):
        answer = requests.post(proxy.url(model, "staging"), json={"inputs": []}, timeout=30)
    assert answer.status_code == 404
    served = [record.getMessage() for record in caplog.records if record.name.startswith(("tornado", "mlopshub"))]
    assert served and max(map(len, served)) < 1000, "the access log and the 404 warning are bounded"
