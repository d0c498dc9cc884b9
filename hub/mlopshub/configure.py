"""Apply mlopshub to a JupyterHub config: one small function per concern.

``configure(c)`` is what ``jupyterhub_config.py`` (and z2jh's
``hub.extraConfig``) calls. ``apply(settings, runtime, c)`` is pure apart
from reading the hub database for existing group properties: it is tested
against a bare ``traitlets.config.Config``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import Config

from . import access, catalog, logs
from .settings import Settings, from_env, gpu_available

ADMIN_SERVICE = "mlopshub-admin"
MLFLOW_SERVICE = "mlflow"
PIPELINE_SERVICE = "pipeline"
#: Online model endpoints: answered by the pipeline's process, which switches them.
MODELS_SERVICE = "models"
CULLER_SERVICE = "idle-culler"
#: Stops a running workspace whose user left a team it started with (mlopshub.services.membership).
MEMBERSHIP_SERVICE = "membership"
#: The MLflow auth store's own admin: a name no hub user can have (it holds a space).
MLFLOW_ADMIN_NAME = "mlopshub admin"

#: Scopes of a workspace's $JUPYTERHUB_API_TOKEN (also its MLflow token).
SERVER_TOKEN_SCOPES = [
    "access:servers!server",
    "users:activity!user",
    "read:users:name!user",
    "read:users:groups!user",
    f"access:services!service={MLFLOW_SERVICE}",
    # The sidebar publishes, approves and reads releases for its user: the token gets what of these the
    # user holds (JupyterHub keeps only the owner's own scopes); the services apply publish to the user's teams.
    f"access:services!service={PIPELINE_SERVICE}",
    f"access:services!service={MODELS_SERVICE}",
    "custom:mlopshub:publish",
    "custom:mlopshub:approve",
    "custom:mlopshub:read-releases",
]


@dataclass(frozen=True)
class Runtime:
    """What a start of the platform decided: internal ports and secrets (never in logs)."""

    hub_port: int
    proxy_api_port: int
    mlflow_port: int
    admin_token: str
    mlflow_admin_password: str
    mlflow_secret_key: str
    crypt_key: str
    #: The hub token of MLflow (one machine: generated into the secrets; Kubernetes: the chart's).
    mlflow_service_token: str = ""
    pipeline_port: int = 0
    #: One machine: the pipeline's hub token (generated into the secrets).
    pipeline_service_token: str = ""
    existing_group_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Consumer system name -> its hub API token (one machine; on Kubernetes the chart's services).
    consumer_tokens: dict[str, str] = field(default_factory=dict)
    #: One machine: the proxy's API token (the supervisor runs the proxy, the hub configures its routes).
    proxy_auth_token: str = ""
    #: One machine: the models service (mlopshub.serving.gateway), its port and hub token.
    models_port: int = 0
    models_service_token: str = ""


def apply_hub(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Addresses, database, cookie secret, the proxy."""
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = runtime.hub_port
    # The supervisor runs the proxy (mlopshub.proxy): a hub crash or restart keeps it and its routes.
    c.JupyterHub.proxy_class = "mlopshub.proxy.SupervisedProxy"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{runtime.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = runtime.proxy_auth_token
    c.JupyterHub.db_url = f"sqlite:///{settings.data_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(settings.secrets_dir / "cookie-secret")
    c.JupyterHub.pid_file = str(settings.run_dir / "hub.pid")
    # Workspaces outlive a hub restart (`mlopshub restart`, a crash); `mlopshub down` stops them through the
    # hub's API before it stops the hub (mlopshub.supervisor).
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.default_url = "/hub/spawn"
    # Activity feeds the culler: ask the proxy more often than the 5-minute default.
    c.JupyterHub.last_activity_interval = min(300, max(10, settings.cull_every))


def apply_auth(settings: Settings, runtime: Runtime, cat: catalog.Catalog, c: Config) -> None:
    """OIDC when an issuer is set (in both modes); passwords kept by the hub otherwise."""
    if runtime.crypt_key:  # on Kubernetes, JUPYTERHUB_CRYPT_KEY comes from a secret
        c.CryptKeeper.keys = [bytes.fromhex(runtime.crypt_key)]
    if settings.oidc_issuer:
        from .oidc import apply_oidc

        apply_oidc(settings, cat, c)
        return
    c.JupyterHub.authenticator_class = "mlopshub.auth.LocalAuthenticator"
    c.Authenticator.admin_users = {settings.admin_user}
    # Everyone an admin authorized may sign in; what they may start is up to their teams.
    c.Authenticator.allow_all = True
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.minimum_password_length = 10
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 60


#: Roles of the services that only one-machine mode runs (z2jh brings its own culler).
LOCAL_SERVICE_ROLES: list[dict[str, Any]] = [
    {
        "name": "mlopshub-admin-service",
        "scopes": [
            "admin:users",
            "admin:groups",
            "admin:servers",
            "admin:auth_state",
            "tokens",
            "read:roles",
            "list:services",
            "read:services",
        ],
        "services": [ADMIN_SERVICE],
    },
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": [CULLER_SERVICE],
    },
]


