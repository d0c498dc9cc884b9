"""The pipeline service end to end without a hub: a real MLflow server, real model servers, real HubAuth.

Hub tokens are checked by :class:`jupyterhub.services.auth.HubAuth` against a
small HTTP endpoint that answers ``GET /hub/api/user`` from a token table, as
the hub does. The service runs in-process on its own event loop; requests are
plain HTTP.
"""

import asyncio
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from jupyterhub.services.auth import HubAuth
from mlflow.tracking import MlflowClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub import catalog
from mlopshub.pipeline import ReleaseStore
from mlopshub.pipeline.gates import HoldOut
from mlopshub.services.pipeline.app import make_app
from mlopshub.services.pipeline.auth import hub_authenticator
from mlopshub.services.pipeline.service import build_runner, team_releases

CATALOG = Path(__file__).resolve().parents[2] / "profiles"
TEAM = "sme-credit"
ACCESS = "access:services!service=pipeline"
LINEAGE = {
    "mlopshub.team": TEAM,
    "mlopshub.git.commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    "mlopshub.git.dirty": "false",
    "mlopshub.data.data/loans.csv": "0123456789abcdef0123456789abcdef",
    "mlopshub.data.count": "1",
}
#: The token table the small hub endpoint answers from.
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HubUserHandler(web.RequestHandler):
    """``GET /hub/api/user`` as the hub answers it: the token's owner and scopes, 403 for an unknown token."""

    def get(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        model = TOKENS.get(token.strip()) if scheme.lower() == "token" else None
        if model is None:
            raise web.HTTPError(403)
        self.finish({"kind": "user", **model})


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real MLflow tracking server (one process, no auth, no job runner) on a free port."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlopshub.services.mlflow_server", "--backend-store-uri",
               f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", str(folder / "artifacts"), "--host",
               "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    with open(folder / "server.log", "wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{uri}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()[-2000:]
        time.sleep(0.2)
    yield uri
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="module")
def logged(tracking):
    """Runs of team sme-credit with lineage: two good classifiers and one logged without signature or example."""
    features, label = make_classification(
        n_samples=400, n_features=4, n_informative=3, n_redundant=0, n_clusters_per_class=1, random_state=0
    )
    frame = pd.DataFrame(features, columns=["income", "debt", "age", "tenure"]).assign(default=label)
    train, holdout = frame.iloc[:300], frame.iloc[300:].reset_index(drop=True)
    x = train.drop(columns="default")
    uris = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(tracking)
        experiment = mlflow.create_experiment("loans")
        for key, c in (("v1", 1.0), ("v2", 0.5), ("bare", 1.0)):
            model = LogisticRegression(C=c).fit(x, train["default"])
            with mlflow.start_run(experiment_id=experiment, tags=LINEAGE) as run:
                example = {} if key == "bare" else {"input_example": x.head(5)}
                mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"], **example)
            uris[key] = f"runs:/{run.info.run_id}/model"
        mlflow.set_tracking_uri(None)
    return {"uris": uris, "holdout": holdout, "x": holdout.drop(columns="default")}


