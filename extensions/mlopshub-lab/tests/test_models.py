"""Models and releases through the REST API: a real MLflow server, the real release pipeline app.

The pipeline (``mlopshub.services.pipeline``) runs in-process on its own event
loop in a thread, as in the hub's own pipeline tests: a real runner on a
temporary folder, hub tokens checked by a real ``HubAuth`` against a small
``GET /hub/api/user`` endpoint answering from a token table. The same endpoint
is the workspace's hub for ``GET me``. The team's thresholds can't be met, so
every release stops at its gates and nothing is deployed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from jupyterhub.services.auth import HubAuth
from labtesting import free_port
from mlopshub_lab import contract
from mlopshub_lab.errors import PipelineUnavailable
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub.services.pipeline.app import make_app
from mlopshub.services.pipeline.auth import hub_authenticator
from mlopshub.services.pipeline.runner import TeamRelease
from mlopshub.services.pipeline.service import build_runner

TEAM = "sme-credit"
ACCESS = "access:services!service=pipeline"
PUBLISH = f"custom:mlopshub:publish!group={TEAM}"
APPROVE = "custom:mlopshub:approve"
#: The token table of the small hub: a team member, and a team member who is also a validator.
TOKENS = {
    "ann-secret-token": {"name": "ann", "groups": [TEAM], "scopes": [ACCESS, PUBLISH]},
    "sam-secret-token": {
        "name": "sam",
        "groups": [TEAM, "model-validators"],
        "scopes": [ACCESS, PUBLISH, APPROVE, "custom:mlopshub:read-releases"],
    },
}


class HubUserHandler(web.RequestHandler):
    """``GET /hub/api/user`` as the hub answers it: the token's owner and scopes, 403 for an unknown token."""

    def get(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        model = TOKENS.get(token.strip()) if scheme.lower() == "token" else None
        if model is None:
            raise web.HTTPError(403)
        self.finish({"kind": "user", **model})


class Pipeline:
    """The pipeline app and the small hub, on one event loop in a thread."""

    def __init__(self, data_dir: Path, tracking_uri: str):
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.runner = build_runner(
                data_dir=data_dir,
                tracking_uri=tracking_uri,
                teams={TEAM: TeamRelease(thresholds={"auc": {"min": 1.01}})},
                public_url=self.url,
            )
            hub_auth = HubAuth(
                api_url=f"{self.url}/hub/api", api_token="service-token", cache_max_age=0, access_scopes={ACCESS}
            )
            app = make_app(self.runner, hub_authenticator(hub_auth))
            app.add_handlers(".*", [(r"/hub/api/user", HubUserHandler)])
            HTTPServer(app).add_sockets(sockets)
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(60)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.idle(), self.loop).result(120)
        asyncio.run_coroutine_threadsafe(self.runner.endpoints.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def logged_models(mlflow_server) -> dict[str, Any]:
    """Experiment "loans" of team sme-credit: a classifier logged with an input example, and one without."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    features = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "debt": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
    label = [0, 1, 0, 1, 0, 1]
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(mlflow_server)
        try:
            experiment = mlflow.create_experiment("loans")
            for key, example in (("good", features.head(2)), ("bare", None)):
                with mlflow.start_run(experiment_id=experiment, run_name=key, tags={"mlopshub.team": TEAM}) as run:
                    mlflow.log_metric("auc", 0.81 if key == "good" else 0.6)
                    model = LogisticRegression().fit(features, label)
                    mlflow.sklearn.log_model(model, name="model", input_example=example)
                runs[key] = run.info.run_id
        finally:
            mlflow.set_tracking_uri(None)
    return {"url": mlflow_server, "experiment": experiment, "runs": runs}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, logged_models):
    running = Pipeline(tmp_path_factory.mktemp("pipeline"), logged_models["url"])
    yield running
    running.close()


@pytest.fixture
def as_user(monkeypatch, pipeline):
    """Make the workspace's user the owner of a token of :data:`TOKENS` ("ann" or "sam"), with the pipeline set."""

    def switch(name: str) -> str:
        token = next(token for token, model in TOKENS.items() if model["name"] == name)
        monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", f"{pipeline.url}/services/pipeline/api")
        monkeypatch.setenv("JUPYTERHUB_API_URL", f"{pipeline.url}/hub/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        return token

    switch("ann")
    return switch


@pytest.fixture
def call(api):
    """``api``, also proving that no answer carries a hub token, in its body or its headers."""

    async def checked(method: str, endpoint: str, body: Any = None, **kwargs: Any):
        status, payload, response = await api(method, endpoint, body, **kwargs)
        seen = (response.body or b"").decode() + str(dict(response.headers))
        for token in TOKENS:
            assert token not in seen, f"{method} {endpoint} answered the hub token"
        return status, payload

    return checked


def publish_body(run_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"model_uri": f"runs:/{run_id}/model", "name": name, "kind": "online", "description": "loans", **extra}


# --- logged models --------------------------------------------------------------------------------


@pytest.fixture
def mlflow_env(monkeypatch, logged_models):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged_models["url"])
    return logged_models


async def test_logged_models_have_run_metrics_signature_and_the_uri_to_publish(call, mlflow_env):
    status, body = await call("GET", "models/logged", params={"experiment": mlflow_env["experiment"]})
    assert status == 200, body
    by_run = {model["run_id"]: model for model in body["models"]}
    good = by_run[mlflow_env["runs"]["good"]]
    assert good["model_uri"] == f"runs:/{mlflow_env['runs']['good']}/model"
    assert (good["name"], good["experiment"], good["run_name"]) == ("model", "loans", "good")
    assert good["metrics"] == {"auc": 0.81}
    assert good["lineage"] == {"mlopshub.team": TEAM}
    assert good["has_signature"] is True and good["inputs"] == ["income", "debt"]
    assert good["model_id"].startswith("m-") and isinstance(good["created"], int)
    assert (good["status"], good["experiment_id"]) == ("READY", mlflow_env["experiment"])
    bare = by_run[mlflow_env["runs"]["bare"]]
    assert bare["has_signature"] is False and bare["inputs"] is None
    assert body["next_page_token"] is None


@pytest.fixture(scope="module")
def team_model(team_workspaces, mlflow_server) -> str:
    """A model with a signature logged in team "retail-scoring"'s own MLflow workspace; answers its run id."""
    import mlflow
    import pandas as pd
    from mlflow.utils.workspace_context import WorkspaceContext
    from sklearn.linear_model import LogisticRegression

    features = pd.DataFrame({"age": [30.0, 40.0, 50.0, 60.0], "balance": [1.0, 0.0, 1.0, 0.0]})
    with pytest.MonkeyPatch.context() as patch, WorkspaceContext("retail-scoring"):
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(mlflow_server)
        try:
            with mlflow.start_run(experiment_id=team_workspaces["retail-scoring"]) as run:
                model = LogisticRegression().fit(features, [0, 1, 0, 1])
                logged = mlflow.sklearn.log_model(model, name="model", input_example=features.head(2))
        finally:
            mlflow.set_tracking_uri(None)
    assert logged.artifact_path.startswith("mlflow-artifacts:/"), "the server keeps the files, as the platform's does"
    return run.info.run_id


async def test_another_teams_model_is_read_in_its_workspace_signature_included(
    call, mlflow_env, team_model, monkeypatch
):
    # The current team is sme-credit: the retail-scoring model's files are asked for in the request's workspace.
    monkeypatch.setenv("MLOPSHUB_TEAMS", "sme-credit,retail-scoring")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "sme-credit")
    status, body = await call("GET", "models/logged", params={"workspace": "retail-scoring"})
    assert status == 200, body
    assert [(m["run_id"], m["experiment"]) for m in body["models"]] == [(team_model, "retail-scoring-only")]
    assert body["models"][0]["has_signature"] is True and body["models"][0]["inputs"] == ["age", "balance"]
    _, current = await call("GET", "models/logged")
    assert team_model not in {m["run_id"] for m in current["models"]}


