"""helm-values/platform/: the MLflow and CloudNativePG values are accepted by the charts they are written for.

Each file is merged over the chart's defaults and validated against its schema,
as Helm does before it renders (see tests/chart_values.py); then what the
chart's templates would demand of the merged values (``required`` ones) and
what mlopshub needs of MLflow (its auth database in PostgreSQL, the team
workspaces closed by default, our image) is checked on the values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_values import CNPG_CLUSTER, MLFLOW, VALUES_DIR, load_yaml

from mlopshub import helm, images

MLFLOW_VALUES = VALUES_DIR / "platform" / "mlflow.yaml"
POSTGRESQL_VALUES = VALUES_DIR / "platform" / "postgresql.yaml"
PIPELINE = VALUES_DIR / "platform" / "manifests" / "pipeline.yaml"


def needs(chart):
    return pytest.mark.skipif(chart.missing() is not None, reason=chart.missing() or "")


@needs(MLFLOW)
def test_mlflow_values_validate_against_the_chart_schema_over_its_defaults():
    assert MLFLOW.errors(MLFLOW_VALUES) == []


@needs(CNPG_CLUSTER)
def test_postgresql_values_validate_against_the_cnpg_cluster_chart_schema_over_its_defaults():
    assert CNPG_CLUSTER.errors(POSTGRESQL_VALUES) == []


@needs(MLFLOW)
def test_the_mlflow_chart_schema_refuses_an_unknown_auth_key_naming_it():
    errors = MLFLOW.errors(MLFLOW_VALUES, {"auth": {"externalAuthSecret": {"name": "x", "key": "y"}}})
    assert len(errors) == 1 and errors[0].startswith("auth: ") and "'externalAuthSecret'" in errors[0]


@needs(MLFLOW)
def test_mlflow_admin_comes_from_the_secret_the_pipeline_signs_in_with():
    # The chart `required`s auth.adminUsername/adminPassword unless existingAdminSecret names a Secret.
    auth = MLFLOW.values(MLFLOW_VALUES)["auth"]
    assert auth["enabled"] is True
    assert auth["adminPassword"] == "", "no password in the values"
    pipeline_env = {e["name"]: e for e in _pipeline_container()["env"]}
    pipeline_secret = pipeline_env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]
    assert auth["existingAdminSecret"]["name"] == pipeline_secret["name"]
    assert auth["existingAdminSecret"]["usernameKey"] == pipeline_secret["key"]


@needs(MLFLOW)
def test_mlflow_auth_store_is_the_postgresql_database_made_for_it():
    # Without auth.postgres the chart writes `database_uri = sqlite:///basic_auth.db` into the pod.
    auth = MLFLOW.values(MLFLOW_VALUES)["auth"]
    postgres = auth["postgres"]
    assert postgres["enabled"] is True
    assert (postgres["host"], postgres["port"]) == ("mlopshub-db-rw", 5432)
    assert postgres["user"] == postgres["password"] == "", "credentials come from the Secret"
    cnpg = load_yaml(POSTGRESQL_VALUES)["cluster"]
    assert f"CREATE DATABASE {postgres['database']} OWNER mlflow" in cnpg["initdb"]["postInitSQL"]
    assert postgres["existingSecret"]["name"] in {r["passwordSecret"]["name"] for r in cnpg["roles"]}
    assert auth["authorizationFunction"] == "mlopshub.services.mlflow_auth:authenticate"
    assert auth["appName"] == "mlopshub"


@needs(MLFLOW)
def test_mlflow_auth_ini_is_completed_by_mlopshub_after_the_chart_writes_it():
    # The chart's ini has no grant_default_workspace_access; our init container, after the chart's, adds it.
    values = MLFLOW.values(MLFLOW_VALUES)
    (init,) = values["initContainers"]
    assert init["command"][:3] == ["python", "-m", "mlopshub.services.mlflow_auth_ini"]
    # The chart mounts the ini-file volume's auth_result.ini at configPath/configFile and writes it at /config.
    assert init["command"][3] == "/config/auth_result.ini"
    assert {"name": "ini-file", "mountPath": "/config"} in init["volumeMounts"]
    assert init["image"] == images.image_ref("hub")


@needs(MLFLOW)
def test_mlflow_and_its_migrations_run_the_hub_image_with_the_workspaces_mlflow():
    values = MLFLOW.values(MLFLOW_VALUES)
    name, tag = helm.split_image(images.image_ref("hub"))
    assert (values["image"]["repository"], values["image"]["tag"]) == (name, tag)
    # `mlflow db upgrade` must be the server's MLflow, not the chart's appVersion image.
    migration = values["initImages"]["mlflowDbMigration"]
    assert (migration["repository"], migration["tag"]) == (name, tag)


def _pipeline_container() -> dict:
    import yaml

    deployment = next(d for d in yaml.safe_load_all(PIPELINE.read_text()) if d and d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_peer_chart_paths_are_named_in_the_skip_reason(tmp_path: Path):
    from chart_values import Chart

    absent = Chart("x", tmp_path / "values.schema.json", tmp_path / "values.yaml", "somewhere, commit 1")
    assert str(tmp_path / "values.schema.json") in (absent.missing() or "")
    assert "somewhere, commit 1" in (absent.missing() or "")
