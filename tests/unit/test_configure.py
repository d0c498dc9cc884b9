"""configure.apply against a bare traitlets Config: one small test per concern (TLJH's habit)."""

import importlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from traitlets.config import Config

from mlopshub import settings

# The package exports the configure() function under the module's name.
configure = importlib.import_module("mlopshub.configure")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local(tmp_path) -> settings.Settings:
    return settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path), "MLOPSHUB_PORT": "8123", "MLOPSHUB_GPU": "no"})


RUNTIME = configure.Runtime(
    hub_port=10001,
    proxy_api_port=10002,
    mlflow_port=10003,
    admin_token="a" * 48,
    mlflow_admin_password="p",
    mlflow_secret_key="s",
    crypt_key="00" * 32,
    consumer_tokens={"loan-origination": "c" * 64},
    mlflow_service_token="m" * 64,
    pipeline_service_token="q" * 64,
)


def apply(s: settings.Settings, runtime: configure.Runtime = RUNTIME, c: Config | None = None) -> Config:
    return configure.apply(s, runtime, c or Config())


def services(c: Config) -> dict[str, dict]:
    return {service["name"]: service for service in c.JupyterHub.services}


def test_local_mode_serves_the_public_port_and_picked_internal_ports(local):
    c = apply(local)
    assert (c.JupyterHub.ip, c.JupyterHub.port, c.JupyterHub.hub_port) == ("127.0.0.1", 8123, 10001)
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:10002"
    assert c.JupyterHub.db_url == f"sqlite:///{local.data_dir / 'jupyterhub.sqlite'}"


def test_local_mode_uses_the_catalog_spawner_and_refusal_hook(local):
    c = apply(local)
    assert c.JupyterHub.spawner_class == "mlopshub.spawners.LocalWorkspaceSpawner"
    assert callable(c.Spawner.apply_user_options)
    assert c.LocalWorkspaceSpawner.mlflow_url == "http://127.0.0.1:8123/services/mlflow"
    assert "access:services!service=mlflow" in c.Spawner.server_token_scopes


def test_mlflow_runs_lean_with_team_workspaces(local):
    mlflow = configure.mlflow_process(local, RUNTIME)
    command = mlflow.command
    assert command[1:3] == ["-m", "mlopshub.services.mlflow_server"]
    assert command[command.index("--app-name") + 1] == "mlopshub"
    assert "--enable-workspaces" in command and command[command.index("--workers") + 1] == "1"
    assert command[command.index("--backend-store-uri") + 1] == configure.mlflow_backend_uri(local)
    assert mlflow.environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow.health_url == "http://127.0.0.1:10003/services/mlflow/health"


@pytest.mark.parametrize("name", ["mlflow", "pipeline"])
def test_mlflow_and_the_pipeline_are_external_services_with_their_own_tokens(local, name):
    runtime = replace(RUNTIME, pipeline_port=10004)
    service = services(apply(local, runtime))[name]
    assert "command" not in service and "environment" not in service
    assert service["api_token"] == {"mlflow": "m" * 64, "pipeline": "q" * 64}[name]
    assert service["url"] == {"mlflow": "http://127.0.0.1:10003", "pipeline": "http://127.0.0.1:10004"}[name]


def test_services_run_by_the_platform_get_what_jupyterhub_gives_a_managed_service(local):
    """The variables HubAuth and HubOAuth read, as JupyterHub 5's Service.start and Spawner.get_env set them."""
    runtime = replace(RUNTIME, pipeline_port=10004)
    pipeline = configure.pipeline_process(local, runtime)
    inherited = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "MLOPSHUB_ADMIN_TOKEN": "secret", "HOME": "/root"}
    env = configure.service_environment(pipeline, runtime, inherited)
    assert {key: env[key] for key in env if key.startswith("JUPYTERHUB_")} == {
        "JUPYTERHUB_API_TOKEN": "q" * 64,
        "JUPYTERHUB_API_URL": "http://127.0.0.1:10001/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": "service-pipeline",
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/pipeline/oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": '["access:services", "access:services!service=pipeline"]',
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services", "access:services!service=pipeline"]',
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_SERVICE_NAME": "pipeline",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10004",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/pipeline/",
        "JUPYTERHUB_USER": "",
        "JUPYTERHUB_SERVER_NAME": "",
    }
    # Of the platform's own environment only what JupyterHub keeps: no admin token, no HOME.
    assert (env["PATH"], env["LANG"]) == ("/usr/bin", "C.UTF-8")
    assert "MLOPSHUB_ADMIN_TOKEN" not in env and "HOME" not in env
    # The service's own variables come last.
    assert env["PYTHONPATH"] == str(REPO / "hub")


