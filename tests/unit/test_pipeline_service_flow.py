"""The pipeline service end to end without a hub: a real MLflow server, real model servers, real HubAuth.

Hub tokens are checked by :class:`jupyterhub.services.auth.HubAuth` against a
small HTTP endpoint that answers ``GET /hub/api/user`` from a token table, as
the hub does. The service runs in-process on its own event loop; requests are
plain HTTP.
"""

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from pipeline_harness import LINEAGE, TEAM, PipelineService, tracking_server
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlopshub.pipeline import ReleaseStore
from mlopshub.pipeline.gates import HoldOut
from mlopshub.serving.integrity import IntegrityError


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real MLflow tracking server (one process, no auth, no job runner) on a free port."""
    with tracking_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


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


class Service(PipelineService):
    """The pipeline service (tests/pipeline_harness.py) with a hold-out set that records how it was asked for."""

    def __init__(self, data_dir: Path, tracking_uri: str, holdout: pd.DataFrame, homes: Path | None = None):
        self.holdout_reads: list[tuple[str, dict]] = []

        def load_holdout(team: str, spec: dict) -> HoldOut:
            self.holdout_reads.append((team, dict(spec)))
            return HoldOut(frame=holdout, target=spec["target"], path=spec["path"], version="abc123")

        super().__init__(data_dir, tracking_uri, load_holdout, homes=homes)


@pytest.fixture(scope="module")
def service(tmp_path_factory, tracking, logged):
    running = Service(tmp_path_factory.mktemp("pipeline"), tracking, logged["holdout"])
    yield running
    running.close()


def score(url: str, token: str, body: dict) -> requests.Response:
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def publish(service: Service, token: str, uri: str, name: str = "loans") -> str:
    return service.publish(token, uri, name)


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
    without_access = service.api("GET", "releases", "eve")
    assert without_access.status_code == 401, "a token without the service's access scope"
    assert "grants no access to the service 'pipeline'" in without_access.json()["message"], "not 'a token is required'"
    assert "a hub token is required" in service.api("GET", "releases", None).json()["message"]
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
    # Read as the publisher (the loader's ProjectReader reads with their rights, from their own projects).
    read = {"path": "data/holdout.csv", "target": "default", "rev": "main", "publisher": "ann"}
    assert service.holdout_reads[-1] == (TEAM, read)

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
    assert service.api("POST", f"releases/{second}/approve", "val", {"comment": "v2 checked"}).status_code == 200
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

    # Version 1 is now the only production version left: a second rollback is refused, and recorded.
    refused = service.api("POST", "models/loans/rollback", "val", {"reason": "again"})
    assert refused.status_code == 409 and "no earlier production version" in refused.json()["message"]
    last = service.runner.store.audit.entries()[-1]
    assert (last.actor, last.action, last.model) == ("val", "rollback refused", "loans")
    assert "no earlier production version" in last.reason


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


def test_concurrent_publishes_of_one_model_make_one_version(service, logged, tracking):
    body = {"model_uri": logged["uris"]["v1"], "name": "loans-race", "kind": "online", "description": "race"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: service.api("POST", "releases", "ann", body), range(6)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    versions = MlflowClient(tracking_uri=tracking).search_model_versions("name = 'loans-race'")
    assert len(versions) == 1, "one MLflow version for the one release"
    created = next(a.json()["id"] for a in answers if a.status_code == 201)
    service.wait_for(created, "awaiting_approval")
    assert service.api("POST", f"releases/{created}/reject", "ann", {"reason": "race test done"}).ok


def test_a_model_copy_changed_after_registration_is_never_loaded(service, logged):
    release_id = publish(service, "ann", logged["uris"]["v1"], name="loans-tamper")
    release = service.wait_for(release_id, "awaiting_approval")
    digest = release["model_digest"]
    assert digest.startswith("sha256:")
    registered = next(e for e in service.runner.store.audit.entries(release_id=release_id) if e.action == "registered")
    assert registered.details["model_digest"] == digest
    copy = service.runner.registry.copy_path(TEAM, "loans-tamper", release["version"])
    # A stronger attacker than a workspace (which cannot write there: the copy is root's) swaps the weights.
    (copy / "MLmodel").write_text((copy / "MLmodel").read_text() + "\n# swapped\n")
    stored = service.runner.store.get(release_id)
    with pytest.raises(IntegrityError, match="changed after registration"):
        service.call(service.runner._serve(stored, "staging"))
    actions = [e.action for e in service.runner.store.audit.entries(release_id=release_id)]
    assert actions[-1] == "model digest mismatch"
    # The approval names the digest; what production would load is checked against it, so it fails.
    assert service.api("POST", f"releases/{release_id}/approve", "val", {"comment": "ok"}).ok
    failed = service.api("GET", f"releases/{release_id}", "val").json()
    deadline = time.monotonic() + 120
    while failed["state"] not in ("failed", "production") and time.monotonic() < deadline:
        time.sleep(0.1)
        failed = service.api("GET", f"releases/{release_id}", "val").json()
    assert failed["state"] == "failed" and "IntegrityError" in failed["reason"], failed
    approved = next(e for e in service.runner.store.audit.entries(release_id=release_id) if e.action == "approved")
    assert approved.details["model_digest"] == digest
    assert service.runner.endpoints.get("loans-tamper", "production") is None, "nothing served in its place"


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
