"""Model code runs apart from the pipeline: no secrets in its environment and, as root, the team's own account."""

import asyncio
import grp
import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from mlopshub.services.pipeline.gatecheck import GATES, run_isolated
from mlopshub.serving import Endpoints
from mlopshub.serving.sandbox import TeamAccounts, account_name, model_environment, team_accounts
from mlopshub.serving.zygote import Zygotes

TEAM = "sandbox-test"
SECRETS = {"MLFLOW_TRACKING_PASSWORD": "admin-secret", "JUPYTERHUB_API_TOKEN": "hub-secret"}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching accounts needs root (CI runs as root)")


def test_model_processes_get_no_secrets_of_the_service(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    env = model_environment()
    assert not set(SECRETS) & set(env)
    assert env["PATH"] == os.environ["PATH"] and "HOME" in env


@pytest.fixture(scope="module")
def team_folder():
    """A models folder other accounts can pass through (pytest's own tmp folder is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="mlopshub-sandbox-", dir="/tmp"))
    root.chmod(0o711)
    yield root / "models"
    shutil.rmtree(root, ignore_errors=True)


def save_model(folder: Path, version: str) -> dict:
    frame = pd.DataFrame({"amount": [1.0, 5.0, 9.0, 2.0, 8.0, 7.0], "income": [9.0, 5.0, 1.0, 8.0, 2.0, 3.0]})
    label = [0, 0, 1, 0, 1, 1]
    model = LogisticRegression().fit(frame, label)
    path = folder / "credit" / version
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, path, signature=signature, input_example=frame.head(2))
    return {"path": path, "frame": frame, "label": label}


@as_root
def test_model_servers_and_gates_run_as_the_team_account_without_the_secrets(team_folder, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    accounts = team_accounts(team_folder, [TEAM])
    account = accounts[TEAM]
    assert account.uid != 0 and psutil.Process().uids().real == 0
    # Read and pass for the model account's own group, never write; no workspace (team group) may enter.
    assert oct((team_folder / TEAM).stat().st_mode & 0o7777) == "0o750"
    assert grp.getgrgid((team_folder / TEAM).stat().st_gid).gr_name == account_name(TEAM), "the account's own group"
    saved = save_model(team_folder / TEAM, "1")

    async def serve_and_inspect():
        endpoints = Endpoints(log_dir=team_folder.parent / "logs", run_as=accounts)
        try:
            endpoint = await endpoints.deploy("credit", "staging", "1", saved["path"], team=TEAM)
            server = psutil.Process(endpoint.server.pid)
            zygote = server.parent()
            body = {"dataframe_split": saved["frame"].head(2).to_dict(orient="split")}
            answer = await endpoints.upstream.fetch(
                f"{endpoint.server.url}/invocations", "POST", {"Content-Type": "application/json"},
                json.dumps(body).encode(),
            )  # fmt: skip
            return server.uids().real, zygote.uids().real, server.environ(), answer
        finally:
            await endpoints.close()

    server_uid, zygote_uid, environ, answer = asyncio.run(serve_and_inspect())
    assert server_uid == zygote_uid == account.uid
    assert not set(SECRETS) & set(environ), "the service's secrets reached the model server"
    assert answer is not None and answer.code == 200 and len(json.loads(answer.body)["predictions"]) == 2

    holdout = saved["frame"].assign(default=saved["label"])
    results = run_isolated(
        {
            "model_path": str(saved["path"]),
            "tags": {},
            "thresholds": {"auc": {"min": 0.5}},
            "holdout": {"csv": holdout.to_csv(index=False), "target": "default", "path": "h.csv", "version": "v"},
            "holdout_error": None,
            "pushed": None,
        },
        account,
    )
    by_name = {result.name: result for result in results}
    assert by_name["model_loads"].passed and by_name["metrics"].passed, by_name
    assert account_name(TEAM) == "mlopshub-m-sandbox-test"

    # The same gates forked from the team's warm zygote (what the pipeline does on one machine), as the account.
    request = team_folder / TEAM / "gates.json"
    request.write_text(
        json.dumps(
            {
                "model_path": str(saved["path"]),
                "tags": {},
                "thresholds": {"auc": {"min": 0.5}},
                "holdout": {"csv": holdout.to_csv(index=False), "target": "default", "path": "h", "version": "v"},
                "pushed": None,
            }
        )
    )
    request.chmod(0o644)

    async def gates_in_zygote():
        zygotes = Zygotes(run_as=accounts)
        try:
            answer = await zygotes.of(TEAM).call(GATES, request)
            return answer, psutil.Process(zygotes.of(TEAM).pid).uids().real
        finally:
            await zygotes.close()

    answer, zygote_uid = asyncio.run(gates_in_zygote())
    assert zygote_uid == account.uid
    assert {result["name"]: result["passed"] for result in answer} == {
        "model_loads": True,
        "signature_and_example": True,
        "lineage": False,  # no lineage tags given here
        "metrics": True,
    }


@as_root
def test_another_teams_account_cannot_read_the_model(team_folder):
    accounts = team_accounts(team_folder, [TEAM, "sandbox-other"])
    saved = save_model(team_folder / TEAM, "2")
    results = run_isolated(
        {"model_path": str(saved["path"]), "tags": {}, "thresholds": {}, "holdout": None, "pushed": None},
        accounts["sandbox-other"],
    )
    loads = next(result for result in results if result.name == "model_loads")
    assert not loads.passed and "Permission" in loads.reason


@as_root
def test_a_team_made_at_runtime_gets_its_own_account_on_first_use_never_root(team_folder):
    accounts = TeamAccounts(team_folder)
    assert len(accounts) == 0
    run_as = accounts.get("sandbox-late")  # a team made on the Teams page after the start
    assert run_as is not None and run_as.uid != 0
    assert pwd.getpwuid(run_as.uid).pw_name == account_name("sandbox-late")
    assert accounts.get("sandbox-late") == run_as and list(accounts) == ["sandbox-late"]
    # Nothing else becomes an account: a name that is no team's name gets none (and so never runs at all).
    assert accounts.get("../etc") is None and accounts.get("Root") is None
