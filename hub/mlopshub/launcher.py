"""Start, stop and report the one-machine platform (``mlopshub up|down|status``).

Each step is an ``ensure_*`` function, safe to run again (TLJH's habit).
Internal ports are picked free at each start and written to
``<data dir>/run/runtime.json`` so that two instances run side by side.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from . import catalog
from .configure import ADMIN_SERVICE, Runtime, mlflow_auth_ini
from .settings import Settings

HUB_CONFIG = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"


class LaunchError(RuntimeError):
    """The platform cannot start; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def ensure_dirs(settings: Settings) -> None:
    """Data dir layout: secrets only for the owner; homes traversable so each user reaches theirs."""
    for path, mode in (
        (settings.data_dir, 0o755),
        (settings.secrets_dir, 0o700),
        (settings.run_dir, 0o755),
        (settings.logs_dir, 0o700),
        (settings.homes_dir, 0o711),
        (settings.data_dir / "dvc-remotes", 0o711),
        (settings.mlflow_dir, 0o700),
        # Passable, not readable: each team's model account reaches its own folder of model copies only.
        (settings.pipeline_dir, 0o711),
    ):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)


def ensure_secret(path: Path, value: str | None = None) -> str:
    """The secret in ``path``, written (mode 0600) from ``value`` or freshly generated if missing."""
    if value:
        _write_private(path, value)
        return value
    if path.exists():
        return path.read_text().strip()
    generated = secrets.token_hex(32)
    _write_private(path, generated)
    return generated


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    path.chmod(0o600)


def ensure_runtime(settings: Settings) -> Runtime:
    """Pick internal ports and load (or create) the secrets for this start."""
    ensure_dirs(settings)
    (settings.run_dir / "runtime.json").write_text(json.dumps(pick_internal_ports()))
    return load_runtime(settings)


INTERNAL_PORTS = ("hub_port", "proxy_api_port", "mlflow_port", "pipeline_port")


def pick_internal_ports() -> dict[str, int]:
    """Distinct free ports: the hub's API, the proxy's API, MLflow and the release pipeline."""
    ports: dict[str, int] = {}
    for name in INTERNAL_PORTS:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


def load_runtime(settings: Settings, existing_group_properties: dict[str, Any] | None = None) -> Runtime:
    """The runtime of the current start (ports from ``up``, or fresh ones when the hub is run directly)."""
    ensure_dirs(settings)
    state = settings.run_dir / "runtime.json"
    ports = json.loads(state.read_text()) if state.exists() else {}
    if set(INTERNAL_PORTS) - set(ports):  # run directly, or state from an older version
        ports = pick_internal_ports()
    runtime = Runtime(
        hub_port=ports["hub_port"],
        proxy_api_port=ports["proxy_api_port"],
        mlflow_port=ports["mlflow_port"],
        pipeline_port=ports["pipeline_port"],
        admin_token=ensure_secret(settings.secrets_dir / "admin-token", os.environ.get("MLOPSHUB_ADMIN_TOKEN")),
        mlflow_admin_password=ensure_secret(settings.secrets_dir / "mlflow-admin-password"),
        mlflow_secret_key=ensure_secret(settings.secrets_dir / "mlflow-secret-key"),
        crypt_key=ensure_secret(settings.secrets_dir / "auth-state-key"),
        existing_group_properties=existing_group_properties or {},
        consumer_tokens={
            name: ensure_secret(consumer_token_path(settings, name))
            for name in catalog.load(settings.catalog_dir).consumers
        },
    )
    _write_private(settings.secrets_dir / "mlflow-auth.ini", mlflow_auth_ini(settings, runtime))
    return runtime


def consumer_token_path(settings: Settings, consumer: str) -> Path:
    """Where a consumer system's hub token is kept (mode 0600), for an admin to hand over."""
    return settings.secrets_dir / "consumers" / f"{consumer}.token"


def hub_pid(settings: Settings) -> int | None:
    """The pid of this data dir's running hub, or None."""
    path = settings.run_dir / "hub.pid"
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    return pid


def hub_command() -> list[str]:
    return [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(HUB_CONFIG)]


def check_can_start(settings: Settings) -> None:
    """Refuse to start with a clear message on a bad catalog or a taken port."""
    catalog.load(settings.catalog_dir)
    check_homes_reachable(settings)
    if port_in_use(settings.ip, settings.port):
        raise LaunchError(
            f"port {settings.port} on {settings.ip} is already in use; stop what uses it or set MLOPSHUB_PORT"
        )


def check_homes_reachable(settings: Settings) -> None:
    """As root, workspaces run as their own users: each must be able to reach its home."""
    if os.geteuid() != 0:
        return
    for folder in [settings.data_dir, *settings.data_dir.parents]:
        if folder.exists() and not folder.stat().st_mode & 0o001:
            raise LaunchError(
                f"workspaces run as their own Unix users and cannot pass through {folder} (mode "
                f"{oct(folder.stat().st_mode & 0o777)}); allow it (chmod o+x) or set MLOPSHUB_DATA_DIR elsewhere"
            )


