"""The release pipeline on the real platform: a model trained in a workspace, published, gated, served, approved.

Everything through the hub's public address with hub tokens, as the sidebar
and consumer systems call it: ``/services/pipeline/api/`` and
``/services/models/{model}/{stage}/invocations``. (The browser test in
tests/e2e/test_release.py clicks the same flow in the sidebar.)
"""


import pytest
import requests
from release_flow import FORMATS, Pipeline, make_project, train

pytestmark = pytest.mark.integration

TEAM = "sme-credit"


@pytest.fixture(scope="module")
def carol(platform):
    """A data scientist of sme-credit with a workspace, a versioned project and two trained models."""
    platform.add_user("carol", TEAM)
    platform.start("carol", "python-cpu")
    token = platform.token_for("carol")
    assert "project ready" in platform.execute("carol", token, make_project(seed=1))
    runs = [platform.execute("carol", token, train(c)).strip().splitlines()[-1] for c in (1.0, 0.05)]
    yield token, runs
    platform.stop("carol")


@pytest.fixture(scope="module")
def victor(platform):
    """A model validator (model risk)."""
    platform.add_user("victor", "model-validators")
    return platform.token_for("victor")


def test_publish_gates_staging_approval_production_and_rollback(platform, carol, victor, bob):
    token, (first_run, second_run) = carol
    pipeline, validator = Pipeline(platform, token), Pipeline(platform, victor)
    outsider = Pipeline(platform, platform.token_for(bob))

    release = pipeline.wait(pipeline.publish(first_run, "credit-default")["id"])
    assert release["state"] == "awaiting_approval", (release["reason"], release["gate_results"])
    gates = {gate["name"]: gate for gate in release["gate_results"]}
    assert all(gate["passed"] for gate in gates.values()), gates
    assert "pushed" in gates["lineage"]["reason"]
    assert gates["metrics"]["details"]["holdout"]["path"] == "data/holdout.csv"
    assert release["endpoints"]["staging"].endswith("/services/models/credit-default/staging/invocations")

    for name, body in FORMATS.items():
        answer = pipeline.invoke("credit-default", "staging", body)
        assert answer.status_code == 200, f"{name}: {answer.text}"
        assert len(answer.json()["predictions"]) == 2
    assert outsider.invoke("credit-default", "staging", FORMATS["inputs"]).status_code == 403

    # Four eyes: the publisher may not approve; a validator may.
    refused = pipeline.call("POST", f"releases/{release['id']}/approve", {"comment": "mine"})
    assert refused.status_code == 403, refused.text
    approved = validator.call("POST", f"releases/{release['id']}/approve", {"comment": "reviewed"})
    assert approved.status_code == 200, approved.text
    release = pipeline.wait(release["id"], {"production", "failed"})
    assert release["state"] == "production" and release["approver"] == "victor"
    assert pipeline.invoke("credit-default", "production", FORMATS["dataframe_split"]).status_code == 200
    assert outsider.invoke("credit-default", "production", FORMATS["inputs"]).status_code == 403

    second = pipeline.wait(pipeline.publish(second_run, "credit-default")["id"])
    assert second["state"] == "awaiting_approval", second
    assert validator.call("POST", f"releases/{second['id']}/approve", {"comment": "ok"}).status_code == 200
    second = pipeline.wait(second["id"], {"production", "failed"})
    assert second["state"] == "production" and second["version"] != release["version"]

    rollback = pipeline.call("POST", "models/credit-default/rollback", {"reason": "worse on last week's loans"})
    assert rollback.status_code == 200, rollback.text
    assert rollback.json()["restored"]["version"] == release["version"]
    served = validator.call("GET", "endpoints").json()["endpoints"]
    production = next(e for e in served if e["model"] == "credit-default" and e["stage"] == "production")
    assert production["version"] == release["version"]
    assert pipeline.invoke("credit-default", "production", FORMATS["instances"]).status_code == 200


def test_consumer_system_calls_the_production_endpoints_it_is_granted(platform, carol):
    # loan-origination: a hub service of the catalog's consumers, granted credit-default only.
    token = (platform.data_dir / "secrets" / "consumers" / "loan-origination.token").read_text().strip()
    consumer = Pipeline(platform, token)
    answer = consumer.invoke("credit-default", "production", FORMATS["dataframe_records"])
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    assert consumer.invoke("credit-default", "staging", FORMATS["inputs"]).status_code == 403
    assert consumer.call("GET", "releases").status_code == 401, "a consumer reaches endpoints, not the pipeline API"


def test_registry_holds_versions_aliases_and_lineage_tags(platform, carol):
    token, _ = carol
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": TEAM}
    url = f"{platform.url}/services/mlflow/api/2.0/mlflow/registered-models/alias"
    production = requests.get(
        url, params={"name": "credit-default", "alias": "production"}, headers=headers, timeout=30
    )
    assert production.status_code == 200, production.text
    tags = {tag["key"]: tag["value"] for tag in production.json()["model_version"]["tags"]}
    assert tags["mlopshub.team"] == TEAM and tags["mlopshub.publisher"] == "carol"
    assert tags["mlopshub.approver"] == "victor"
    assert len(tags["mlopshub.git.commit"]) == 40 and "mlopshub.data.data/loans.csv" in tags


#: An uncommitted change to the code: a module the notebook imports, written but never committed.
UNCOMMITTED = r"""
import os, subprocess
os.chdir(os.path.expanduser("~/credit"))
with open("features.py", "w") as f:
    f.write("COLUMNS = ['amount', 'income']\n")
print(subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip())
"""


