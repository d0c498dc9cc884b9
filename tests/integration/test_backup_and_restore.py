"""A backup of the running platform, taken while a production endpoint answers requests, restores whole.

The session's platform is backed up while it runs and serves; the backup is restored into a fresh data dir
(a stopped platform) and started there on a port of its own, and everything a user relies on is there.
"""

import json
import pwd
import re
import shutil
import threading
import time

import pytest
import requests
from platform_under_test import Platform, reachable_dir
from release_flow import FORMATS, make_project, train
from testing_support import until

pytestmark = pytest.mark.integration

TEAM = "sme-credit"
MODEL = "credit-backup"


def pipeline(platform, token: str, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(
        method,
        f"{platform.url}/services/pipeline/api/{path}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )


def score(platform, token: str) -> requests.Response:
    return requests.post(
        f"{platform.url}/services/models/{MODEL}/production/invocations",
        json=FORMATS["dataframe_split"],
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )


def mlflow(platform, token: str, path: str, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": TEAM}
    return requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}", params=params, headers=headers, timeout=60
    )


@pytest.fixture(scope="module")
def released(platform):
    """A model of sme-credit in production, published by dina from a run in MLflow and approved by vince."""
    platform.add_user("dina", TEAM)
    platform.add_user("vince", "model-validators")
    token, validator = platform.token_for("dina"), platform.token_for("vince")
    platform.start("dina", "python-cpu")
    try:
        assert "project ready" in platform.execute("dina", token, make_project(seed=5))
        run_id = platform.execute("dina", token, train(1.0)).strip().splitlines()[-1]
    finally:
        # A workspace running at the backup would be in the hub database's copy: the restored hub, on this same
        # machine, would take the source's live workspace process for its own (and stop it on its way down).
        platform.stop("dina")
    body = {"model_uri": f"runs:/{run_id}/model", "name": MODEL, "kind": "online"}
    published = pipeline(platform, token, "POST", "releases", body)
    assert published.status_code == 201, published.text
    release_id = published.json()["release"]["id"]
    state = lambda: pipeline(platform, token, "GET", f"releases/{release_id}").json()["state"]  # noqa: E731
    assert until(lambda: state() in ("awaiting_approval", "gates_failed", "failed") and state(), "gates") == (
        "awaiting_approval"
    )
    approved = pipeline(platform, validator, "POST", f"releases/{release_id}/approve", {"comment": "reviewed"})
    assert approved.status_code == 200, approved.text
    until(lambda: state() == "production", "the release in production", timeout=240)
    return {"token": token, "run_id": run_id, "release_id": release_id}


class Load:
    """Requests to the production endpoint, one after the other, until stopped; every answer's status."""

    def __init__(self, platform, token: str):
        self.platform, self.token = platform, token
        self.statuses: list[int] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.statuses.append(score(self.platform, self.token).status_code)
            except requests.RequestException:
                self.statuses.append(0)

    def __enter__(self) -> "Load":
        self.thread.start()
        until(lambda: len(self.statuses) >= 5, "requests answered before the backup")
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def test_a_backup_under_load_restores_releases_runs_models_endpoints_and_the_audit_chain(
    platform, released, tmp_path_factory
):
    token = released["token"]
    folder = tmp_path_factory.mktemp("backups") / "platform"
    with Load(platform, token) as load:
        started = time.monotonic()
        made = platform.cli("backup", str(folder))
        took = time.monotonic() - started
        during = len(load.statuses)
    assert set(load.statuses) == {200}, f"the endpoint failed while the backup ran: {load.statuses}"
    manifest = json.loads((folder / "manifest.json").read_text())
    print(
        f"\nbackup: {took:.1f}s wall ({manifest['seconds']:.1f}s copying), {manifest['bytes'] / 1e6:.1f} MB, "
        f"{sum(e['type'] == 'file' for e in manifest['entries'])} files; {during} requests answered meanwhile\n"
        f"{made.stdout}"
    )
    assert manifest["audit"]["intact"], manifest["audit"]

    refused = platform.cli("restore", str(folder), check=False)
    assert refused.returncode == 1 and f"mlopshub is running on {platform.data_dir}" in refused.stderr
    assert "mlopshub down" in refused.stderr and not list(platform.data_dir.parent.glob(f"{platform.data_dir.name}.*"))

    restored = Platform(reachable_dir(tmp_path_factory), admin_token=platform.admin_token)
    try:
        # The catalog is the checkout's profiles/, which the restore leaves alone when it is the backup's.
        done = restored.cli("restore", str(folder)).stdout
        assert "audit log intact" in done and "is the backup's" in done, done
        restored.up()

        assert until(lambda: score(restored, token).status_code == 200, "the production endpoint answering")
        release = pipeline(restored, token, "GET", f"releases/{released['release_id']}").json()
        assert release["state"] == "production", release
        run = mlflow(restored, token, "runs/get", run_id=released["run_id"])
        assert run.status_code == 200 and run.json()["run"]["info"]["status"] == "FINISHED", run.text
        alias = mlflow(restored, token, "registered-models/alias", name=MODEL, alias="production")
        assert alias.status_code == 200 and alias.json()["model_version"]["version"] == str(release["version"])
        artifacts = sorted(
            p.relative_to(platform.data_dir) for p in (platform.data_dir / "mlflow" / "artifacts").rglob("*")
        )
        assert artifacts and artifacts == sorted(
            p.relative_to(restored.data_dir) for p in (restored.data_dir / "mlflow" / "artifacts").rglob("*")
        )

        verified = re.match(r"audit log intact: (\d+) entries", restored.cli("audit", "verify").stdout)
        assert verified and int(verified[1]) >= manifest["audit"]["entries"], "the chain goes on from the backup's"
        validator = restored.token_for("vince")
        audit = {(e["actor"], e["action"]) for e in pipeline(restored, validator, "GET", "audit").json()}
        assert {("dina", "registered"), ("vince", "approved")} <= audit
        project = restored.data_dir / "homes" / "dina" / "credit" / "data" / "loans.csv.dvc"
        assert project.stat().st_uid == pwd.getpwnam("jupyter-dina").pw_uid
    finally:
        restored.down()
        shutil.rmtree(folder.parent, ignore_errors=True)