def admin_token(settings: Settings) -> str:
    return (settings.secrets_dir / "admin-token").read_text().strip()


def wait_healthy(settings: Settings, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Wait until the hub answers through the proxy, and MLflow and the pipeline through the hub."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {admin_token(settings)}"}
    checks = [
        f"{settings.public_url}/hub/health",
        f"{settings.public_url}/services/mlflow/health",
        f"{settings.public_url}/services/pipeline/health",
    ]
    while checks:
        if process.poll() is not None:
            raise LaunchError(f"the hub exited with code {process.returncode}; see {settings.logs_dir / 'hub.log'}")
        if time.monotonic() > deadline:
            raise LaunchError(f"not healthy after {timeout:.0f}s ({checks[0]}); see {settings.logs_dir / 'hub.log'}")
        try:
            if requests.get(checks[0], headers=headers, timeout=5).status_code == 200:
                checks.pop(0)
                continue
        except requests.RequestException:
            pass
        time.sleep(0.5)


def up(settings: Settings, foreground: bool = False) -> int:
    """Start the platform (in the background unless ``foreground``); return an exit code."""
    pid = hub_pid(settings)
    if pid:
        print(f"mlopshub is already running at {settings.public_url} (hub pid {pid}); `make down` stops it.")
        return 0
    check_can_start(settings)
    ensure_runtime(settings)
    env = {
        **os.environ,
        "MLOPSHUB_DATA_DIR": str(settings.data_dir),
        "MLOPSHUB_PORT": str(settings.port),
        "MLOPSHUB_CATALOG": str(settings.catalog_dir),
    }
    env.pop("MLOPSHUB_ADMIN_TOKEN", None)  # now in <data dir>/secrets; keep it out of child environments
    if foreground:
        os.chdir(settings.data_dir)
        os.execve(hub_command()[0], hub_command(), env)
    log = open(settings.logs_dir / "hub.log", "ab")
    process = subprocess.Popen(
        hub_command(),
        cwd=settings.data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_healthy(settings, process)
    except LaunchError:
        _stop_process_group(process.pid)
        raise
    print(f"mlopshub is running at {settings.public_url}/")
    print(f"  Sign in: first sign up as '{settings.admin_user}' at {settings.public_url}/hub/signup to set the")
    print("  admin password. Others sign up there too; an admin authorizes them at /hub/authorize and adds")
    print("  them to their team in the admin page (/hub/admin).")
    print(f"  Admin API token: {settings.secrets_dir / 'admin-token'}   Logs: {settings.logs_dir / 'hub.log'}")
    return 0


def _stop_process_group(pid: int, timeout: float = 60) -> None:
    """Stop the hub's process group, then any process it started in a session of its own.

    The hub starts its services and workspaces in new sessions; when it cannot
    stop them itself (killed, or failed while starting), they are found among
    its descendants, noted before it stops.
    """
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        # `up` starts the hub as a group leader; a foreground hub shares its shell's group.
        signal_hub = os.killpg if os.getpgid(pid) == pid else os.kill
        signal_hub(pid, signal.SIGTERM)
    except ProcessLookupError:
        signal_hub = os.kill
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            signal_hub(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        signal_hub(pid, signal.SIGKILL)
    leftover = [process for process in descendants if process.is_running()]
    for process in leftover:
        process.terminate()
    _, alive = psutil.wait_procs(leftover, timeout=10)
    for process in alive:
        process.kill()


def down(settings: Settings) -> int:
    """Stop the hub, its proxy, its services and every workspace it started."""
    pid = hub_pid(settings)
    if not pid:
        print("mlopshub is not running.")
        return 0
    # The hub stops workspaces, services and its proxy itself; what it leaves is stopped after.
    _stop_process_group(pid, timeout=60)
    _stop_leftover(settings.run_dir / "proxy.pid")
    print("mlopshub stopped.")
    return 0


def _stop_leftover(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def status(settings: Settings) -> dict[str, Any]:
    """What runs: the hub, its services, the running workspaces."""
    pid = hub_pid(settings)
    report: dict[str, Any] = {
        "url": settings.public_url,
        "data_dir": str(settings.data_dir),
        "hub_pid": pid,
        "running": bool(pid),
    }
    if not pid:
        return report
    headers = {"Authorization": f"token {admin_token(settings)}"}
    api = f"{settings.public_url}/hub/api"
    try:
        services = requests.get(f"{api}/services", headers=headers, timeout=5).json()
        users = requests.get(f"{api}/users", params={"state": "active"}, headers=headers, timeout=5).json()
    except requests.RequestException as error:
        report["error"] = f"the hub does not answer: {error}"
        return report
    report["services"] = sorted(name for name in services if name != ADMIN_SERVICE)
    report["workspaces"] = sorted(
        f"{user['name']}{('/' + name) if name else ''}" for user in users for name in user.get("servers", {})
    )
    runtime = settings.run_dir / "runtime.json"
    if runtime.exists():
        report["internal_ports"] = json.loads(runtime.read_text())
    return report


__all__ = ["LaunchError", "down", "load_runtime", "status", "up"]