def apply_access(settings: Settings, runtime: Runtime, cat: catalog.Catalog, c: Config) -> None:
    """Teams as groups (entitlements seeded into group properties), roles and custom scopes."""
    if not settings.oidc_issuer:
        # With OIDC the IdP manages groups (JupyterHub then refuses load_groups): the
        # catalog's entitlements apply until an admin sets a group's properties.
        c.JupyterHub.load_groups = access.seed_groups(cat, runtime.existing_group_properties)
    c.JupyterHub.custom_scopes = access.CUSTOM_SCOPES
    roles = access.roles(cat, services=[MLFLOW_SERVICE, PIPELINE_SERVICE, MODELS_SERVICE])
    roles.append(
        {
            "name": "mlflow-service",
            # Groups: which are teams (those made at runtime too), so their members get the team's workspace.
            "scopes": ["read:users:groups", "read:users:name", "list:users", "list:groups", "read:groups"],
            "services": [MLFLOW_SERVICE],
        }
    )
    # The pipeline reads who a token belongs to and what it may do (HubAuth needs no more).
    roles.append(
        {
            "name": "pipeline-service",
            "scopes": ["read:users:groups", "read:users:name"],
            "services": [PIPELINE_SERVICE, MODELS_SERVICE] if settings.mode == "local" else [PIPELINE_SERVICE],
        }
    )
    # The Teams API (platform admins): make and change team groups, see who runs what (mlopshub.services.pipeline
    # .team_admin). The pipeline only: the models service holds no more than the role above.
    roles.append(
        {
            "name": "pipeline-teams",
            "scopes": ["admin:groups", "list:users", "read:users", "read:servers", "admin:server_state"],
            "services": [PIPELINE_SERVICE],
        }
    )
    roles.append(MEMBERSHIP_ROLE)
    if settings.mode == "local":
        roles += LOCAL_SERVICE_ROLES
        roles += consumer_roles(cat)
    # Add to what the chart (or an admin's config) already defined, e.g. z2jh's culler role.
    existing = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    c.JupyterHub.load_roles = [*existing, *roles]


def apply_local_spawner(settings: Settings, cat: catalog.Catalog, c: Config) -> None:
    """The local process spawner with the catalog, its form and its enforcement."""
    from .spawners import default_cmd, make_apply_profile

    gpus = gpu_available(settings)
    c.JupyterHub.spawner_class = "mlopshub.spawners.LocalWorkspaceSpawner"
    c.LocalWorkspaceSpawner.catalog = cat
    c.LocalWorkspaceSpawner.gpu_available = gpus
    c.LocalWorkspaceSpawner.homes_dir = str(settings.homes_dir)
    c.LocalWorkspaceSpawner.remotes_dir = str(settings.data_dir / "dvc-remotes")
    c.LocalWorkspaceSpawner.mlflow_url = f"{settings.public_url}/services/{MLFLOW_SERVICE}"
    c.Spawner.apply_user_options = make_apply_profile(cat, gpus)
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    c.Spawner.cmd = default_cmd()
    c.Spawner.default_url = "/lab"
    # Git never looks above a home for a repository: with the data dir inside a clone (`make up`'s ./.mlopshub),
    # git in a home that is no repository found the clone, owned by another account, and failed ("dubious
    # ownership"): jupyterlab-git answered 500 to every show_prefix of the file browser.
    c.Spawner.environment = {"GIT_CEILING_DIRECTORIES": str(settings.homes_dir)}
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 180
    # Keep the environment lean and explicit: workspace settings come from the profile.
    c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "R_LIBS_USER"]