def test_the_pipeline_keeps_its_roles_as_an_external_service(local):
    c = apply(local)
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    # The models service checks endpoint callers' tokens and teams as the pipeline did.
    assert roles["pipeline-service"]["services"] == ["pipeline", "models"]
    assert set(roles["pipeline-service"]["scopes"]) == {"read:users:groups", "read:users:name"}
    assert roles["mlflow-service"]["services"] == ["mlflow"]


def test_admin_token_is_a_service_token_not_in_any_command(local):
    c = apply(local)
    assert services(c)["mlopshub-admin"]["api_token"] == RUNTIME.admin_token
    assert all(RUNTIME.admin_token not in " ".join(s.get("command", [])) for s in c.JupyterHub.services)


@pytest.mark.parametrize(("timeout", "present"), [("600", True), ("0", False)])
def test_culler_runs_only_with_a_timeout(tmp_path, timeout, present):
    s = settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path), "MLOPSHUB_CULL_TIMEOUT": timeout})
    culler = services(apply(s)).get("idle-culler")
    assert (culler is not None) == present
    if culler:
        assert "--timeout=600" in culler["command"]


def test_groups_seeded_and_roles_defined(local):
    c = apply(local)
    assert c.JupyterHub.load_groups["sme-credit"]["properties"]["profiles"] == ["python-cpu", "python-gpu"]
    assert set(c.JupyterHub.custom_scopes) >= {"custom:mlopshub:publish", "custom:mlopshub:approve"}
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["idle-culler"]["services"] == ["idle-culler"]
    assert "access:services!service=pipeline" in roles["user"]["scopes"]


def test_local_passwords_by_default(local):
    c = apply(local)
    assert c.JupyterHub.authenticator_class == "mlopshub.auth.LocalAuthenticator"
    assert c.Authenticator.admin_users == {"admin"}
    assert c.NativeAuthenticator.open_signup is False


def test_invalid_catalog_refuses_to_configure(local, tmp_path):
    (tmp_path / "teams.yaml").write_text("teams: {x1: {profiles: [nope]}}\nprofiles: []\n")
    from mlopshub.catalog import CatalogError

    with pytest.raises(CatalogError):
        apply(replace(local, catalog_dir=tmp_path))


def test_oidc_configures_the_provider_without_asking_it(local):
    # The hub must start while the single sign-on is down: nothing listens on port 9.
    c = apply(replace(local, oidc_issuer="http://127.0.0.1:9", oidc_client_id="hub", oidc_client_secret="s"))
    assert c.JupyterHub.authenticator_class == "mlopshub.oidc.OIDCAuthenticator"
    assert c.OIDCAuthenticator.oidc_issuer == "http://127.0.0.1:9"
    assert "authorize_url" not in c.OIDCAuthenticator  # read from the provider at the first sign-in
    assert c.OIDCAuthenticator.manage_groups is True
    assert c.OIDCAuthenticator.allowed_groups == {"sme-credit", "retail-scoring", "model-validators", "platform-admins"}
    assert c.OIDCAuthenticator.admin_groups == {"platform-admins"}
    assert "load_groups" not in c.JupyterHub  # the IdP manages groups


def test_an_issuer_that_is_no_url_stops_the_hub_naming_the_setting(local):
    with pytest.raises(ValueError, match="MLOPSHUB_OIDC_ISSUER 'sso.bank.test'"):
        apply(replace(local, oidc_issuer="sso.bank.test", oidc_client_id="hub"))