async def test_logged_models_of_every_experiment_come_in_pages_newest_first(call, mlflow_env):
    first_status, first = await call("GET", "models/logged", params={"max_results": "1"})
    assert first_status == 200 and len(first["models"]) == 1 and first["next_page_token"]
    params = {"max_results": "1", "page_token": first["next_page_token"]}
    _, second = await call("GET", "models/logged", params=params)
    assert [m["run_id"] for m in first["models"] + second["models"]] == [
        mlflow_env["runs"]["bare"],
        mlflow_env["runs"]["good"],
    ]


async def test_logged_models_refuse_a_bad_experiment_id_and_page_size(call, mlflow_env):
    status, body = await call("GET", "models/logged", params={"experiment": "1 OR 1=1"})
    assert status == 400 and "not a valid MLflow id" in body["message"]
    status, body = await call("GET", "models/logged", params={"max_results": "1000"})
    assert status == 400 and "max_results" in body["message"]


# --- who the user is ------------------------------------------------------------------------------


async def test_me_says_whether_the_user_is_a_validator_and_for_which_teams_they_publish(call, as_user, monkeypatch):
    monkeypatch.setenv("MLOPSHUB_TEAMS", TEAM)  # the spawner's: the teams the workspace started with
    status, body = await call("GET", "me")
    assert (status, body) == (
        200,
        {
            "name": "ann",
            "groups": [TEAM],
            "validator": False,
            "auditor": False,
            "publish_teams": [TEAM],
            "pipeline": True,
        },
    )
    as_user("sam")
    status, body = await call("GET", "me")
    assert status == 200 and body["validator"] is True and body["groups"] == ["model-validators", TEAM]
    assert body["auditor"] is True, "validators read the audit log: the sidebar shows them its tab"