#: What JupyterHub passes on from its own environment to a service it runs (``LocalProcessSpawner.env_keep``).
SERVICE_ENV_KEEP = (
    "CONDA_DEFAULT_ENV",
    "CONDA_ROOT",
    "JUPYTERHUB_SINGLEUSER_APP",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)


@dataclass(frozen=True)
class ServiceProcess:
    """A hub service that the platform runs itself (mlopshub.supervisor), not the hub: how to run it.

    The hub sees it as an external service (a ``url`` and an ``api_token``, no ``command``), so a slow start
    (MLflow's migrations) or a restart never makes the hub give up; :func:`service_environment` gives it what
    JupyterHub would have given a managed service.
    """

    name: str
    url: str
    api_token: str
    command: list[str]
    #: The service's own variables (JupyterHub's ``environment`` of a service spec).
    environment: dict[str, str]

    @property
    def prefix(self) -> str:
        return f"/services/{self.name}/"

    @property
    def health_url(self) -> str:
        """Where the service says it is up, on its own address (not through the proxy)."""
        return f"{self.url}{self.prefix}health"

    def spec(self) -> dict[str, Any]:
        """The hub's service spec: the proxy routes ``prefix`` to ``url``; the token authenticates the service."""
        return {"name": self.name, "url": self.url, "api_token": self.api_token}


def hub_api_url(runtime: Runtime) -> str:
    """The hub's REST API on its internal address, as services reach it."""
    return f"http://127.0.0.1:{runtime.hub_port}/hub/api"


def service_environment(service: ServiceProcess, runtime: Runtime, inherited: Mapping[str, str]) -> dict[str, str]:
    """The environment JupyterHub 5 gives a managed service (``Service.start``, ``Spawner.get_env``).

    Only ``SERVICE_ENV_KEEP`` of ``inherited`` (the platform's own environment) is passed on, then the
    ``JUPYTERHUB_*`` variables ``HubAuth``/``HubOAuth`` read, then the service's own variables, last.
    """
    access_scopes = json.dumps(["access:services", f"access:services!service={service.name}"])
    env = {key: inherited[key] for key in SERVICE_ENV_KEEP if key in inherited}
    env.update(
        {
            "JUPYTERHUB_API_TOKEN": service.api_token,
            "JUPYTERHUB_API_URL": hub_api_url(runtime),
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_CLIENT_ID": f"service-{service.name}",
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{service.prefix}oauth_callback",
            "JUPYTERHUB_OAUTH_SCOPES": access_scopes,
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": access_scopes,
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
            "JUPYTERHUB_SERVICE_NAME": service.name,
            "JUPYTERHUB_SERVICE_URL": service.url,
            "JUPYTERHUB_SERVICE_PREFIX": service.prefix,
            "JUPYTERHUB_USER": "",
            "JUPYTERHUB_SERVER_NAME": "",
        }
    )
    env.update(service.environment)
    return env


def mlflow_backend_uri(settings: Settings) -> str:
    """MLflow's tracking database (its migrations run before it starts: mlopshub.supervisor)."""
    return f"sqlite:///{settings.mlflow_dir / 'mlflow.sqlite'}"