def test_kubernetes_mode_leaves_addresses_to_the_chart_and_keeps_its_services_and_roles(tmp_path):
    s = settings.from_env(
        {
            "MLOPSHUB_MODE": "kubernetes",
            "MLOPSHUB_DATA_DIR": str(tmp_path),
            "MLOPSHUB_PUBLIC_URL": "https://mlops.bank.test",
            "MLOPSHUB_MLFLOW_URL": "http://mlflow.mlopshub.svc:5000",
        }
    )
    c = Config()
    # As helm-values/jupyterhub.yaml registers them (hub.services).
    c.JupyterHub.services = [{"name": "pipeline", "url": "http://p"}, {"name": "models", "url": "http://p"}]
    c.JupyterHub.load_roles = [{"name": "jupyterhub-idle-culler", "services": ["jupyterhub-idle-culler"]}]
    apply(s, configure.kubernetes_runtime(s, {}), c)
    role_services = {svc for role in c.JupyterHub.load_roles for svc in role.get("services", [])}
    # Only services that exist there.
    assert role_services == {"jupyterhub-idle-culler", "mlflow", "pipeline", "membership"}
    assert c.JupyterHub.spawner_class == "mlopshub.kubernetes.CatalogKubeSpawner"
    assert callable(c.KubeSpawner.profile_list)
    assert "hub_port" not in c.JupyterHub and "db_url" not in c.JupyterHub
    assert [svc["name"] for svc in c.JupyterHub.services] == ["pipeline", "models", "mlflow", "membership"]
    assert services(c)["mlflow"]["url"] == "http://mlflow.mlopshub.svc:5000"
    # Workspaces use the in-cluster Services, under the prefix the proxy serves them at.
    assert c.CatalogKubeSpawner.mlflow_url == "http://mlflow.mlopshub.svc:5000/services/mlflow"
    assert c.CatalogKubeSpawner.pipeline_url == "http://p/services/pipeline/api"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLOPSHUB_PORT": "eighty"}, "MLOPSHUB_PORT: expected a port number"),
        ({"MLOPSHUB_MODE": "cloud"}, "MLOPSHUB_MODE: expected 'local' or 'kubernetes'"),
        ({"MLOPSHUB_CULL_TIMEOUT": "-5"}, "MLOPSHUB_CULL_TIMEOUT: expected a whole number"),
        ({"MLOPSHUB_GPU": "maybe"}, "MLOPSHUB_GPU: expected"),
        ({"MLOPSHUB_START_TIMEOUT": "0"}, "MLOPSHUB_START_TIMEOUT: expected a positive number of seconds"),
        ({"MLOPSHUB_START_TIMEOUT": "soon"}, "MLOPSHUB_START_TIMEOUT: expected a positive number of seconds"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        settings.from_env(env)


#: Made in a child process: JupyterHub's alembic environment reconfigures logging in the process that runs it.
HUB_DATABASE = """
import json, sys
import alembic.command, alembic.config
from jupyterhub import dbutil, orm

url, groups, revision, ini = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
db = orm.new_session_factory(url)()
db.add_all(orm.Group(name=name, properties=properties) for name, properties in groups.items())
db.commit()
db.get_bind().dispose()
if revision != "head":
    dbutil.write_alembic_ini(ini, url)
    alembic.command.downgrade(alembic.config.Config(ini), revision)
"""
#: JupyterHub 4's schema, as a hub runs on it after an upgrade of the package and before ``upgrade-db``.
JUPYTERHUB_4_REVISION = "3c2384c5aae1"


def hub_database(tmp_path: Path, groups: dict, revision: str = "head") -> str:
    """A hub database written by JupyterHub itself, at ``revision`` of its schema."""
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    args = [url, json.dumps(groups), revision, str(tmp_path / "alembic.ini")]
    subprocess.run([sys.executable, "-c", HUB_DATABASE, *args], check=True, capture_output=True, cwd=tmp_path)
    return url


def schema_revision(url: str) -> str:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_existing_group_properties_read_from_the_hub_database(tmp_path):
    url = hub_database(tmp_path, {"sme-credit": {"profiles": ["python-cpu"], "quotas.memory": "64G"}, "empty": {}})
    assert configure.existing_group_properties(url) == {
        "sme-credit": {"profiles": ["python-cpu"], "quotas.memory": "64G"},
        "empty": {},
    }


def test_a_first_start_reads_no_group_properties_and_creates_no_database(tmp_path):
    missing = tmp_path / "jupyterhub.sqlite"
    assert configure.existing_group_properties(f"sqlite:///{missing}") == {}
    assert not missing.exists()


def test_group_properties_are_read_from_an_older_schema_before_upgrade_db(tmp_path):
    # An admin's quota must survive the start that upgrades the database: the catalog seeds under it.
    from jupyterhub import orm

    url = hub_database(tmp_path, {"sme-credit": {"quotas.memory": "64G"}}, JUPYTERHUB_4_REVISION)
    with pytest.raises(orm.DatabaseSchemaMismatch):
        orm.new_session_factory(url)  # why the hub's session factory is not used to read it
    assert configure.existing_group_properties(url) == {"sme-credit": {"quotas.memory": "64G"}}
    assert schema_revision(url) == JUPYTERHUB_4_REVISION  # left for upgrade-db, untouched


def test_a_hub_database_without_group_properties_reads_as_none(tmp_path):
    # As JupyterHub 1 left it: groups had no properties column.
    url = hub_database(tmp_path, {"sme-credit": {}})
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("ALTER TABLE groups DROP COLUMN properties")
    assert configure.existing_group_properties(url) == {}


def test_mlflow_is_an_oauth_client_of_the_hub_in_both_modes(local, tmp_path):
    # A browser opening /services/mlflow/ signs in through the hub and comes back to MLflow's callback.
    kubernetes = settings.from_env({"MLOPSHUB_MODE": "kubernetes", "MLOPSHUB_DATA_DIR": str(tmp_path)})
    for spec in (
        services(apply(local))["mlflow"],
        services(apply(kubernetes, configure.kubernetes_runtime(kubernetes, {})))["mlflow"],
    ):
        assert spec["oauth_redirect_uri"] == "/services/mlflow/oauth_callback"
        assert spec["oauth_no_confirm"] is True and spec["display"] is True
    env = configure.service_environment(configure.mlflow_process(local, RUNTIME), RUNTIME, {})
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/services/mlflow/oauth_callback"
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-mlflow"


def test_git_in_a_workspace_never_looks_above_the_homes(local):
    # With the data dir inside a clone, git in a home found the clone (another account's): "dubious ownership".
    assert apply(local).Spawner.environment == {"GIT_CEILING_DIRECTORIES": str(local.data_dir / "homes")}


def test_local_mode_runs_the_pipeline_and_the_models_service_as_processes_of_their_own(local):
    runtime = replace(RUNTIME, pipeline_port=10004, models_port=10005, models_service_token="w" * 64)
    found = services(apply(local, runtime))
    pipeline, models = found["pipeline"], found["models"]
    assert (pipeline["url"], models["url"]) == ("http://127.0.0.1:10004", "http://127.0.0.1:10005")
    assert "command" not in models and models["api_token"] == "w" * 64
    assert configure.models_process(local, runtime).command[1:] == ["-m", "mlopshub.serving.gateway"]
    process = configure.pipeline_process(local, runtime)
    assert process.command[1:] == ["-m", "mlopshub.services.pipeline"]
    env = process.environment
    # Straight to MLflow (not through the proxy), as the auth store's admin.
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:10003/services/mlflow"
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("mlopshub admin", "p")
    assert env["MLOPSHUB_PIPELINE_DIR"] == str(local.data_dir / "pipeline")
    assert env["MLOPSHUB_DVC_REMOTES"] == str(local.data_dir / "dvc-remotes")
    assert env["MLOPSHUB_SERVING_SOCKET"] == str(local.data_dir / "pipeline" / "control" / "serving.sock")


def test_the_hub_uses_the_supervisors_proxy_and_keeps_workspaces_when_it_stops(local):
    c = apply(local, replace(RUNTIME, proxy_auth_token="x" * 64))
    assert c.JupyterHub.proxy_class == "mlopshub.proxy.SupervisedProxy"
    assert c.ConfigurableHTTPProxy.auth_token == "x" * 64
    assert c.JupyterHub.cleanup_servers is False


def test_workspace_tokens_may_reach_the_pipeline_with_what_their_user_holds(local):
    c = apply(local)
    scopes = set(c.Spawner.server_token_scopes)
    assert {"access:services!service=pipeline", "access:services!service=models", "custom:mlopshub:publish"} <= scopes
    user = next(role for role in c.JupyterHub.load_roles if role["name"] == "user")
    assert {"access:services!service=pipeline", "access:services!service=models"} <= set(user["scopes"])


def test_consumer_systems_are_services_that_may_reach_the_models_service_only(local):
    runtime = replace(RUNTIME, consumer_tokens={"loan-origination": "t" * 64})
    c = apply(local, runtime)
    assert services(c)["loan-origination"]["api_token"] == "t" * 64
    role = next(role for role in c.JupyterHub.load_roles if role["name"] == "consumer-loan-origination")
    assert role == {
        "name": "consumer-loan-origination",
        "description": role["description"],
        "scopes": ["access:services!service=models"],
        "services": ["loan-origination"],
    }


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_membership_service_runs_in_the_hub_in_both_modes(tmp_path, mode):
    s = settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path), "MLOPSHUB_MODE": mode})
    runtime = RUNTIME if mode == "local" else configure.kubernetes_runtime(s, {})
    membership = services(apply(s, runtime))["membership"]
    assert membership["command"][1:] == ["-m", "mlopshub.services.membership"]
    assert "url" not in membership  # it only calls the hub
    assert membership["environment"]["MLOPSHUB_CATALOG"] == str(s.catalog_dir)
    assert ("MLOPSHUB_MEMBERSHIP_LOG" in membership["environment"]) == (mode == "local")


def test_membership_service_may_read_servers_and_stop_them_and_nothing_else(local):
    role = next(role for role in apply(local).JupyterHub.load_roles if role["name"] == "membership-service")
    assert role["services"] == ["membership"]
    assert set(role["scopes"]) == {
        "list:users",
        "read:users:groups",
        "read:servers",
        "admin:server_state",
        "delete:servers",
    }


@pytest.mark.parametrize(("text", "seconds"), [(None, 300.0), ("600", 600.0), ("45.5", 45.5)])
def test_start_timeout_is_a_setting_with_a_default_for_a_busy_machine(tmp_path, text, seconds):
    env = {"MLOPSHUB_DATA_DIR": str(tmp_path)} | ({"MLOPSHUB_START_TIMEOUT": text} if text else {})
    assert settings.from_env(env).start_timeout == seconds