def git_in(platform, token, *args: str) -> str:
    """``git <args>`` in carol's ~/credit, as carol."""
    code = f"import os, subprocess; os.chdir(os.path.expanduser('~/credit')); print(subprocess.run({['git', *args]!r}, "
    code += "capture_output=True, text=True, check=True).stdout, end='')"
    return platform.execute("carol", token, code)


def test_a_notebook_trained_on_uncommitted_code_publishes_and_lineage_names_its_snapshot(platform, carol):
    token, _ = carol
    assert "project ready" in platform.execute("carol", token, make_project(seed=3))
    head = platform.execute("carol", token, UNCOMMITTED).strip()
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    kernel = platform.open_notebook("carol", token, "credit/train.ipynb", notebook, "python3")

    def user_state() -> tuple[set[str], str]:
        return set(git_in(platform, token, "status", "--porcelain").splitlines()), git_in(
            platform, token, "branch", "-v"
        )

    status, branches = user_state()
    status.add("?? __pycache__/")  # importing features.py writes it; no snapshot does
    code = train(1.0).replace(
        'features = frame[["amount", "income"]]', "from features import COLUMNS\nfeatures = frame[COLUMNS]"
    )
    assert "from features import COLUMNS" in code
    run_id = platform.run_in_kernel("carol", token, kernel, code, 120).strip().splitlines()[-1]

    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": TEAM}
    run = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers=headers,
        timeout=30,
    )
    tags = {tag["key"]: tag["value"] for tag in run.json()["run"]["data"]["tags"]}
    snapshot = tags["mlopshub.git.commit"]
    assert tags["mlopshub.git.snapshot"] == "true" and tags["mlopshub.git.head"] == head and snapshot != head
    # The snapshot holds the untracked module and notebook, by carol; her branch, index and files are as they were.
    files = git_in(platform, token, "ls-tree", "-r", "--name-only", snapshot).split()
    assert {"features.py", "train.ipynb", "data/loans.csv.dvc"} <= set(files)
    assert "data/loans.csv" not in files and not [n for n in files if n.startswith((".ipynb", "__pycache__/"))]
    assert (
        git_in(platform, token, "log", "-1", "--format=%an <%ae>", snapshot).strip() == "carol <carol@users.mlopshub>"
    )
    assert user_state() == (status, branches) and "?? features.py" in status
    assert git_in(platform, token, "rev-parse", "HEAD") == f"{head}\n"

    pipeline = Pipeline(platform, token)
    release = pipeline.wait(pipeline.publish(run_id, "credit-snapshot")["id"])
    gates = {gate["name"]: gate for gate in release["gate_results"]}
    assert release["state"] == "awaiting_approval", (release["reason"], gates)
    lineage = gates["lineage"]
    assert lineage["passed"] and lineage["details"]["commit"] == snapshot and lineage["details"]["snapshot"] is True
    assert lineage["reason"].startswith(f"code at snapshot commit {snapshot[:12]} (uncommitted changes on {head[:12]})")
    assert lineage["details"]["head"] == head and lineage["details"]["branch"] == "main"


def test_unpushed_data_fails_the_lineage_gate_and_nothing_is_served(platform, carol):
    token, _ = carol
    assert "project ready" in platform.execute("carol", token, make_project(seed=2, push=False))
    run_id = platform.execute("carol", token, train(1.0)).strip().splitlines()[-1]
    pipeline = Pipeline(platform, token)
    release = pipeline.wait(pipeline.publish(run_id, "credit-unpushed")["id"])
    assert release["state"] == "gates_failed"
    lineage = next(gate for gate in release["gate_results"] if gate["name"] == "lineage")
    assert not lineage["passed"] and "not in the team's DVC remote" in lineage["reason"]
    assert lineage["fix"] == "push the data: dvc push"
    assert pipeline.invoke("credit-unpushed", "staging", FORMATS["inputs"]).status_code == 404


def test_a_second_member_pushes_to_the_team_remote_the_first_one_started(platform, carol):
    # The remote's folders were made by carol's first push; erin's versions go into the same folders.
    platform.add_user("erin", TEAM)
    platform.start("erin", "python-cpu")
    try:
        token = platform.token_for("erin")
        assert "project ready" in platform.execute("erin", token, make_project(seed=1))
        assert "project ready" in platform.execute("erin", token, make_project(seed=7))
    finally:
        platform.stop("erin")


def test_another_teams_model_and_bad_requests_are_refused(platform, carol, bob):
    _, (run_id, _) = carol
    outsider = Pipeline(platform, platform.token_for(bob))
    body = {"model_uri": f"runs:/{run_id}/model", "name": "stolen", "kind": "online"}
    refused = outsider.call("POST", "releases", body)
    assert refused.status_code == 403 and TEAM in refused.json()["message"]
    malformed = Pipeline(platform, carol[0]).call("POST", "releases", {**body, "kind": "realtime"})
    assert malformed.status_code == 422 and malformed.json()["field"] == "kind"
    assert requests.get(f"{outsider.base}/releases", timeout=30).status_code == 401


def test_audit_log_holds_every_step_and_exports_csv(platform, carol, victor):
    validator = Pipeline(platform, victor)
    events = validator.call("GET", "audit").json()
    actions = {(event["actor"], event["action"]) for event in events}
    assert ("carol", "registered") in actions and ("victor", "approved") in actions
    assert ("carol", "approval refused") in actions and ("carol", "rolled back") in actions
    assert any(action == "gates failed" for _, action in actions)
    exported = validator.call("GET", "audit?format=csv")
    assert exported.headers["Content-Type"].startswith("text/csv") and "victor" in exported.text
    assert Pipeline(platform, carol[0]).call("GET", "audit").status_code == 403