# --- forwarding to the pipeline -------------------------------------------------------------------


async def test_publish_is_forwarded_and_the_release_comes_back(call, as_user, logged_models):
    run_id = logged_models["runs"]["good"]
    status, body = await call("POST", "releases", publish_body(run_id, "loans-default"))
    assert status == 201, body
    release = body["release"]
    assert body["id"] == release["id"] and release["id"].startswith("rel-")
    assert (release["model_name"], release["version"], release["team"]) == ("loans-default", "1", TEAM)
    assert (release["publisher"], release["run_id"], release["kind"]) == ("ann", run_id, "online")
    assert [step["name"] for step in release["steps"]] == ["registered", "gates", "staging", "approval", "production"]

    status, again = await call("GET", f"releases/{release['id']}")
    assert status == 200 and again["id"] == release["id"]
    status, listed = await call("GET", "releases", params={"model": "loans-default"})
    assert status == 200 and [r["id"] for r in listed["releases"]] == [release["id"]]

    # The team's thresholds can't be met: the gates stop it, with their reasons, and nothing is deployed.
    deadline = time.monotonic() + 120
    while again["state"] not in ("gates_failed", "failed"):
        assert time.monotonic() < deadline, f"still {again['state']}"
        await asyncio.sleep(0.5)
        _, again = await call("GET", f"releases/{release['id']}")
    assert again["state"] == "gates_failed", again["reason"]
    metrics = next(gate for gate in again["gate_results"] if gate["name"] == "metrics")
    assert metrics["passed"] is False and metrics["fix"]
    assert again["endpoints"] == {}
    status, listed = await call("GET", "releases", params={"state": "gates_failed"})
    assert status == 200 and release["id"] in [r["id"] for r in listed["releases"]]


async def test_the_pipelines_422_keeps_its_message_and_field(call, as_user):
    status, body = await call("POST", "releases", publish_body("0" * 32, "loans-nowhere"))
    assert status == 422
    assert body["field"] == "model_uri" and "no run '" + "0" * 32 + "'" in body["message"]
    # What the contract's schema can't say, the pipeline checks: its answer names the field.
    status, body = await call("POST", "releases", {**publish_body("abc", "loans"), "model_uri": "runs:/abc/../x"})
    assert (status, body["field"]) == (422, "model_uri") and "'..'" in body["message"]
    batch = {"input": "data/new_loans.csv", "schedule": "0 6 * *"}
    status, body = await call("POST", "releases", publish_body("0" * 32, "loans-nowhere", kind="batch", batch=batch))
    assert (status, body["field"]) == (422, "batch.schedule") and "five cron fields" in body["message"]


async def test_a_batch_model_is_published_with_its_input_revision_and_schedule(call, as_user, logged_models):
    batch = {"input": "data/new_loans.csv", "rev": "v2", "schedule": "0 6 * * MON-FRI"}
    body = publish_body(logged_models["runs"]["bare"], "loans-nightly", kind="batch", batch=batch)
    status, answer = await call("POST", "releases", body)
    assert status == 201, answer
    release = answer["release"]
    assert release["kind"] == "batch"
    assert release["batch"] == {**batch, "repo": None}, "the settings reached the pipeline as the sidebar sent them"
    status, again = await call("GET", f"releases/{release['id']}")
    assert status == 200 and again["batch"]["schedule"] == "0 6 * * MON-FRI"


