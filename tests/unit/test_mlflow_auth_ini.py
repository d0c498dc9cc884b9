"""The MLflow chart's auth ini, completed by mlopshub's init container: team workspaces closed, a lasting store."""

from __future__ import annotations

import subprocess
import sys

from mlflow.server.auth import config as mlflow_auth_config

# What the chart's ini-file-initializer writes (templates/auth_ini_configmap.yaml, 1.11.5), passwords substituted.
CHART_INI = """[mlflow]
default_permission = READ
database_uri = postgresql+psycopg2://mlflow:p4ssw0rd@mlopshub-db-rw:5432/mlflow_auth
admin_username = mlopshub-admin
admin_password = s3cr3t
authorization_function = mlopshub.services.mlflow_auth:authenticate
"""
SQLITE_INI = CHART_INI.replace(
    "postgresql+psycopg2://mlflow:p4ssw0rd@mlopshub-db-rw:5432/mlflow_auth", "sqlite:///basic_auth.db"
)


def run(path):
    return subprocess.run(
        [sys.executable, "-m", "mlopshub.services.mlflow_auth_ini", str(path)], capture_output=True, text=True
    )


def test_mlflow_reads_the_completed_ini_with_workspaces_closed_and_the_chart_settings_kept(tmp_path, monkeypatch):
    ini = tmp_path / "auth_result.ini"
    ini.write_text(CHART_INI)
    done = run(ini)
    assert done.returncode == 0, done.stderr
    assert "s3cr" not in done.stdout + done.stderr and "w0rd" not in done.stdout + done.stderr
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    read = mlflow_auth_config.read_auth_config()
    assert read.grant_default_workspace_access is False
    assert "grant_default_workspace_access = false" in ini.read_text()
    assert read.database_uri == "postgresql+psycopg2://mlflow:p4ssw0rd@mlopshub-db-rw:5432/mlflow_auth"
    assert (read.admin_username, read.admin_password) == ("mlopshub-admin", "s3cr3t")
    assert read.authorization_function == "mlopshub.services.mlflow_auth:authenticate"


def test_an_ini_granting_default_workspace_access_is_closed_and_a_second_run_changes_nothing(tmp_path):
    ini = tmp_path / "auth_result.ini"
    ini.write_text(CHART_INI + "grant_default_workspace_access = true\n")
    assert run(ini).returncode == 0
    once = ini.read_text()
    assert "grant_default_workspace_access = false" in once and "= true" not in once
    assert run(ini).returncode == 0
    assert ini.read_text() == once


def test_the_charts_sqlite_fallback_stops_the_pod_naming_the_setting(tmp_path):
    ini = tmp_path / "auth_result.ini"
    ini.write_text(SQLITE_INI)
    done = run(ini)
    assert done.returncode == 1
    assert "database_uri is a sqlite store" in done.stderr and "auth.postgres" in done.stderr
    assert ini.read_text() == SQLITE_INI
    assert "s3cr" not in done.stderr


def test_a_password_mlflow_could_not_read_is_refused_naming_the_key_not_the_value(tmp_path):
    ini = tmp_path / "auth_result.ini"
    ini.write_text(CHART_INI.replace("s3cr3t", "s3cr%t"))
    done = run(ini)
    assert done.returncode == 1
    assert "admin_password has a '%'" in done.stderr and "s3cr" not in done.stderr


def test_a_missing_section_or_file_is_named(tmp_path):
    ini = tmp_path / "auth_result.ini"
    ini.write_text("[other]\na = 1\n")
    done = run(ini)
    assert done.returncode == 1 and "no [mlflow] section" in done.stderr
    done = run(tmp_path / "absent.ini")
    assert done.returncode == 1 and "absent.ini" in done.stderr
