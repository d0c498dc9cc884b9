"""One way to read mlopshub's settings: environment variables with defaults.

Every setting the platform reads is listed in :data:`SETTINGS` with its
default and what it is for; nothing else in the package reads the
environment for configuration (compare z2jh's ``get_config``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The folder two levels above this package: the repository's root when the package runs from a checkout
#: (``make up``, an editable install); anything else when it is installed (the hub image). Only
#: :func:`checkout_root` says which.
REPO_ROOT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path | None:
    """The checkout of the mlopshub repository this package runs from, or None when it is installed.

    The running platform reads nothing from a checkout: its data is package data, its catalog is
    ``MLOPSHUB_CATALOG`` (on Kubernetes, the mounted ``mlopshub-catalog`` ConfigMap). Only the developer's
    commands (build and check images, generate Helm values, the one-machine defaults) use it.
    """
    package = Path(__file__).resolve().parent
    if package == REPO_ROOT / "hub" / "mlopshub" and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT
    return None


def require_checkout(what: str) -> Path:
    """The checkout, or a ValueError saying that ``what`` needs one (the installed package has none)."""
    root = checkout_root()
    if root is None:
        raise ValueError(
            f"{what} needs a checkout of the mlopshub repository, and this mlopshub is installed "
            f"({Path(__file__).resolve().parent}); run it from a clone (`make up` installs it editable there)"
        )
    return root

#: Seconds MLflow, the pipeline and the model endpoints trust what the hub said about a token (who it is, its
#: scopes, the owner's groups) before asking again. This is the revocation bound: a revoked or expired token, or a
#: member removed from a team, is refused at most this long (plus one request to the hub) after the hub knows.
#: One cache layer per service holds it (HubAuth's own cache is bypassed: it counts whole seconds and would add
#: its age to ours). At one hub request per token per second, the hub's load stays small; the endpoints' hot path
#: keeps a per-token answer, so a scoring client does not wait on the hub more than once a second.
TRUST_SECONDS = 1.0
#: Seconds a token the hub accepted stays accepted while the hub cannot answer (it is restarting): nobody can
#: revoke a token or change a membership then either, and endpoints and MLflow keep answering their callers.
HUB_AWAY_GRACE = 300.0


@dataclass(frozen=True)
class Settings:
    """The platform's settings, resolved once at start."""

    #: Where the hub database, secrets, logs, homes and MLflow data live.
    data_dir: Path
    #: The public port (the proxy's) on 127.0.0.1.
    port: int
    #: The public interface.
    ip: str
    #: The catalog folder (profiles and teams).
    catalog_dir: Path
    #: The first admin's user name (signs up with a password on first use).
    admin_user: str
    #: Seconds of inactivity after which a workspace is stopped (0: never).
    cull_timeout: int
    #: How often, in seconds, the culler looks.
    cull_every: int
    #: "local" (one machine) or "kubernetes".
    mode: str
    #: Whether GPU profiles are offered: "auto" looks for an NVIDIA device.
    gpu: str
    #: OIDC issuer URL; when set, sign-in goes through OIDC instead of passwords.
    oidc_issuer: str
    #: OIDC client id and secret (the secret is read from a file when it names one).
    oidc_client_id: str
    oidc_client_secret: str
    #: Which userinfo claim holds the user's groups, and which their user name.
    oidc_groups_claim: str
    oidc_username_claim: str
    #: IdP groups whose members become hub admins.
    oidc_admin_groups: tuple[str, ...]
    #: The URL users reach the hub at, when not http://<ip>:<port> (behind a load balancer, on Kubernetes).
    public_url_override: str = ""
    #: Kubernetes: where the hub reaches the MLflow tracking server, and the hub token it registers with.
    mlflow_internal_url: str = "http://mlflow:5000"
    mlflow_service_token: str = ""
    #: One machine: seconds each part (MLflow with its migrations, the pipeline, the hub with its proxy) has to
    #: answer its health check at start before `mlopshub up` gives up, names it and stops what it started.
    start_timeout: float = 300.0

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def homes_dir(self) -> Path:
        return self.data_dir / "homes"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def pipeline_dir(self) -> Path:
        return self.data_dir / "pipeline"

    @property
    def public_url(self) -> str:
        return self.public_url_override or f"http://{self.ip}:{self.port}"


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _seconds(name: str, text: str) -> float:
    """A positive number of seconds, or a ValueError naming the variable."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: expected a positive number of seconds, got {text!r}")
    return value


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    checkout = checkout_root()
    # ./.mlopshub: the checkout's when running from one (`make up`), else the working directory's.
    data_dir = Path(env.get("MLOPSHUB_DATA_DIR") or (checkout or Path.cwd()) / ".mlopshub").resolve()
    port_text = env.get("MLOPSHUB_PORT", "8000")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"MLOPSHUB_PORT: expected a port number 1-65535, got {port_text!r}")
    cull_text = env.get("MLOPSHUB_CULL_TIMEOUT", "3600")
    every_text = env.get("MLOPSHUB_CULL_EVERY", "300")
    for name, text in (("MLOPSHUB_CULL_TIMEOUT", cull_text), ("MLOPSHUB_CULL_EVERY", every_text)):
        if not text.isdigit():
            raise ValueError(f"{name}: expected a whole number of seconds, got {text!r}")
    mode = env.get("MLOPSHUB_MODE", "local")
    if mode not in ("local", "kubernetes"):
        raise ValueError(f"MLOPSHUB_MODE: expected 'local' or 'kubernetes', got {mode!r}")
    start_timeout = _seconds("MLOPSHUB_START_TIMEOUT", env.get("MLOPSHUB_START_TIMEOUT", "300"))
    catalog_text = env.get("MLOPSHUB_CATALOG", "")
    if not catalog_text and mode == "kubernetes" and checkout is None:
        raise ValueError(
            "MLOPSHUB_CATALOG: not set; on Kubernetes it names the folder where the mlopshub-catalog ConfigMap "
            "is mounted (helm-values/jupyterhub.yaml sets /etc/mlopshub/profiles)"
        )
    gpu = env.get("MLOPSHUB_GPU", "auto")
    if gpu not in ("auto", "yes", "no"):
        raise ValueError(f"MLOPSHUB_GPU: expected 'auto', 'yes' or 'no', got {gpu!r}")
    return Settings(
        data_dir=data_dir,
        port=int(port_text),
        ip=env.get("MLOPSHUB_IP", "127.0.0.1"),
        # One machine: the checkout's profiles/ by default, else ./profiles (catalog.load names a missing one).
        catalog_dir=Path(catalog_text or (checkout or Path.cwd()) / "profiles").resolve(),
        admin_user=env.get("MLOPSHUB_ADMIN_USER", "admin"),
        cull_timeout=int(cull_text),
        cull_every=int(every_text),
        mode=mode,
        gpu=gpu,
        oidc_issuer=env.get("MLOPSHUB_OIDC_ISSUER", ""),
        oidc_client_id=env.get("MLOPSHUB_OIDC_CLIENT_ID", ""),
        oidc_client_secret=env.get("MLOPSHUB_OIDC_CLIENT_SECRET", ""),
        oidc_groups_claim=env.get("MLOPSHUB_OIDC_GROUPS_CLAIM", "groups"),
        oidc_username_claim=env.get("MLOPSHUB_OIDC_USERNAME_CLAIM", "preferred_username"),
        public_url_override=env.get("MLOPSHUB_PUBLIC_URL", "").rstrip("/"),
        mlflow_internal_url=env.get("MLOPSHUB_MLFLOW_URL", "http://mlflow:5000"),
        mlflow_service_token=env.get("MLOPSHUB_MLFLOW_SERVICE_TOKEN", ""),
        oidc_admin_groups=_list(env.get("MLOPSHUB_OIDC_ADMIN_GROUPS", "platform-admins")),
        start_timeout=start_timeout,
    )


def gpu_available(settings: Settings) -> bool:
    """Whether this machine can run GPU profiles."""
    if settings.gpu != "auto":
        return settings.gpu == "yes"
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()
