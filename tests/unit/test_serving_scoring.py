"""The model server's scoring app answers as MLflow's own scoring app does, request for request.

:func:`mlopshub.serving.scoring.scoring_app` replaces MLflow's FastAPI app (``scoring_server.init``) for speed
(see that module). Both are served here by uvicorn over real HTTP, side by side, for the same loaded model: every
request a caller may send (each input format, CSV, params, a broken body, a body against the signature, a wrong
content type) must get the same status and the same body from both. Where ours answers differently on purpose
(a body nested too deeply for Python's parser, no Content-Type at all), MLflow's app answers 500 and ours names
the problem with a 4xx. A prediction that outlives the request timeout gets MLflow's 504, and ``/ping`` keeps
answering while it runs.
"""

import asyncio
import json
import os
import socket
import threading
import time

import mlflow
import pandas as pd
import pytest
import requests
import uvicorn
from mlflow.pyfunc import scoring_server
from mlflow.version import VERSION
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlopshub.serving.scoring import TIMED_OUT, scoring_app

COLUMNS = ["income", "debt", "age", "tenure"]


class Sleepy(mlflow.pyfunc.PythonModel):
    """Sleeps for the number of seconds in its first cell, then answers it."""

    def predict(self, context, model_input, params=None):
        seconds = float(model_input.iloc[0, 0])
        time.sleep(seconds)
        return [seconds]


