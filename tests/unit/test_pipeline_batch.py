"""Batch releases end to end on one machine: a real MLflow server, a git + DVC project, real scoring processes.

The service, its small hub endpoint and the MLflow server are those of
test_pipeline_service_flow.py. A batch model is published with the
DVC-tracked CSV it scores; staging is one scoring run, production puts its
schedule in force, and runs can be started on demand.
"""

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from pipeline_harness import LINEAGE
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_pipeline_service_flow import Service, tracking  # noqa: F401 (tracking is a fixture)

from mlopshub.pipeline.release import _release
from mlopshub.services.pipeline.runner import _output_name, read_output
from mlopshub.services.pipeline.scheduler import BatchScheduler
from mlopshub.serving.sandbox import KEEP

MODEL = "loans-batch"
INPUT = "data/new_loans.csv"
SCHEDULE = "0 6 * * *"
GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project (branch main) with the input to score versioned by DVC; the training data and hold-out."""
    features, label = make_classification(
        n_samples=400, n_features=4, n_informative=3, n_redundant=0, n_clusters_per_class=1, random_state=1
    )
    frame = pd.DataFrame(features, columns=["income", "debt", "age", "tenure"]).assign(default=label)
    # In the publisher's home: the pipeline reads only its publisher's own projects.
    homes = tmp_path_factory.mktemp("homes")
    root = homes / "ann" / "credit"
    (root / "data").mkdir(parents=True)
    frame.iloc[300:].drop(columns="default").to_csv(root / INPUT, index=False)
    env = {**os.environ, **GIT, "DVC_NO_ANALYTICS": "1"}
    for args in (
        ["git", "init", "-q", "-b", "main"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "add", "-q", INPUT],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "input to score"],
    ):
        subprocess.run(args, cwd=root, env=env, check=True, capture_output=True)
    md5 = next(line.split()[-1] for line in (root / f"{INPUT}.dvc").read_text().splitlines() if "md5" in line)
    holdout = frame.iloc[300:].reset_index(drop=True)
    return {"root": root, "homes": homes, "train": frame.iloc[:300], "holdout": holdout, "md5": md5}


@pytest.fixture(scope="module")
def runs(tracking, project):  # noqa: F811 (the imported fixture)
    """Two versions' runs, trained in the project (the run's mlopshub.project tag names it)."""
    x = project["train"].drop(columns="default")
    uris = []
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(tracking)
        experiment = mlflow.create_experiment("batch-loans")
        for c in (1.0, 0.3):
            model = LogisticRegression(C=c).fit(x, project["train"]["default"])
            tags = {**LINEAGE, "mlopshub.project": str(project["root"])}
            with mlflow.start_run(experiment_id=experiment, tags=tags) as run:
                example = {"input_example": x.head(3), "pip_requirements": ["scikit-learn"]}
                mlflow.sklearn.log_model(model, name="model", **example)
            uris.append(f"runs:/{run.info.run_id}/model")
        mlflow.set_tracking_uri(None)
    return uris


@pytest.fixture(scope="module")
def service(tmp_path_factory, tracking, project):  # noqa: F811
    running = Service(tmp_path_factory.mktemp("pipeline"), tracking, project["holdout"], homes=project["homes"])
    yield running
    running.close()


def batch_body(uri: str, **batch) -> dict:
    spec = {"input": INPUT, "rev": "main", "schedule": SCHEDULE, **batch}
    return {"model_uri": uri, "name": MODEL, "kind": "batch", "description": "scores new loans", "batch": spec}


def scheduler_tick(service: Service, scheduler: BatchScheduler, now: datetime) -> list[dict]:
    async def tick() -> list[dict]:
        return list(await asyncio.gather(*scheduler.tick(now)))

    return service.call(tick())


# --- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "batch", "field"),
    [
        ("batch", None, "batch"),
        ("online", {"input": INPUT}, "batch"),
        ("batch", "data/new_loans.csv", "batch"),
        ("batch", {"rev": "main"}, "batch.input"),
        ("batch", {"input": "../other-team/loans.csv"}, "batch.input"),
        ("batch", {"input": "/etc/passwd"}, "batch.input"),
        ("batch", {"input": "--help"}, "batch.input"),
        ("batch", {"input": INPUT, "rev": "--upload-pack=touch /tmp/x"}, "batch.rev"),
        ("batch", {"input": INPUT, "rev": "main..v2"}, "batch.rev"),
        ("batch", {"input": INPUT, "schedule": "daily"}, "batch.schedule"),
        ("batch", {"input": INPUT, "schedule": "61 6 * * *"}, "batch.schedule"),
        ("batch", {"input": INPUT, "repo": 3}, "batch.repo"),
        ("batch", {"input": INPUT, "colour": "red"}, "batch.colour"),
    ],
)
def test_bad_batch_settings_are_422_naming_the_field(service, kind, batch, field):
    body = {"model_uri": "runs:/abc/model", "name": MODEL, "kind": kind}
    if batch is not None:
        body["batch"] = batch
    response = service.api("POST", "releases", "ann", body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and field in response.json()["message"]


def test_a_release_recorded_before_batch_releases_still_loads():
    old = {
        "id": "rel-1", "model_name": "m", "version": "1", "model_uri": "runs:/r/model", "run_id": "r",
        "team": "t", "kind": "online", "description": "", "publisher": "ann", "state": "production", "steps": [],
    }  # fmt: skip
    assert _release(json.dumps(old)).batch is None


# --- the flow ----------------------------------------------------------------------------------------------------


def test_batch_release_staging_run_approval_schedule_on_demand_and_rollback(service, runs, project):
    published = service.api("POST", "releases", "ann", batch_body(runs[0]))
    assert published.status_code == 201, published.text
    release = service.wait_for(published.json()["id"], "awaiting_approval", timeout=180)
    assert release["batch"] == {"input": INPUT, "rev": "main", "schedule": SCHEDULE, "repo": None}

    # Staging: one scoring run model risk can inspect, recorded on the release.
    staging = Path(release["endpoints"]["staging"])
    assert staging.parent == service.runner.batch_output_dir(MODEL, "staging") and staging.is_file()
    scored = pd.read_csv(staging)
    assert "prediction" in scored.columns and len(scored) == 100
    record = json.loads(staging.with_suffix(".json").read_text())
    assert record["model_uri"] == f"models:/{MODEL}/1"
    assert record["input"] == {"path": INPUT, "rev": "main", "md5": project["md5"], "rows": 100}
    assert record["repo"] == str(project["root"])

    # Only the team and validators may run it; to others it is a model that does not exist (no existence oracle).
    unknown = service.api("POST", "models/no-such-model/runs", "bob", {"stage": "staging"})
    for foreign in (
        service.api("POST", f"models/{MODEL}/runs", "bob", {"stage": "staging"}),
        service.api("GET", f"models/{MODEL}/runs", "bob"),
    ):
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json()["message"] == unknown.json()["message"].replace("no-such-model", MODEL)
    assert service.api("POST", f"models/{MODEL}/runs", "ann", {"stage": "production"}).status_code == 409
    assert service.api("POST", f"models/{MODEL}/runs", "ann", {"stage": "canary"}).json()["field"] == "stage"
    assert service.api("POST", "models/nobody/runs", "ann", {}).status_code == 404

    assert service.api("POST", f"releases/{release['id']}/approve", "val", {"comment": "outputs checked"}).ok
    release = service.wait_for(release["id"], "production")
    assert release["endpoints"]["production"] == str(service.runner.batch_output_dir(MODEL, "production"))

    # On demand: the production version scores the input now.
    answer = service.api("POST", f"models/{MODEL}/runs", "ann", {"stage": "production"})
    assert answer.status_code == 200, answer.text
    run = answer.json()["run"]
    assert run["status"] == "succeeded" and run["version"] == "1" and run["actor"] == "ann"
    output = Path(run["output"])
    assert output.parent == service.runner.batch_output_dir(MODEL, "production") and output.is_file()
    assert run["record"]["model_uri"] == f"models:/{MODEL}/1" and run["record"]["input"]["md5"] == project["md5"]
    listed = service.api("GET", f"models/{MODEL}/runs", "val").json()["runs"]
    assert [(r["stage"], r["status"]) for r in listed] == [("production", "succeeded"), ("staging", "succeeded")]
    assert listed[0]["input_md5"] == project["md5"] and listed[0]["rows"] == 100
    # The scored rows through the API (the output folder is the team's model account's, not the workspaces').
    scored = service.api("GET", f"models/{MODEL}/runs/{run['run']}/output", "ann")
    assert scored.status_code == 200 and scored.headers["Content-Type"] == "text/csv"
    assert scored.content == output.read_bytes()
    assert service.api("GET", f"models/{MODEL}/runs/{run['run']}/output", "bob").status_code == 404
    assert service.api("GET", f"models/{MODEL}/runs/brun-000000000000/output", "ann").status_code == 404
    # Monitoring captured the run's 100 rows and predictions as one record of production.
    monitored = service.api("GET", f"monitoring/{MODEL}?stage=production", "ann")
    assert monitored.status_code == 200, monitored.text
    assert monitored.json()["capture"]["captured"] == 1 and monitored.json()["traffic"]["requests"] == 1

    # The schedule: due at 06:00 UTC, once per minute, not at 06:01.
    scheduler = BatchScheduler(service.runner)
    six = datetime(2025, 1, 6, 6, 0, 5, tzinfo=UTC)
    scheduled = scheduler_tick(service, scheduler, six)
    assert [(r["version"], r["actor"], r["status"]) for r in scheduled] == [("1", "pipeline", "succeeded")]
    assert scheduler_tick(service, scheduler, six.replace(second=40)) == []
    assert scheduler_tick(service, scheduler, six.replace(minute=1)) == []

    # A second version, then a rollback: the schedule runs version 1 again.
    # By the project's owner: the pipeline reads a release's input from its publisher's own projects only.
    second = service.api("POST", "releases", "ann", batch_body(runs[1]))
    assert second.status_code == 201, second.text
    service.wait_for(second.json()["id"], "awaiting_approval", timeout=180)
    assert service.api("POST", f"releases/{second.json()['id']}/approve", "val", {"comment": "v2 checked"}).ok
    service.wait_for(second.json()["id"], "production")
    assert [r.version for r in scheduler.due(six.replace(day=7))] == ["2"]
    rolled = service.api("POST", f"models/{MODEL}/rollback", "val", {"reason": "v2 scores drift"})
    assert rolled.status_code == 200, rolled.text
    assert [r.version for r in scheduler.due(six.replace(day=8))] == ["1"]

    actions = [e["action"] for e in service.api("GET", "audit", "val").json() if e["model"] == MODEL]
    assert actions.count("batch run") == 4 and "schedule active" in actions and "schedule switched" in actions


def test_a_failed_run_is_recorded_with_its_reason(service, project):
    release = service.runner.store.production(MODEL)
    assert release is not None
    broken = replace(release, batch={**release.batch, "input": "data/missing.csv"})

    async def run() -> dict:
        return await service.runner.start_batch(broken, "production", "val")

    result = service.call(run())
    assert result["status"] == "failed" and "missing.csv" in result["reason"]
    latest = service.api("GET", f"models/{MODEL}/runs", "val").json()["runs"][0]
    assert latest["status"] == "failed" and "missing.csv" in latest["reason"]


@pytest.mark.parametrize(
    "repo",
    [
        "{other}",  # another user's project (say, another team's)
        "{own}/../../bob/credit",  # a way out of the publisher's home
        "{own}/escape",  # a symlink in the publisher's project to another user's
        "file://{other}",  # a git URL naming a local folder
        "credit",  # relative
    ],
)
def test_only_the_publishers_own_projects_are_read(service, project, repo):
    # A run tag or batch.repo is written by a workspace: the pipeline reads only the publisher's own home.
    other = project["homes"] / "bob" / "credit"
    other.mkdir(parents=True, exist_ok=True)
    escape = project["root"] / "escape"
    if not escape.is_symlink():
        escape.symlink_to(other)
    release = service.runner.store.production(MODEL)
    elsewhere = replace(release, batch={**release.batch, "repo": repo.format(other=other, own=project["root"])})

    async def run() -> dict:
        return await service.runner.start_batch(elsewhere, "production", "val")

    result = service.call(run())
    assert result["status"] == "failed", result
    assert "ProjectRefused" in result["reason"] and "ann" in result["reason"], result["reason"]


def test_the_scoring_process_gets_arguments_and_no_secrets(service, project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    release = service.runner.store.production(MODEL)
    call = service.runner._batch_command(release, "production")
    assert set(call.env) <= {*KEEP, "HOME", "DVC_NO_ANALYTICS"} and "secret" not in call.env.values()
    assert call.argv[1:4] == ["-m", "mlopshub.serving.batch", "--model-uri"]
    assert Path(call.argv[4]).joinpath("MLmodel").is_file(), "the pipeline's local copy of the version"
    assert call.argv[call.argv.index("--record-uri") + 1] == f"models:/{MODEL}/{release.version}"
    assert f"--input={INPUT}" in call.argv and "--rev=main" in call.argv
    # The pipeline read the input at its version; the scoring process gets the rows and the DVC hash.
    assert call.argv[call.argv.index("--input-md5") + 1] == project["md5"]
    for path in call.cleanup:
        path.unlink()


def test_every_route_of_the_api_is_in_the_openapi_document(service):
    import re

    spec = requests.get(f"{service.url}/services/pipeline/openapi.json", timeout=10).json()
    documented = {re.sub(r"\{[^}]+\}", "x", path) for path in spec["paths"]}
    for path in ("/api/models/x/runs", "/api/models/x/rollback", "/api/releases/x/approve"):
        assert path in documented
    assert spec["components"]["schemas"]["PublishRequest"]["properties"]["batch"]


def test_a_scoring_process_cannot_make_the_pipeline_read_outside_its_output_folder(tmp_path):
    # The scoring process runs model code as the team's model account, which writes the output folder.
    folder = tmp_path / "out"
    folder.mkdir()
    secret = tmp_path / "admin-token"
    secret.write_text("s3cr3t")
    (folder / "x.json").symlink_to(secret)
    (folder / "y.json").write_text("{}")
    with pytest.raises(FileNotFoundError):
        read_output(folder, "x.json", limit=100)
    with pytest.raises(FileNotFoundError):
        read_output(folder, "../admin-token", limit=100)
    assert read_output(folder, "y.json", limit=100) == b"{}"
    with pytest.raises(RuntimeError, match="not a CSV in its output folder"):
        _output_name(tmp_path / "elsewhere.csv", folder)
    assert _output_name(folder / "y-model-1.csv", folder) == "y-model-1.csv"