async def test_a_workspace_without_the_hub_package_reads_the_contract_from_the_pipeline(pipeline):
    # Workspace images carry only this extension: the pipeline serves the document the hub package holds.
    served = await contract.served_document(f"{pipeline.url}/services/pipeline/api")
    assert served == contract.installed_document()
    schema = contract.request_schema(served, *contract.PUBLISH)
    assert contract.problems(schema, publish_body("abc", "loans", kind="batch", batch={"input": "d.csv"})) == []
    with pytest.raises(PipelineUnavailable, match="API description"):
        await contract.served_document(f"http://127.0.0.1:{free_port()}/services/pipeline/api")


async def test_the_publisher_may_not_approve_their_own_release_and_sees_the_pipelines_words(
    call, as_user, logged_models
):
    as_user("sam")
    status, body = await call("POST", "releases", publish_body(logged_models["runs"]["bare"], "loans-own"))
    assert status == 201, body
    status, refused = await call("POST", f"releases/{body['id']}/approve", {"comment": "fine by me"})
    assert status == 403
    assert "'sam' cannot approve release" in refused["message"] and "second person" in refused["message"]


async def test_a_user_without_the_approve_scope_is_refused_by_the_pipeline(call, as_user, logged_models):
    status, body = await call("POST", "releases", publish_body(logged_models["runs"]["bare"], "loans-scope"))
    assert status == 201, body
    status, refused = await call("POST", f"releases/{body['id']}/approve", {})
    assert status == 403 and refused["message"] == (
        f"ann may not approve releases: the token lacks the scope {APPROVE}"
    )
    as_user("sam")
    for without in ({}, {"comment": "   "}):
        status, refused = await call("POST", f"releases/{body['id']}/approve", without)
        assert (status, refused.get("field")) == (422, "comment") and "is required" in refused["message"]


async def test_unknown_release_is_404_and_nothing_to_roll_back_is_409_from_the_pipeline(call, as_user):
    status, body = await call("GET", "releases/rel-000000000000")
    assert status == 404 and "no release 'rel-000000000000'" in body["message"]
    as_user("sam")
    status, body = await call("POST", "models/never-released/rollback", {"reason": "drift"})
    assert status == 409 and "never-released" in body["message"]


@pytest.mark.parametrize(
    ("method", "endpoint", "body", "status", "field"),
    [
        ("POST", "releases", {"name": "loans", "kind": "online"}, 422, "model_uri"),
        ("POST", "releases", publish_body("abc", "bad name!"), 422, "name"),
        ("POST", "releases", publish_body("abc", "x" * 64), 422, "name"),
        ("POST", "releases", publish_body("abc", "loans", kind="streaming"), 422, "kind"),
        ("POST", "releases", publish_body("abc", "loans", colour="red"), 422, "colour"),
        ("POST", "releases", {**publish_body("abc", "loans"), "model_uri": "s3://bucket/model"}, 422, "model_uri"),
        ("POST", "releases", publish_body("abc", "loans", kind="batch", batch={"input": 5}), 422, "batch.input"),
        ("POST", "releases", publish_body("abc", "loans", batch={"input": "d.csv", "when": "6am"}), 422, "batch.when"),
        ("POST", "releases", publish_body("abc", "loans", batch="nightly"), 422, "batch"),
        ("POST", "releases", publish_body("abc", "loans", description=7), 422, "description"),
        ("POST", "releases/rel-1/approve", {"comment": ["yes"]}, 422, "comment"),
        ("POST", "releases/rel-1/reject", {}, 422, "reason"),
        ("POST", "releases/rel-1/reject", {"reason": "  "}, 422, "reason"),
        ("POST", "models/loans/rollback", {"reason": None}, 422, "reason"),
        ("POST", "models/-loans/rollback", {"reason": "drift"}, 422, "name"),
        ("GET", "releases/rel%20one", None, 400, None),
        ("GET", "releases/..", None, 400, None),
        ("GET", "releases?state=shipped", None, 422, "state"),
    ],
)
async def test_bad_requests_are_refused_before_forwarding(call, monkeypatch, method, endpoint, body, status, field):
    # A pipeline that can't be reached: a forwarded request would answer 502.
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", f"http://127.0.0.1:{free_port()}/services/pipeline/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "ann-secret-token")
    path, _, query = endpoint.partition("?")
    params = dict([query.split("=")]) if query else None
    answer_status, answer = await call(method, path, body, params=params)
    assert answer_status == status, answer
    assert answer.get("field") == field


