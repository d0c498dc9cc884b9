"""The models service apart from the pipeline: real model servers, switched over the real control socket.

What a production endpoint relies on: the pipeline can go away and the endpoint keeps answering, and the
models service can restart on its own and serve the same versions again (checked against their digests)
without the pipeline.
"""

import asyncio
import json
import stat
import threading

import mlflow
import pandas as pd
import pytest
import requests
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from tornado.netutil import bind_sockets

from mlopshub.serving import Endpoints, IntegrityError
from mlopshub.serving.gateway import Gateway, RemoteEndpoints, Route, RouteTable, control_socket, serve
from mlopshub.serving.integrity import tree_digest

COLUMNS = ["income", "debt", "age", "tenure"]


async def allow_everyone(handler, model, stage):
    """Who may call is the platform tests' business (tests/security); here: everyone."""


class RunningGateway:
    """:func:`serve` on its own event loop in a thread, on a free port, over ``pipeline_dir``."""

    def __init__(self, pipeline_dir):
        self.pipeline_dir = pipeline_dir
        self.port = bind_sockets(0, "127.0.0.1")[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        endpoints = Endpoints(log_dir=pipeline_dir / "logs", socket_dir=pipeline_dir / "sockets", drain_timeout=5)
        self.gateway = Gateway(endpoints, RouteTable(pipeline_dir / "routes.json"))
        self.task = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        assert self.started.wait(120), "the models service did not start"

    async def _serve(self):
        task = asyncio.ensure_future(
            serve(
                self.gateway,
                allow_everyone,
                host="127.0.0.1",
                port=self.port,
                prefix="/services/models/",
                socket_path=control_socket(self.pipeline_dir),
                teams=[],
            )
        )
        while not task.done():
            try:
                if await asyncio.to_thread(requests_ok, f"http://127.0.0.1:{self.port}/services/models/health"):
                    break
            except requests.RequestException:
                pass
            await asyncio.sleep(0.2)
        self.started.set()
        await task

    def url(self, model, stage):
        return f"http://127.0.0.1:{self.port}/services/models/{model}/{stage}/invocations"

    def stop(self):
        self.loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(self.loop)])
        try:
            self.task.result(60)
        except BaseException:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def requests_ok(url):
    return requests.get(url, timeout=1).status_code == 200


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    features, label = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    x = pd.DataFrame(features, columns=COLUMNS)
    path = tmp_path_factory.mktemp("models") / "v1"
    mlflow.sklearn.save_model(LogisticRegression().fit(x, label), path, input_example=x.head(3))
    return {"path": path, "digest": tree_digest(path), "body": {"dataframe_split": x.head(3).to_dict(orient="split")}}


def score(url, body):
    answer = requests.post(url, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_endpoints_switched_over_the_control_socket_keep_serving_through_a_restart_of_the_models_service(
    tmp_path, model
):
    gateway = RunningGateway(tmp_path)
    remote = RemoteEndpoints(control_socket(tmp_path))
    try:
        endpoint = asyncio.run(
            remote.deploy("loans", "production", "1", model["path"], team="sme-credit", digest=model["digest"])
        )
        assert (endpoint.version, remote.get("loans", "production").version) == ("1", "1")
        before = score(gateway.url("loans", "production"), model["body"])
        saved = json.loads((tmp_path / "routes.json").read_text())
        assert saved["routes"][0] | {"path": None} == {
            "model": "loans", "stage": "production", "version": "1", "path": None, "team": "sme-credit",
            "digest": model["digest"],
        }  # fmt: skip
        assert stat.S_IMODE((tmp_path / "routes.json").stat().st_mode) == 0o600
        # Only the platform's user reaches the control socket.
        assert stat.S_IMODE(control_socket(tmp_path).parent.stat().st_mode) == 0o700
    finally:
        gateway.stop()
    # A new models service on the same folder serves the same version again; no pipeline asked it to.
    again = RunningGateway(tmp_path)
    try:
        assert score(again.url("loans", "production"), model["body"]) == before
        assert again.gateway.table.team_of("loans") == "sme-credit"
        asyncio.run(remote.undeploy("loans", "production"))
        assert remote.get("loans", "production") is None
        assert requests.post(again.url("loans", "production"), json=model["body"], timeout=30).status_code == 404
    finally:
        again.stop()


def test_a_changed_model_is_refused_at_deploy_and_at_restart_and_the_refusal_waits_for_the_pipeline(tmp_path, model):
    gateway = RunningGateway(tmp_path)
    remote = RemoteEndpoints(control_socket(tmp_path))
    try:
        with pytest.raises(IntegrityError, match="sha256"):
            asyncio.run(remote.deploy("loans", "staging", "1", model["path"], digest="sha256:" + "0" * 64))
        asyncio.run(remote.deploy("loans", "staging", "1", model["path"], digest=model["digest"]))
    finally:
        gateway.stop()
    copy = tmp_path / "routes.json"
    saved = json.loads(copy.read_text())
    saved["routes"][0]["digest"] = "sha256:" + "1" * 64  # as if the folder had changed since
    copy.write_text(json.dumps(saved))
    again = RunningGateway(tmp_path)
    try:
        assert requests.post(again.url("loans", "staging"), json=model["body"], timeout=30).status_code == 404
        asyncio.run(remote.refresh())
        (refusal,) = remote.refusals
        assert (refusal["model"], refusal["stage"], refusal["version"]) == ("loans", "staging", "1")
        assert "IntegrityError" in refusal["reason"]
        asyncio.run(remote.forget_refusal(refusal["id"]))
        asyncio.run(remote.refresh())
        assert remote.refusals == []
    finally:
        again.stop()


def test_routes_name_model_copies_relative_to_the_pipeline_folder_so_a_restored_data_dir_may_move(tmp_path):
    old, new = tmp_path / "old" / "pipeline", tmp_path / "new" / "pipeline"
    copy = old / "models" / "sme-credit" / "loans" / "1"
    copy.mkdir(parents=True)
    table = RouteTable(old / "routes.json")
    table.routes[("loans", "production")] = Route("loans", "production", "1", str(copy), "sme-credit", None)
    table.routes[("other", "staging")] = Route("other", "staging", "2", "/srv/elsewhere/2", "retail-scoring", None)
    table.save()
    assert json.loads((old / "routes.json").read_text())["routes"][0]["path"] == "models/sme-credit/loans/1"
    new.parent.mkdir()
    old.rename(new)
    moved = RouteTable(new / "routes.json")
    assert moved.routes[("loans", "production")].path == str(new / "models" / "sme-credit" / "loans" / "1")
    assert moved.routes[("other", "staging")].path == "/srv/elsewhere/2"
