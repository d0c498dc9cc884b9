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
import stat
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


#: The data dir itself: workspaces pass through it to their home and their team's DVC remote, but cannot list it.
DATA_DIR_MODE = 0o711
#: Entries of the data dir that workspaces (or the teams' model accounts) pass through; everything else in the
#: data dir is the platform's alone (files 0600, folders 0700).
PASSABLE = {
    "homes": 0o711,  # to <user>/, 0700, owned by the user
    "dvc-remotes": 0o711,  # to <team>/, group mlopshub-<team>, 2770
    # Each team's model account passes through to its own folder of model copies (pipeline/models/<team>/,
    # set up by mlopshub.serving.sandbox); the rest of pipeline/ is private.
    "pipeline": 0o711,
}
#: Entries of the pipeline's folder that the teams' model accounts pass through (to their model copies, to a batch
#: run's output folder); the pipeline service sets their modes.
PIPELINE_PASSABLE = frozenset({"models", "batch"})
#: The hub and everything it starts create files for the platform only; what a workspace or a model account
#: must reach gets an explicit mode (homes, team remotes, model copies).
HUB_UMASK = 0o077


def ensure_dirs(settings: Settings) -> None:
    """Data dir layout and modes: only traversable itself, private inside, except the folders workspaces pass."""
    missing = [folder for folder in [settings.data_dir, *settings.data_dir.parents] if not folder.exists()]
    for folder in reversed(missing):
        # Made here, not by mkdir -p: under the hub's umask the parents would shut workspaces out of their homes.
        folder.mkdir(exist_ok=True)
        folder.chmod(DATA_DIR_MODE)
    settings.data_dir.chmod(DATA_DIR_MODE)
    for path in (settings.secrets_dir, settings.run_dir, settings.logs_dir, settings.mlflow_dir):
        path.mkdir(exist_ok=True)
    for name, mode in PASSABLE.items():
        (settings.data_dir / name).mkdir(exist_ok=True)
        (settings.data_dir / name).chmod(mode)
    make_private(settings)


def private_mode(mode: int) -> int:
    """``mode`` (of ``os.lstat``) without group and other permissions, nor setuid/setgid/sticky: 0600 or 0700."""
    return stat.S_IMODE(mode) & 0o700


def make_private(settings: Settings) -> list[Path]:
    """Take group and other permissions off every entry of the data dir but the passable ones; return what changed.

    An older data dir may hold a ``jupyterhub.sqlite`` of 0644 or a ``run/`` of 0755. Entries inside a private
    folder are not walked: the folder already keeps them. Homes are made 0700 again. Symlinks are never followed
    (:func:`check_data_dir` refuses them).
    """
    entries = [entry for entry in settings.data_dir.iterdir() if entry.name not in PASSABLE]
    pipeline = settings.pipeline_dir
    entries += [entry for entry in pipeline.iterdir() if entry.name not in PIPELINE_PASSABLE]
    entries += list(settings.homes_dir.iterdir())
    changed = []
    for entry in entries:
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode) or stat.S_IMODE(mode) == private_mode(mode):
            continue
        entry.chmod(private_mode(mode))
        changed.append(entry)
    return changed


def open_folder_problem(folder: Path, st: os.stat_result, euid: int, egid: int) -> str | None:
    """Why ``folder`` (the data dir or one of its parents) lets someone else replace what is in it, or None.

    Pure: it reads only ``st``. Whoever owns a folder on the way, or may write it (without the sticky bit, as
    /tmp has), can move the data dir away and put their own in its place: `up` cannot fix that by itself.
    """
    mode = st.st_mode
    sticky = bool(mode & stat.S_ISVTX)
    if st.st_uid not in (0, euid):
        return f"{folder} belongs to uid {st.st_uid}, not to the platform's user (uid {euid}) or root"
    if mode & stat.S_IWOTH and not sticky:
        return f"{folder} is writable by every user (mode {oct(stat.S_IMODE(mode))}); chmod o-w {folder}"
    if mode & stat.S_IWGRP and not sticky and st.st_gid not in (0, egid):
        return f"{folder} is writable by group {st.st_gid} (mode {oct(stat.S_IMODE(mode))}); chmod g-w {folder}"
    return None


def check_data_dir(settings: Settings) -> None:
    """Refuse a data dir that others could swap or that holds what `up` must not silently fix.

    The data dir and every parent must belong to root or the platform's user and be writable by no one else
    (unless sticky); the data dir and its top-level entries (and the pipeline's) must belong to the platform's
    user and must not be symlinks.
    """
    euid, egid = os.geteuid(), os.getegid()
    for folder in [settings.data_dir, *settings.data_dir.parents]:
        if not folder.exists():
            continue
        problem = open_folder_problem(folder, folder.stat(), euid, egid)
        if problem:
            raise LaunchError(
                f"the data dir is not safe: {problem}; fix it, or set MLOPSHUB_DATA_DIR to a folder only the "
                "platform's user can change"
            )
    if not settings.data_dir.exists():
        return
    entries = [settings.data_dir, *settings.data_dir.iterdir()]
    if settings.pipeline_dir.is_dir() and not settings.pipeline_dir.is_symlink():
        entries += list(settings.pipeline_dir.iterdir())
    for entry in entries:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise LaunchError(
                f"{entry} is a symlink; the data dir holds the platform's files itself. Move what it points to "
                "into its place (or remove it), then start again"
            )
        if st.st_uid != euid:
            raise LaunchError(
                f"{entry} belongs to uid {st.st_uid}, not to the platform's user (uid {euid}); "
                f"chown -R {euid} {entry} if it is the platform's, or remove it"
            )


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
    check_data_dir(settings)
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


def wait_healthy(
    settings: Settings,
    process: subprocess.Popen[bytes],
    timeout: float = 180,
    started: set[psutil.Process] | None = None,
) -> None:
    """Wait until the hub answers through the proxy, and MLflow and the pipeline through the hub.

    ``started`` collects what the hub starts meanwhile: when the hub exits on its own (a service too slow to
    answer), its proxy and services are no longer its children, and only this list finds them.
    """
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {admin_token(settings)}"}
    checks = [
        f"{settings.public_url}/hub/health",
        f"{settings.public_url}/services/mlflow/health",
        f"{settings.public_url}/services/pipeline/health",
    ]
    while checks:
        if started is not None:
            started.update(_descendants(process.pid))
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
    # Before anything is written: the data dir, the hub and its services make files for the platform only.
    os.umask(HUB_UMASK)
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
    started: set[psutil.Process] = set()
    try:
        wait_healthy(settings, process, started=started)
    except LaunchError:
        _stop_process_group(process.pid)
        _stop_processes([child for child in started if child.is_running()])
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
    descendants = _descendants(pid)
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
    _stop_processes([process for process in descendants if process.is_running()])


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop_processes(processes: list[psutil.Process]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


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