async def test_a_body_that_is_not_json_is_400(jp_fetch, monkeypatch):
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", f"http://127.0.0.1:{free_port()}/services/pipeline/api")
    response = await jp_fetch("mlopshub-lab", "releases", method="POST", body="{not json", raise_error=False)
    assert response.code == 400 and b"not JSON" in response.body


async def test_an_unreachable_pipeline_is_502_with_a_clear_message(call, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/services/pipeline/api"
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "ann-secret-token")
    status, body = await call("GET", "releases")
    assert status == 502
    assert body["message"].startswith(f"the release pipeline at {url} is unreachable")


async def test_a_workspace_without_the_pipeline_is_502_naming_the_variable(call):
    status, body = await call("POST", "releases/rel-1/approve", {"comment": "ok"})
    assert status == 502 and "MLOPSHUB_PIPELINE_URL" in body["message"]


async def test_a_token_the_pipeline_refuses_is_502_not_a_lab_logout(call, as_user, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "expired-token")
    status, body = await call("GET", "releases")
    assert status == 502 and "JUPYTERHUB_API_TOKEN" in body["message"]
    assert "expired-token" not in body["message"]


# --- the audit log and trying an endpoint -----------------------------------------------------------


async def test_the_audit_log_is_filtered_by_model_actor_action_and_time_and_exported_as_csv(
    call, as_user, logged_models, jp_fetch
):
    status, body = await call("POST", "releases", publish_body(logged_models["runs"]["bare"], "loans-audited"))
    assert status == 201, body
    as_user("sam")
    status, everything = await call("GET", "audit")
    assert status == 200 and len(everything["entries"]) > 1
    status, mine = await call("GET", "audit", params={"model": "loans-audited", "actor": "ann"})
    assert status == 200 and mine["entries"], "the publish by ann is recorded"
    assert {(e["model"], e["actor"]) for e in mine["entries"]} == {("loans-audited", "ann")}
    published = mine["entries"][0]
    status, by_action = await call("GET", "audit", params={"model": "loans-audited", "action": published["action"]})
    assert status == 200 and published["id"] in [e["id"] for e in by_action["entries"]]
    status, later = await call("GET", "audit", params={"model": "loans-audited", "since": "2999-01-01T00:00:00Z"})
    assert (status, later["entries"]) == (200, [])
    status, earlier = await call("GET", "audit", params={"model": "loans-audited", "until": published["at"]})
    assert status == 200 and published["id"] not in [e["id"] for e in earlier["entries"]], "until is exclusive"

    params = {"model": "loans-audited", "actor": "ann", "format": "csv"}
    response = await jp_fetch("mlopshub-lab", "audit", params=params)
    assert response.headers["Content-Disposition"] == 'attachment; filename="mlopshub-audit.csv"'
    lines = response.body.decode().splitlines()
    assert lines[0] == "id,at,actor,action,release_id,model,version,reason,details,chain"
    assert len(lines) == 1 + len(mine["entries"]) and f"{published['id']},{published['at']},ann," in lines[1]


async def test_the_audit_log_refuses_a_time_without_zone_and_a_member_without_the_scope(call, as_user):
    as_user("sam")
    status, body = await call("GET", "audit", params={"since": "2026-12-01T09:00"})
    assert (status, body.get("field")) == (422, "since") and "no time zone" in body["message"]
    status, body = await call("GET", "audit", params={"until": "yesterday"})
    assert (status, body.get("field")) == (422, "until") and "not a time" in body["message"]
    status, body = await call("GET", "audit", params={"limit": "0"})
    assert (status, body.get("field")) == (422, "limit") and "from 1 to 1000" in body["message"]
    as_user("ann")
    status, body = await call("GET", "audit")
    assert status == 403 and "custom:mlopshub:read-releases" in body["message"]


