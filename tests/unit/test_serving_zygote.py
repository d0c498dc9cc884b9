"""Model servers forked from a warm parent per team: real zygotes, real forked scoring processes, real kills."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mlflow
import pandas as pd
import psutil
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from testing_support import Loop

from mlopshub.serving import Endpoints, ModelServer
from mlopshub.serving.upstream import Upstream
from mlopshub.serving.zygote import ZygoteFailed, Zygotes

COLUMNS = ["income", "debt", "age", "tenure"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A classifier saved as an MLflow model with signature and input example."""
    features, label = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    x = pd.DataFrame(features, columns=COLUMNS)
    classifier = LogisticRegression().fit(x, label)
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        classifier,
        path,
        signature=infer_signature(x, classifier.predict(x)),
        input_example=x.head(3),
        pip_requirements=["scikit-learn"],
    )
    return {"path": path, "body": {"dataframe_split": x.head(2).to_dict(orient="split")}}


@pytest.fixture(scope="module")
def before():
    """The test process's children before this module started any."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def served(tmp_path_factory, before):
    loop = Loop()
    endpoints = Endpoints(log_dir=tmp_path_factory.mktemp("logs"), drain_timeout=10)
    yield loop, endpoints
    loop.call(endpoints.close())
    loop.close()


def answer(loop: Loop, server: ModelServer, body: dict, timeout: float = 60) -> list:
    """The server's predictions for ``body``, asked over its Unix socket as the proxy asks."""
    upstream = Upstream()
    headers = {"Content-Type": "application/json"}
    try:
        response = loop.call(upstream.fetch(f"{server.url}/invocations", "POST", headers, json.dumps(body).encode()))
    finally:
        loop.call(upstream.close())
    assert response is not None and response.code == 200, response
    return json.loads(response.body)["predictions"]


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_forked_server_answers_and_its_parent_is_the_teams_zygote(served, model):
    loop, endpoints = served
    first = loop.call(endpoints.deploy("loans", "staging", "1", model["path"], team="sme-credit")).server
    started = time.monotonic()
    second = loop.call(endpoints.deploy("cards", "staging", "1", model["path"], team="sme-credit")).server
    assert time.monotonic() - started < 3, "a warm zygote forks a server in well under the ~4 s of a cold start"
    assert len(answer(loop, first, model["body"])) == 2 and len(answer(loop, second, model["body"])) == 2
    zygote = endpoints.zygotes.of("sme-credit").pid
    assert psutil.Process(first.pid).ppid() == zygote == psutil.Process(second.pid).ppid()
    assert first.pid != second.pid, "one process per model version"


def test_two_teams_never_share_a_zygote(served, model):
    loop, endpoints = served
    ours = loop.call(endpoints.deploy("loans", "staging", "1", model["path"], team="sme-credit")).server
    theirs = loop.call(endpoints.deploy("churn", "staging", "1", model["path"], team="retail-scoring")).server
    zygotes = endpoints.zygotes.pids()
    assert zygotes["sme-credit"] != zygotes["retail-scoring"]
    assert psutil.Process(ours.pid).ppid() == zygotes["sme-credit"]
    assert psutil.Process(theirs.pid).ppid() == zygotes["retail-scoring"]
    assert len(answer(loop, theirs, model["body"])) == 2


def test_killed_child_is_forked_again_and_answers(served, model):
    loop, endpoints = served
    server = loop.call(endpoints.deploy("loans", "staging", "1", model["path"], team="sme-credit")).server
    pid, restarts = server.pid, server.restarts
    os.kill(pid, signal.SIGKILL)
    # The request waits in the kept socket's backlog while the supervisor forks a new child.
    assert len(answer(loop, server, model["body"])) == 2
    wait_until(lambda: server.restarts == restarts + 1)
    assert server.pid not in (None, pid)
    other = endpoints.get("churn", "staging").server
    assert len(answer(loop, other, model["body"])) == 2, "another endpoint never noticed"


def test_killed_zygote_takes_its_children_and_both_come_back(served, model):
    loop, endpoints = served
    server = loop.call(endpoints.deploy("loans", "staging", "1", model["path"], team="sme-credit")).server
    zygote, child = endpoints.zygotes.of("sme-credit").pid, server.pid
    os.kill(zygote, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(child), timeout=10)  # no orphan keeps serving
    assert len(answer(loop, server, model["body"], timeout=90)) == 2
    assert endpoints.zygotes.of("sme-credit").pid not in (None, zygote)
    later = loop.call(endpoints.deploy("loans", "production", "1", model["path"], team="sme-credit")).server
    assert psutil.Process(later.pid).ppid() == endpoints.zygotes.of("sme-credit").pid


def test_spawn_is_kept_as_a_fallback(served, model, tmp_path):
    loop, _ = served
    server = ModelServer(model["path"], label="spawned", log_path=tmp_path / "spawned.log", start_method="spawn")
    loop.call(server.start())
    try:
        assert psutil.Process(server.pid).ppid() == os.getpid()
        assert len(answer(loop, server, model["body"])) == 2
    finally:
        loop.call(server.stop())
    assert server.pid is None


def test_closing_the_endpoints_leaves_no_process_behind(served, before):
    loop, endpoints = served
    ours = {e.server.pid for e in endpoints.all()} | set(endpoints.zygotes.pids().values())
    assert len(ours) >= 4
    loop.call(endpoints.close())
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in ours), timeout=20)
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before
    assert left == set()


SERVICE = textwrap.dedent(
    """
    import asyncio, sys
    from mlopshub.serving import Endpoints

    async def main():
        endpoints = Endpoints()
        server = (await endpoints.deploy("loans", "staging", "1", sys.argv[1], team="sme-credit")).server
        print(endpoints.zygotes.of("sme-credit").pid, server.pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_no_model_server_outlives_the_service(model):
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(model["path"])], stdout=subprocess.PIPE, text=True)
    try:
        zygote, child = map(int, service.stdout.readline().split())
        assert psutil.Process(child).ppid() == zygote
    finally:
        service.kill()
        service.wait(10)
    wait_until(lambda: not psutil.pid_exists(zygote) and not psutil.pid_exists(child), timeout=15)


def test_a_call_in_the_zygote_answers_its_result_or_its_error(tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"a": 1}))

    async def calls():
        zygotes = Zygotes()
        try:
            ok = await zygotes.of("calls").call("json:dumps", request)
            with pytest.raises(ZygoteFailed, match="TypeError"):
                await zygotes.of("calls").call("os.path:getsize", request)  # a dict is not a path
            return ok
        finally:
            await zygotes.close()

    assert asyncio.run(calls()) == '{"a": 1}'
