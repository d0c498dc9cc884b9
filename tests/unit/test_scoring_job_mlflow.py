"""Batch scoring Jobs reach MLflow in-cluster, under its prefix, with a token that opens their team's workspace only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chart_values import MLFLOW, VALUES_DIR

from mlopshub.services import mlflow_auth
from mlopshub.serving import kserve


def job_env(team: str) -> dict[str, dict]:
    job = kserve.batch_job("credit", "3", "models:/credit/3", team, "data/in.csv", "v1", "/scores/credit/staging")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def cronjob_env(team: str) -> dict[str, dict]:
    cron = kserve.batch_cronjob("credit", "3", "models:/credit/3", team, "data/in.csv", "v1", "/s", "0 6 * * *")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("env_of", [job_env, cronjob_env], ids=["Job", "CronJob"])
def test_a_scoring_job_carries_its_teams_mlflow_token_and_workspace(env_of):
    for team in ("sme-credit", "retail-scoring"):
        env = env_of(team)
        assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": f"models-{team}-mlflow",
            "key": "token",
        }
        assert env["MLFLOW_WORKSPACE"]["value"] == team
        assert "value" not in env["MLFLOW_TRACKING_TOKEN"], "never a token in the manifest"


@pytest.mark.skipif(MLFLOW.missing() is not None, reason=str(MLFLOW.missing()))
def test_a_scoring_job_calls_mlflows_service_under_the_prefix_mlflow_serves_at():
    values = MLFLOW.values(VALUES_DIR / "platform" / "mlflow.yaml")
    url = job_env("sme-credit")["MLFLOW_TRACKING_URI"]["value"]
    host = f"{values['fullnameOverride']}.mlopshub.svc:{values['service']['port']}"
    assert url == f"http://{host}{values['extraArgs']['staticPrefix']}"
    # MLflow refuses a Host header it does not list (--allowed-hosts).
    assert host in values["extraArgs"]["allowedHosts"].split(",")


@pytest.mark.skipif(MLFLOW.missing() is not None, reason=str(MLFLOW.missing()))
def test_mlflow_reads_the_teams_job_tokens_where_the_secret_is_mounted():
    values = MLFLOW.values(VALUES_DIR / "platform" / "mlflow.yaml")
    folder = values["extraEnvVars"][mlflow_auth.MODEL_TOKENS_ENV]
    mounts = {m["name"]: m["mountPath"] for m in values["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in values["extraVolumes"]}
    (name,) = [n for n, path in mounts.items() if path == folder]
    assert volumes[name]["secret"]["secretName"] == "mlopshub-models-mlflow-tokens"


def secret_volume(folder: Path, tokens: dict[str, str]) -> Path:
    """The layout kubelet gives a mounted Secret: ..data -> a timestamped folder, one link per key."""
    data = folder / "..2026_12_02_10_00_00.000000001"
    data.mkdir(parents=True)
    for key, value in tokens.items():
        (data / key).write_text(value)
    os.symlink(data.name, folder / "..data")
    for key in tokens:
        os.symlink(f"..data/{key}", folder / key)
    return folder


def test_a_job_token_opens_its_team_only(tmp_path):
    folder = secret_volume(tmp_path / "tokens", {"sme-credit": "a" * 64 + "\n", "retail-scoring": "b" * 64})
    assert mlflow_auth.model_token_team("a" * 64, folder) == "sme-credit"
    assert mlflow_auth.model_token_team("b" * 64, folder) == "retail-scoring"
    assert mlflow_auth.model_token_team("c" * 64, folder) is None
    assert mlflow_auth.model_token_team("a" * 63, folder) is None


def test_no_folder_or_an_empty_token_never_matches(tmp_path):
    assert mlflow_auth.model_token_team("a" * 64, None) is None
    assert mlflow_auth.model_token_team("a" * 64, tmp_path / "absent") is None
    folder = secret_volume(tmp_path / "tokens", {"sme-credit": ""})
    assert mlflow_auth.model_token_team("", folder) is None


def test_mlflow_under_its_prefix_answers_the_charts_probe_path(monkeypatch):
    # The MLflow chart probes /health; MLflow under --static-prefix answers only <prefix>/health.
    from flask import Flask
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    monkeypatch.setenv(STATIC_PREFIX_ENV_VAR, "/services/mlflow")
    app = Flask("mlflow-like")
    mlflow_auth.add_root_health(app)
    mlflow_auth.add_root_health(app)  # the factory may run once per worker: adding twice is harmless
    client = app.test_client()
    answer = client.get("/health")
    assert (answer.status_code, answer.text) == (200, "OK")


def test_without_a_prefix_mlflows_own_health_route_is_left_alone(monkeypatch):
    from flask import Flask
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    monkeypatch.delenv(STATIC_PREFIX_ENV_VAR, raising=False)
    app = Flask("mlflow-like")
    mlflow_auth.add_root_health(app)
    assert app.test_client().get("/health").status_code == 404