def mlflow_process(settings: Settings, runtime: Runtime) -> ServiceProcess:
    """MLflow at /services/mlflow/, one workspace per team, run by the platform (see :class:`ServiceProcess`)."""
    store = settings.mlflow_dir
    auth_ini = settings.secrets_dir / "mlflow-auth.ini"
    return ServiceProcess(
        name=MLFLOW_SERVICE,
        url=f"http://127.0.0.1:{runtime.mlflow_port}",
        api_token=runtime.mlflow_service_token,
        command=[
            sys.executable,
            "-m",
            "mlopshub.services.mlflow_server",
            "--app-name",
            "mlopshub",
            "--enable-workspaces",
            "--backend-store-uri",
            mlflow_backend_uri(settings),
            "--artifacts-destination",
            str(store / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(runtime.mlflow_port),
            "--workers",
            "1",
            # Longer than the proxy keeps an idle connection: uvicorn's default (5 s) closed connections the
            # proxy was reusing ("socket hang up", a 503 to the caller).
            "--uvicorn-opts",
            "--timeout-keep-alive 75",
            "--static-prefix",
            f"/services/{MLFLOW_SERVICE}",
            "--allowed-hosts",
            f"127.0.0.1:{runtime.mlflow_port},localhost:{runtime.mlflow_port},"
            f"{settings.ip}:{settings.port},localhost:{settings.port},127.0.0.1:{settings.port}",
        ],
        environment={
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": runtime.mlflow_secret_key,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLOPSHUB_CATALOG": str(settings.catalog_dir),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
    )


#: A browser opening the MLflow UI signs in through the hub's OAuth like at any hub service
#: (mlopshub.services.mlflow_auth): the hub sends it back here, and asks no "authorize this service?" question
#: (MLflow is part of the platform). Listed in the hub's Services menu.
MLFLOW_OAUTH = {
    "display": True,
    "oauth_no_confirm": True,
    "oauth_redirect_uri": f"/services/{MLFLOW_SERVICE}/oauth_callback",
}


def apply_mlflow(settings: Settings, runtime: Runtime) -> dict[str, Any]:
    """MLflow's hub service spec: external to the hub (the platform runs it, :func:`mlflow_process`)."""
    return {**mlflow_process(settings, runtime).spec(), **MLFLOW_OAUTH}


def pipeline_process(settings: Settings, runtime: Runtime) -> ServiceProcess:
    """The release pipeline, run by the platform (see :class:`ServiceProcess`).

    The pipeline reaches MLflow directly (not through the proxy) as the MLflow auth store's admin: it
    registers versions in every team's workspace. It switches endpoints through the models service's control
    socket (:func:`models_process`).
    """
    from .serving.gateway import control_socket

    return ServiceProcess(
        name=PIPELINE_SERVICE,
        url=f"http://127.0.0.1:{runtime.pipeline_port}",
        api_token=runtime.pipeline_service_token,
        command=[sys.executable, "-m", "mlopshub.services.pipeline"],
        environment={
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{runtime.mlflow_port}/services/{MLFLOW_SERVICE}",
            "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN_NAME,
            "MLFLOW_TRACKING_PASSWORD": runtime.mlflow_admin_password,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLOPSHUB_CATALOG": str(settings.catalog_dir),
            "MLOPSHUB_PIPELINE_DIR": str(settings.pipeline_dir),
            "MLOPSHUB_DVC_REMOTES": str(settings.data_dir / "dvc-remotes"),
            "MLOPSHUB_HOMES": str(settings.homes_dir),
            "MLOPSHUB_PUBLIC_URL": settings.public_url,
            "MLOPSHUB_MODELS_PREFIX": f"/services/{MODELS_SERVICE}/",
            "MLOPSHUB_SERVING_SOCKET": str(control_socket(settings.pipeline_dir)),
            "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
    )


def models_process(settings: Settings, runtime: Runtime) -> ServiceProcess:
    """The models service: the endpoints' data path, apart from the pipeline (:mod:`mlopshub.serving.gateway`).

    It serves what the pipeline switched through its control socket, from the pipeline's sealed model copies,
    and keeps serving while the pipeline or MLflow restarts.
    """
    return ServiceProcess(
        name=MODELS_SERVICE,
        url=f"http://127.0.0.1:{runtime.models_port}",
        api_token=runtime.models_service_token,
        command=[sys.executable, "-m", "mlopshub.serving.gateway"],
        environment={
            "MLOPSHUB_CATALOG": str(settings.catalog_dir),
            "MLOPSHUB_PIPELINE_DIR": str(settings.pipeline_dir),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
    )


#: The Teams page (mlopshub.services.pipeline.teams_page) and the monitoring report sign users in through the hub's
#: OAuth, like the MLflow UI. The token may carry (only for users who hold them) the scope that manages teams, and
#: what the report's reader rule needs: model risk's read-releases, or the user's own groups with publish.
PIPELINE_OAUTH = {
    "oauth_no_confirm": True,
    "oauth_redirect_uri": f"/services/{PIPELINE_SERVICE}/oauth_callback",
    "oauth_client_allowed_scopes": [
        "custom:mlopshub:manage-teams",
        "custom:mlopshub:read-releases",
        "custom:mlopshub:publish",
        "read:users:groups!user",
    ],
}
#: The hub's page templates with a Teams link in the navigation bar (for those who may manage teams).
TEMPLATES = Path(__file__).resolve().parent / "templates"


def apply_templates(c: Config) -> None:
    """Our templates before the hub's own (and any the chart or an admin set)."""
    existing = list(c.JupyterHub.template_paths) if "template_paths" in c.JupyterHub else []
    c.JupyterHub.template_paths = [str(TEMPLATES), *[p for p in existing if p != str(TEMPLATES)]]


def apply_pipeline(settings: Settings, runtime: Runtime) -> list[dict[str, Any]]:
    """The hub service specs of the release pipeline (:func:`pipeline_process`) and of the model endpoints
    (:func:`models_process`), both external: the platform runs them. Consumer systems are granted
    ``access:services!service=models`` alone."""
    pipeline = {**pipeline_process(settings, runtime).spec(), "display": False, **PIPELINE_OAUTH}
    models = {**models_process(settings, runtime).spec(), "display": False}
    return [pipeline, models]


def consumer_services(cat: catalog.Catalog, runtime: Runtime) -> list[dict[str, Any]]:
    """Consumer systems as hub services, each with its token (see :func:`consumer_roles` for what it may reach)."""
    return [{"name": name, "api_token": runtime.consumer_tokens[name], "display": False} for name in cat.consumers]


def consumer_roles(cat: catalog.Catalog) -> list[dict[str, Any]]:
    """Each consumer system may reach the models service; which models is the pipeline's check (the catalog's
    ``consumers.<name>.models``), the hub only lets its token through."""
    return [
        {
            "name": f"consumer-{name}",
            "description": f"Consumer system {name}: calls production endpoints of the models it is granted",
            "scopes": [f"access:services!service={MODELS_SERVICE}"],
            "services": [name],
        }
        for name in cat.consumers
    ]


def mlflow_auth_ini(settings: Settings, runtime: Runtime) -> str:
    """MLflow's auth config: our hub-token authorization function, no access outside team workspaces."""
    return "\n".join(
        [
            "[mlflow]",
            "default_permission = READ",
            f"database_uri = sqlite:///{settings.mlflow_dir / 'auth.sqlite'}",
            f"admin_username = {MLFLOW_ADMIN_NAME}",
            f"admin_password = {runtime.mlflow_admin_password}",
            "authorization_function = mlopshub.services.mlflow_auth:authenticate",
            "grant_default_workspace_access = false",
            "",
        ]
    )


def apply_culler(settings: Settings) -> dict[str, Any] | None:
    """jupyterhub-idle-culler as a hub service, when a timeout is set."""
    if not settings.cull_timeout:
        return None
    return {
        "name": CULLER_SERVICE,
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={settings.cull_timeout}",
            f"--cull-every={settings.cull_every}",
            "--concurrency=5",
        ],
    }


#: What the membership service may do: see who runs which server with which teams, and stop a server.
MEMBERSHIP_ROLE: dict[str, Any] = {
    "name": "membership-service",
    "scopes": ["list:users", "read:users:groups", "read:servers", "admin:server_state", "delete:servers"],
    "services": [MEMBERSHIP_SERVICE],
}


def apply_membership(settings: Settings) -> dict[str, Any]:
    """The membership service: a member removed from a team loses the team's Unix group (or volume) within
    about a second, by having the workspaces that started with it stopped. In both modes, inside the hub."""
    environment = {
        "MLOPSHUB_CATALOG": str(settings.catalog_dir),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    if settings.mode == "local":
        environment["MLOPSHUB_MEMBERSHIP_LOG"] = str(settings.logs_dir / "membership.log")
    return {
        "name": MEMBERSHIP_SERVICE,
        "command": [sys.executable, "-m", "mlopshub.services.membership"],
        "environment": environment,
        "display": False,
    }


def apply_kubernetes_mode(settings: Settings, runtime: Runtime, cat: catalog.Catalog, c: Config) -> None:
    """On the Zero to JupyterHub chart: the chart owns addresses, database, proxy and culling."""
    from .kubernetes import apply_kubernetes

    mlflow_url = settings.mlflow_internal_url
    existing = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    # Workspaces call MLflow and the pipeline at their in-cluster Services, under the prefix the proxy serves
    # them at, with their hub token: not at the public host, which may resolve to an address the user pods'
    # NetworkPolicy closes (privateIPs: false).
    pipeline = next((s["url"] for s in existing if s.get("name") == PIPELINE_SERVICE and s.get("url")), None)
    # (Without the chart's hub.services.pipeline, the only address known is the public one.)
    pipeline_url = f"{(pipeline or settings.public_url).rstrip('/')}/services/{PIPELINE_SERVICE}/api"
    apply_kubernetes(cat, f"{mlflow_url.rstrip('/')}/services/{MLFLOW_SERVICE}", c, pipeline_url)
    mlflow = {"name": MLFLOW_SERVICE, "url": mlflow_url, **MLFLOW_OAUTH}
    if runtime.mlflow_service_token:
        mlflow["api_token"] = runtime.mlflow_service_token
    c.JupyterHub.services = [*existing, mlflow, apply_membership(settings)]


def apply_local_mode(settings: Settings, runtime: Runtime, cat: catalog.Catalog, c: Config) -> None:
    """One machine: addresses, local spawner; MLflow and the pipeline as external services (the platform runs
    them, mlopshub.supervisor), the membership service and the culler as hub-managed ones."""
    apply_hub(settings, runtime, c)
    apply_local_spawner(settings, cat, c)
    services = [
        {"name": ADMIN_SERVICE, "api_token": runtime.admin_token, "display": False},
        apply_mlflow(settings, runtime),
        *apply_pipeline(settings, runtime),
        *consumer_services(cat, runtime),
        apply_membership(settings),
    ]
    culler = apply_culler(settings)
    if culler:
        services.append(culler)
    c.JupyterHub.services = services


def apply(settings: Settings, runtime: Runtime, c: Config) -> Config:
    """Configure ``c`` for mlopshub; raises :class:`catalog.CatalogError` on a bad catalog."""
    cat = catalog.load(settings.catalog_dir)
    if settings.mode == "kubernetes":
        apply_kubernetes_mode(settings, runtime, cat, c)
    else:
        apply_local_mode(settings, runtime, cat, c)
    apply_auth(settings, runtime, cat, c)
    apply_access(settings, runtime, cat, c)
    apply_templates(c)
    logs.apply_bounded_logging(c)
    return c


def existing_group_properties(db_url: str) -> dict[str, dict[str, Any]]:
    """Group properties as the hub database holds them now (empty on a first start).

    Read through JupyterHub's own model (``orm.Group``: its table, its JSON column), but not through
    ``orm.new_session_factory``: that creates and stamps a missing database and refuses one at an older
    schema revision until ``jupyterhub upgrade-db`` has run. This read happens while the config loads,
    before the hub (or ``upgrade-db``) opens the database: it must change nothing, and must read an older
    schema too, or the start that upgrades it would seed the catalog's values over what admins set.
    A database without the groups table or its properties column reads as empty.
    """
    import sqlalchemy
    from jupyterhub import orm
    from sqlalchemy.orm import Session

    if db_url.startswith("sqlite:///") and not Path(db_url.removeprefix("sqlite:///")).exists():
        return {}
    engine = sqlalchemy.create_engine(db_url)
    try:
        with Session(engine) as db:
            rows = db.execute(sqlalchemy.select(orm.Group.name, orm.Group.properties)).all()
    except sqlalchemy.exc.SQLAlchemyError:
        return {}
    finally:
        engine.dispose()
    return {name: properties or {} for name, properties in rows}


def kubernetes_runtime(settings: Settings, existing: dict[str, dict[str, Any]]) -> Runtime:
    """On Kubernetes the chart and its secrets provide ports and keys; only service tokens come from env."""
    return Runtime(
        hub_port=0,
        proxy_api_port=0,
        mlflow_port=0,
        admin_token="",
        mlflow_admin_password="",
        mlflow_secret_key="",
        crypt_key="",
        mlflow_service_token=settings.mlflow_service_token,
        existing_group_properties=existing,
    )


def configure(c: Config) -> Config:
    """Entry point for ``jupyterhub_config.py`` and z2jh's ``hub.extraConfig``."""
    settings = from_env()
    if settings.mode == "kubernetes":
        db_url = c.JupyterHub.db_url if "db_url" in c.JupyterHub else "sqlite:///jupyterhub.sqlite"
        return apply(settings, kubernetes_runtime(settings, existing_group_properties(db_url)), c)
    from .launcher import load_runtime

    db_url = f"sqlite:///{settings.data_dir / 'jupyterhub.sqlite'}"
    return apply(settings, load_runtime(settings, existing_group_properties(db_url)), c)


__all__ = [
    "Runtime",
    "ServiceProcess",
    "apply",
    "mlflow_process",
    "pipeline_process",
    "service_environment",
    "configure",
    "existing_group_properties",
    "mlflow_auth_ini",
]