class Service:
    """The pipeline app and the small hub endpoint, on one event loop in a thread."""

    def __init__(self, data_dir: Path, tracking_uri: str, holdout: pd.DataFrame):
        self.holdout_reads: list[tuple[str, dict]] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

        def load_holdout(team: str, spec: dict) -> HoldOut:
            self.holdout_reads.append((team, dict(spec)))
            return HoldOut(frame=holdout, target=spec["target"], path=spec["path"], version="abc123")

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = build_runner(
                data_dir=data_dir,
                tracking_uri=tracking_uri,
                teams=team_releases(catalog.load(CATALOG)),
                public_url=self.url,
                load_holdout=load_holdout,
            )
            hub_auth = HubAuth(
                api_url=f"{self.url}/hub/api", api_token="service-token", cache_max_age=0, access_scopes={ACCESS}
            )
            app = make_app(self.runner, hub_authenticator(hub_auth))
            app.add_handlers(".*", [(r"/hub/api/user", HubUserHandler)])
            HTTPServer(app).add_sockets(sockets)
            self.loop.run_until_complete(self.runner.resume())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(60)

    def call(self, coroutine, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def api(self, method: str, path: str, token: str | None, body=None, **params) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(
            method, f"{self.url}/services/pipeline/api/{path}", json=body, headers=headers, params=params, timeout=60
        )

    def wait_for(self, release_id: str, *states: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            release = self.api("GET", f"releases/{release_id}", "val").json()
            if release["state"] in states:
                return release
            stopped = release["state"] in ("failed", "gates_failed")
            assert not stopped, f"release {release['state']}: {release['reason']}"
            assert time.monotonic() < deadline, f"release still {release['state']}: {release}"
            time.sleep(0.2)

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        self.call(self.runner.idle())
        self.call(self.runner.endpoints.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def service(tmp_path_factory, tracking, logged):
    running = Service(tmp_path_factory.mktemp("pipeline"), tracking, logged["holdout"])
    yield running
    running.close()


def score(url: str, token: str, body: dict) -> requests.Response:
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def publish(service: Service, token: str, uri: str, name: str = "loans") -> str:
    body = {"model_uri": uri, "name": name, "kind": "online", "description": "logistic regression on loans"}
    response = service.api("POST", "releases", token, body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


# --- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "loans", "kind": "online"}, "model_uri"),
        ({"model_uri": "runs:/abc/model", "name": "loans", "kind": "streaming"}, "kind"),
        ({"model_uri": "runs:/abc/model", "name": "bad name!", "kind": "online"}, "name"),
        ({"model_uri": "s3://bucket/model", "name": "loans", "kind": "online"}, "model_uri"),
        ({"model_uri": "runs:/abc/model", "name": "loans", "kind": "online", "colour": "red"}, "colour"),
    ],
)
def test_malformed_publish_is_422_naming_the_field(service, body, field):
    response = service.api("POST", "releases", "ann", body)
    assert response.status_code == 422
    assert response.json()["field"] == field and field in response.json()["message"]


def test_callers_without_the_scopes_are_refused(service, logged):
    assert service.api("GET", "releases", None).status_code == 401
    assert service.api("GET", "releases", "eve").status_code == 401, "a token without the service's access scope"
    other_team = service.api(
        "POST", "releases", "bob", {"model_uri": logged["uris"]["v1"], "name": "x", "kind": "online"}
    )
    assert other_team.status_code == 403 and TEAM in other_team.json()["message"]
    assert (
        service.api(
            "POST", "releases", "val", {"model_uri": logged["uris"]["v1"], "name": "x", "kind": "online"}
        ).status_code
        == 403
    )
    assert service.api("GET", "audit", "ann").status_code == 403
    assert service.api("POST", "models/loans/rollback", "bob", {"reason": "no"}).status_code == 403
    assert requests.get(f"{service.url}/services/pipeline/openapi.json", timeout=10).json()["openapi"].startswith("3.")


# --- the release flow --------------------------------------------------------------------------------------------


def four_formats(rows: pd.DataFrame) -> dict:
    return {
        "dataframe_split": {"dataframe_split": rows.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": rows.to_dict(orient="records")},
        "instances": {"instances": rows.to_dict(orient="records")},
        "inputs": {"inputs": rows.to_dict(orient="list")},
    }


def test_publish_gates_staging_approval_production_rollback(service, logged, tracking):
    first = publish(service, "ann", logged["uris"]["v1"])
    release = service.wait_for(first, "awaiting_approval")
    assert [g["name"] for g in release["gate_results"] if g["passed"]] == [
        "model_loads",
        "signature_and_example",
        "lineage",
        "metrics",
    ]
    metrics = release["gate_results"][3]["details"]
    assert metrics["thresholds"] == {"auc": {"min": 0.75}} and metrics["holdout"]["version"] == "abc123"
    assert service.holdout_reads[-1] == (TEAM, {"path": "data/holdout.csv", "target": "default", "rev": "main"})

    staging = release["endpoints"]["staging"]
    assert staging == f"{service.url}/services/models/loans/staging/invocations"
    answers = [score(staging, "ann", body) for body in four_formats(logged["x"].head(3)).values()]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({json.dumps(a.json()["predictions"]) for a in answers}) == 1
    assert score(staging, "bob", {"inputs": []}).status_code == 403, "another team may not call it"

    refused = service.api("POST", f"releases/{first}/approve", "ann", {"comment": "mine"})
    assert refused.status_code == 403
    approved = service.api("POST", f"releases/{first}/approve", "val", {"comment": "validated on Q3 data"})
    assert approved.status_code == 200, approved.text
    release = service.wait_for(first, "production")
    production = release["endpoints"]["production"]
    answer = score(production, "val", four_formats(logged["x"].head(2))["dataframe_split"])
    assert answer.status_code == 200 and answer.headers["X-Mlopshub-Model-Version"] == "1"
    assert service.runner.endpoints.get("loans", "staging") is None, "staging's server is stopped after promotion"

    # A second version, published by someone who is also a validator: four eyes still apply.
    second = publish(service, "sam", logged["uris"]["v2"])
    service.wait_for(second, "awaiting_approval")
    own = service.api("POST", f"releases/{second}/approve", "sam", {"comment": "looks fine"})
    assert own.status_code == 403 and "sam" in own.json()["message"]
    assert service.api("POST", f"releases/{second}/approve", "val", {}).status_code == 200
    service.wait_for(second, "production")
    assert (
        score(production, "val", {"inputs": logged["x"].head(1).to_dict(orient="list")}).headers[
            "X-Mlopshub-Model-Version"
        ]
        == "2"
    )

    rolled = service.api("POST", "models/loans/rollback", "val", {"reason": "v2 drifts on new applications"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["restored"]["version"] == "1" and rolled.json()["rolled_back"]["state"] == "rolled_back"
    answer = score(production, "val", {"inputs": logged["x"].head(1).to_dict(orient="list")})
    assert answer.status_code == 200 and answer.headers["X-Mlopshub-Model-Version"] == "1"

    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    assert client.get_model_version_by_alias("loans", "production").version == "1"
    version_two = client.get_model_version("loans", "2")
    assert version_two.tags["mlopshub.approver"] == "val" and version_two.tags["mlopshub.publisher"] == "sam"
    assert version_two.tags["mlopshub.git.commit"] == LINEAGE["mlopshub.git.commit"]
    assert version_two.tags["mlopshub.data.data/loans.csv"] == LINEAGE["mlopshub.data.data/loans.csv"]
    assert version_two.tags["mlopshub.team"] == TEAM and version_two.run_id


def test_model_without_signature_fails_the_gate_with_the_fix_and_is_not_served(service, logged, tracking):
    release_id = publish(service, "ann", logged["uris"]["bare"], name="loans-bare")
    release = service.wait_for(release_id, "gates_failed")
    gate = next(g for g in release["gate_results"] if g["name"] == "signature_and_example")
    assert not gate["passed"] and "input_example=" in gate["fix"]
    assert "signature_and_example" in release["reason"]
    assert release["endpoints"] == {}
    assert service.runner.endpoints.get("loans-bare", "staging") is None
    assert score(f"{service.url}/services/models/loans-bare/staging/invocations", "val", {}).status_code == 404
    assert MlflowClient(tracking_uri=tracking).get_registered_model("loans-bare").aliases == {}


def test_audit_holds_every_step(service):
    entries = service.api("GET", "audit", "val", format="json").json()
    actions = [(e["actor"], e["action"]) for e in entries]
    for expected in [
        ("ann", "registered"),
        ("pipeline", "gating started"),
        ("pipeline", "gates passed"),
        ("pipeline", "endpoint switched"),
        ("pipeline", "alias set"),
        ("pipeline", "staging ready"),
        ("ann", "approval refused"),
        ("val", "approved"),
        ("pipeline", "production"),
        ("sam", "approval refused"),
        ("pipeline", "superseded"),
        ("val", "endpoint switched"),
        ("val", "rolled back"),
        ("val", "restored"),
        ("pipeline", "gates failed"),
    ]:
        assert expected in actions, expected
    rows = list(csv.DictReader(io.StringIO(service.api("GET", "audit", "val", format="csv").text)))
    assert len(rows) == len(entries) and rows[-1]["chain"] == entries[-1]["chain"]
    assert ReleaseStore(service.runner.store.database.path).audit.verify() == []
    assert service.api("GET", "audit", "val", format="xml").json()["field"] == "format"


def test_a_restarted_service_serves_production_again_and_keeps_the_audit(service, tracking, logged):
    data_dir = service.runner.store.database.path.parent
    before = len(service.api("GET", "audit", "val").json())
    service.close()
    again = Service(data_dir, tracking, logged["holdout"])
    try:
        answer = score(
            f"{again.url}/services/models/loans/production/invocations",
            "val",
            {"inputs": logged["x"].head(1).to_dict(orient="list")},
        )
        assert answer.status_code == 200 and answer.headers["X-Mlopshub-Model-Version"] == "1"
        entries = again.api("GET", "audit", "val").json()
        assert len(entries) > before and entries[-1]["action"] == "endpoint restored"
    finally:
        again.close()
