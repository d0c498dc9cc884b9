"""Online endpoints: real MLflow scoring processes behind the tornado proxy, switched and killed under load."""

import asyncio
import os
import signal
import threading
import time

import mlflow
import pandas as pd
import pytest
import requests
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub.serving import Endpoints, endpoint_routes

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
    running = LoopThread(Endpoints(log_dir=tmp_path_factory.mktemp("logs"), drain_timeout=10))
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