class Broken(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("the model's own bug")


class Uvicorn:
    """An ASGI app served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, app):
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[listening])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(MLflow's app, ours) for one classifier with a signature, and ours for a sleeping and a broken model."""
    folder = tmp_path_factory.mktemp("scoring")
    features, label = make_classification(n_samples=100, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(features, columns=COLUMNS)
    mlflow.sklearn.save_model(
        LogisticRegression().fit(frame, label), folder / "classifier", input_example=frame.head(3)
    )
    seconds = pd.DataFrame({"seconds": [0.0]})
    mlflow.pyfunc.save_model(folder / "sleepy", python_model=Sleepy(), input_example=seconds)
    mlflow.pyfunc.save_model(folder / "broken", python_model=Broken(), input_example=seconds)
    environment = dict(os.environ)
    try:
        classifier = scoring_server.load_model_with_mlflow_config(str(folder / "classifier"))
        running = {
            "mlflow": Uvicorn(scoring_server.init(classifier)),
            "ours": Uvicorn(scoring_app(classifier)),
            "sleepy": Uvicorn(scoring_app(scoring_server.load_model_with_mlflow_config(str(folder / "sleepy")), 1)),
            "broken": Uvicorn(scoring_app(scoring_server.load_model_with_mlflow_config(str(folder / "broken")))),
        }
    finally:
        os.environ.clear()
        os.environ.update(environment)  # both apps mark the process as a serving one
    urls = {name: server.url for name, server in running.items()}
    yield {**urls, "classifier": str(folder / "classifier")}, frame
    for server in running.values():
        server.close()


def both(servers, method, path, **kwargs):
    """The answers of MLflow's app and ours to the same request: (status, content type, body) each."""
    urls, _ = servers
    answers = []
    for name in ("mlflow", "ours"):
        response = requests.request(method, urls[name] + path, timeout=30, **kwargs)
        answers.append((response.status_code, response.headers.get("content-type"), response.content))
    return answers


def json_request(body):
    return {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}


CASES = {
    "dataframe_split": lambda f: json_request({"dataframe_split": f.head(4).to_dict(orient="split")}),
    "dataframe_records": lambda f: json_request({"dataframe_records": f.head(4).to_dict(orient="records")}),
    "instances": lambda f: json_request({"instances": f.head(4).to_dict(orient="records")}),
    "inputs": lambda f: json_request({"inputs": f.head(4).to_dict(orient="list")}),
    "csv": lambda f: {"data": f.head(4).to_csv(index=False), "headers": {"Content-Type": "text/csv"}},
    "charset": lambda f: {
        "data": json.dumps({"dataframe_split": f.head(2).to_dict(orient="split")}),
        "headers": {"Content-Type": "application/json; charset=utf-8"},
    },
    "latin-1": lambda f: {"data": "{}", "headers": {"Content-Type": "application/json; charset=latin-1"}},
    "unknown parameter": lambda f: {"data": "{}", "headers": {"Content-Type": "application/json; format=pandas"}},
    "unknown type": lambda f: {"data": "x", "headers": {"Content-Type": "application/xml"}},
    "broken JSON": lambda f: {"data": "{not json", "headers": {"Content-Type": "application/json"}},
    "no input field": lambda f: json_request({"rows": [[1, 2, 3, 4]]}),
    "two input fields": lambda f: json_request({"inputs": [[1, 2, 3, 4]], "instances": [[1, 2, 3, 4]]}),
    "missing column": lambda f: json_request(
        {"dataframe_split": f.head(2).drop(columns="age").to_dict(orient="split")}
    ),
    "wrong type": lambda f: json_request({"dataframe_records": [{**f.iloc[0].to_dict(), "age": "old"}]}),
    "not UTF-8": lambda f: {"data": b'{"inputs": "\xff"}', "headers": {"Content-Type": "application/json"}},
    "empty CSV": lambda f: {"data": "", "headers": {"Content-Type": "text/csv"}},
    "brackets in a CSV cell": lambda f: {
        "data": "income,debt,age,tenure\n" + "[" * 200 + ",1,2,3\n",
        "headers": {"Content-Type": "text/csv"},
    },
}


@pytest.mark.parametrize("case", CASES)
def test_every_request_gets_the_answer_mlflows_own_app_gives(servers, case):
    theirs, ours = both(servers, "POST", "/invocations", **CASES[case](servers[1]))
    assert ours[0] == theirs[0]
    assert ours[1].split(";")[0] == theirs[1].split(";")[0]
    if theirs[1].startswith("application/json") and theirs[0] == 200:
        assert json.loads(ours[2]) == json.loads(theirs[2])
    else:
        assert ours[2] == theirs[2]


def test_the_predictions_are_the_models(servers):
    urls, frame = servers
    answer = requests.post(urls["ours"] + "/invocations", **CASES["dataframe_split"](frame), timeout=30)
    assert answer.status_code == 200
    assert answer.json()["predictions"] == mlflow.pyfunc.load_model(urls["classifier"]).predict(frame.head(4)).tolist()


@pytest.mark.parametrize("path", ["/ping", "/health", "/version", "/nowhere"])
def test_the_other_routes_answer_as_mlflows_app(servers, path):
    theirs, ours = both(servers, "GET", path)
    assert ours == theirs
    if path == "/version":
        assert ours[2].decode() == VERSION


@pytest.mark.parametrize(("method", "path"), [("GET", "/invocations"), ("POST", "/ping")])
def test_a_wrong_method_is_refused_as_mlflows_app_does(servers, method, path):
    theirs, ours = both(servers, method, path)
    assert ours[0] == theirs[0] == 405


def test_a_failing_model_gets_mlflows_error_and_the_server_keeps_answering(servers):
    urls, _ = servers
    answer = requests.post(urls["broken"] + "/invocations", **json_request({"inputs": {"seconds": [0.0]}}), timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert "unexpected error while evaluating the model" in answer.json()["message"]
    assert requests.get(urls["broken"] + "/ping", timeout=5).status_code == 200


def test_no_content_type_is_refused_by_name_where_mlflows_app_fails(servers):
    urls, _ = servers
    theirs = requests.post(urls["mlflow"] + "/invocations", data=b"{}", timeout=30)
    ours = requests.post(urls["ours"] + "/invocations", data=b"{}", timeout=30)
    assert theirs.status_code == 500
    assert ours.status_code == 415
    assert "no Content-Type" in ours.text


def test_a_body_nested_too_deep_is_refused_where_mlflows_app_fails(servers):
    deep = b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    theirs, ours = both(servers, "POST", "/invocations", data=deep, headers={"Content-Type": "application/json"})
    assert theirs[0] == 500
    assert ours[0] == 400
    assert "50001 levels deep" in json.loads(ours[2])["message"]


def test_a_prediction_past_the_timeout_gets_504_and_ping_answers_meanwhile(servers):
    urls, _ = servers
    answers = {}

    def slow():
        started = time.monotonic()
        answer = requests.post(
            urls["sleepy"] + "/invocations", **json_request({"inputs": {"seconds": [3.0]}}), timeout=30
        )
        answers["slow"] = (answer.status_code, answer.text, time.monotonic() - started)

    caller = threading.Thread(target=slow)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert requests.get(urls["sleepy"] + "/ping", timeout=5).status_code == 200
    assert time.monotonic() - started < 0.5  # the event loop is not the one predicting
    caller.join(30)
    status, text, took = answers["slow"]
    assert (status, text) == (504, TIMED_OUT)
    assert took < 2.5  # answered at the 1 s timeout, not when the prediction ended
    time.sleep(2.5)  # the scoring thread finishes the sleep; the next request is served
    quick = requests.post(urls["sleepy"] + "/invocations", **json_request({"inputs": {"seconds": [0.0]}}), timeout=30)
    assert quick.status_code == 200
    assert quick.json()["predictions"] == [0.0]