async def test_a_team_member_reads_the_trail_of_the_teams_release_paged_by_the_pipeline(
    call, as_user, logged_models, jp_fetch
):
    status, body = await call("POST", "releases", publish_body(logged_models["runs"]["bare"], "loans-trail"))
    assert status == 201, body
    status, trail = await call("GET", "audit", params={"release_id": body["id"]})
    assert status == 200 and trail["entries"], "ann, no validator, reads her release's trail"
    assert {e["release_id"] for e in trail["entries"]} == {body["id"]}
    assert trail["entries"][0]["action"] == "registered" and trail["entries"][0]["actor"] == "ann"
    status, first = await call("GET", "audit", params={"release_id": body["id"], "limit": "1"})
    assert status == 200 and [e["id"] for e in first["entries"]] == [trail["entries"][0]["id"]]
    after = {"release_id": body["id"], "after": str(trail["entries"][0]["id"])}
    status, rest = await call("GET", "audit", params=after)
    assert status == 200 and rest["entries"] == trail["entries"][1:]
    response = await jp_fetch("mlopshub-lab", "audit", params={"release_id": body["id"], "format": "csv"})
    assert len(response.body.decode().splitlines()) == 1 + len(trail["entries"])
    status, missing = await call("GET", "audit", params={"release_id": "rel-000000000000"})
    assert status == 404 and "no release 'rel-000000000000'" in missing["message"]


async def test_trying_a_release_without_a_staging_endpoint_says_so(call, as_user, logged_models):
    status, body = await call("POST", "releases", publish_body(logged_models["runs"]["bare"], "loans-untried"))
    assert status == 201, body
    request = {"dataframe_split": {"columns": ["income", "debt"], "data": [[1, 0]]}}
    status, refused = await call("POST", f"releases/{body['id']}/try", {"stage": "staging", "request": request})
    assert status == 409 and f"release {body['id']} (loans-untried v1) has no staging endpoint" in refused["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stage": "test", "request": {"inputs": {}}}, "stage"),
        ({"stage": "staging", "request": {"rows": []}}, "request"),
        ({"stage": "staging", "request": {"inputs": {}, "instances": []}}, "request"),
        ({"stage": "staging", "request": {"inputs": ["x" * 70_000]}}, "request"),
        ({"stage": "staging", "request": {"inputs": {}}, "url": "http://elsewhere/"}, "url"),
    ],
)
async def test_a_wrong_try_request_is_refused_naming_the_field(call, monkeypatch, body, field):
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", "http://127.0.0.1:9/api")
    status, refused = await call("POST", "releases/rel-1/try", body)
    assert (status, refused["field"]) == (422, field)


async def test_the_audit_tab_gets_every_page_the_filter_matches_unless_it_asks_for_one(call, as_user, pipeline):
    for n in range(1001):
        pipeline.runner.store.audit.record("sam", "bulk checked", model="loans-bulk", reason=f"batch {n}")
    as_user("sam")
    status, everything = await call("GET", "audit", params={"model": "loans-bulk"})
    assert status == 200 and [e["reason"] for e in everything["entries"]] == [f"batch {n}" for n in range(1001)]
    status, one_page = await call("GET", "audit", params={"model": "loans-bulk", "limit": "1000"})
    assert status == 200 and len(one_page["entries"]) == 1000


def test_every_users_publish_scope_counts_for_their_teams_never_for_a_role_group():
    # The hub gives every user custom:mlopshub:publish; the team is their membership, as the pipeline decides it.
    from mlopshub_lab.models import publish_teams

    scopes = [ACCESS, "custom:mlopshub:publish"]
    groups = [TEAM, "model-validators", "retail-scoring"]
    assert publish_teams(scopes, groups, f"{TEAM},retail-scoring") == ["retail-scoring", TEAM]
    assert publish_teams(scopes, groups, TEAM) == [TEAM]  # a team joined after the start: not this workspace's
    assert publish_teams(scopes, ["model-validators"], TEAM) == []  # left the team since
    assert publish_teams([ACCESS, PUBLISH], groups, f"{TEAM},retail-scoring") == [TEAM]  # a token for one team
    assert publish_teams([ACCESS], groups, TEAM) == []  # a token made without publish
