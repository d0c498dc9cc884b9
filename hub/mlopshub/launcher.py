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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import requests
from jupyterhub.utils import random_port

from . import catalog
from .configure import ADMIN_SERVICE, Runtime, mlflow_auth_ini
from .settings import Settings
from .supervisor import PART_NAMES, log_tail, stop_processes

HUB_CONFIG = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"


class LaunchError(RuntimeError):
    """The platform cannot start; the message says why and what to do."""


#: A TCP port free right now, picked as JupyterHub picks its own internal ports (those of servers and
#: services on 127.0.0.1): free on every address, so on 127.0.0.1 too. The name is kept for the test harnesses.
free_port = random_port


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


INTERNAL_PORTS = ("hub_port", "proxy_api_port", "mlflow_port", "pipeline_port", "models_port")


def pick_internal_ports() -> dict[str, int]:
    """Distinct free ports: the hub's API, the proxy's API, MLflow, the release pipeline, the models service."""
    ports: dict[str, int] = {}
    for name in INTERNAL_PORTS:
        port = random_port()
        while port in ports.values():
            port = random_port()
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
        models_port=ports["models_port"],
        admin_token=ensure_secret(settings.secrets_dir / "admin-token", os.environ.get("MLOPSHUB_ADMIN_TOKEN")),
        mlflow_admin_password=ensure_secret(settings.secrets_dir / "mlflow-admin-password"),
        mlflow_secret_key=ensure_secret(settings.secrets_dir / "mlflow-secret-key"),
        crypt_key=ensure_secret(settings.secrets_dir / "auth-state-key"),
        # MLflow and the pipeline are external services (the supervisor runs them): their hub tokens are ours.
        mlflow_service_token=ensure_secret(settings.secrets_dir / "mlflow-service-token"),
        pipeline_service_token=ensure_secret(settings.secrets_dir / "pipeline-service-token"),
        models_service_token=ensure_secret(settings.secrets_dir / "models-service-token"),
        proxy_auth_token=ensure_secret(settings.secrets_dir / "proxy-auth-token"),
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


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def supervisor_pid(settings: Settings) -> int | None:
    """The pid of this data dir's running supervisor (mlopshub.supervisor), or None."""
    pid = _pid_from(settings.run_dir / "supervisor.pid")
    if not _alive(pid):
        return None
    try:
        if "mlopshub.supervisor" not in " ".join(psutil.Process(pid).cmdline()):
            return None  # the pid was reused since
    except psutil.Error:
        return None
    return pid


def hub_pid(settings: Settings) -> int | None:
    """The pid of this data dir's running hub, or None."""
    pid = _pid_from(settings.run_dir / "hub.pid")
    return pid if _alive(pid) else None


def hub_command() -> list[str]:
    if not HUB_CONFIG.is_file():
        raise LaunchError(
            f"`mlopshub up` runs the hub with {HUB_CONFIG.name} of a checkout, and there is none at {HUB_CONFIG}: "
            "run it from a clone of the mlopshub repository (on Kubernetes the chart runs the hub)"
        )
    return [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(HUB_CONFIG)]


def check_can_start(settings: Settings) -> None:
    """Refuse to start with a clear message on a bad catalog or a taken port."""
    hub_command()  # the checkout's jupyterhub_config.py, or a LaunchError saying there is none
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


#: What `up` waits for beyond the parts' own timeouts (the supervisor's start and stop).
UP_MARGIN = 120.0


def supervisor_command() -> list[str]:
    return [sys.executable, "-m", "mlopshub.supervisor"]


def platform_environment(settings: Settings) -> dict[str, str]:
    """The supervisor's environment: ours, with the settings resolved (parts get what they need of it)."""
    env = {
        **os.environ,
        "MLOPSHUB_DATA_DIR": str(settings.data_dir),
        "MLOPSHUB_PORT": str(settings.port),
        "MLOPSHUB_CATALOG": str(settings.catalog_dir),
        "MLOPSHUB_START_TIMEOUT": str(settings.start_timeout),
    }
    env.pop("MLOPSHUB_ADMIN_TOKEN", None)  # now in <data dir>/secrets; keep it out of child environments
    return env


def read_state(settings: Settings) -> dict[str, Any]:
    """What the supervisor last reported (``<run>/supervisor.json``), or ``{}``."""
    try:
        return dict(json.loads((settings.run_dir / "supervisor.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def failure_message(settings: Settings, state: dict[str, Any]) -> str:
    """Which part did not come up, why, and the last lines of its log."""
    failure = state.get("failure") or {}
    if not failure:
        log = settings.logs_dir / "supervisor.log"
        return f"the platform did not start; see {log}:\n{log_tail(log)}"
    log = Path(failure["log"])
    return f"{failure['part']} did not come up: {failure['reason']}. Last lines of {log}:\n{log_tail(log)}"


def wait_started(settings: Settings, process: subprocess.Popen[bytes]) -> None:
    """Wait until the supervisor says the platform is ready; raise :class:`LaunchError` naming what failed."""
    deadline = time.monotonic() + len(PART_NAMES) * settings.start_timeout + UP_MARGIN
    while True:
        state = read_state(settings)
        if state.get("pid") == process.pid and state.get("state") == "ready":
            return
        if process.poll() is not None:
            raise LaunchError(failure_message(settings, read_state(settings)))
        if time.monotonic() > deadline:
            stop_supervisor(process.pid)
            raise LaunchError(failure_message(settings, read_state(settings)))
        time.sleep(0.3)


def up(settings: Settings, foreground: bool = False) -> int:
    """Start the platform (in the background unless ``foreground``); return an exit code."""
    pid = supervisor_pid(settings)
    if pid:
        print(f"mlopshub is already running at {settings.public_url} (supervisor pid {pid}); `make down` stops it.")
        return 0
    # Before anything is written: the data dir, the hub and its services make files for the platform only.
    os.umask(HUB_UMASK)
    # What a crash left (a hub without its supervisor, a proxy holding the port) is ours: stop it first.
    stopped = stop_leftovers(settings)
    if stopped:
        print(f"stopped what an earlier run left: {', '.join(stopped)}")
    check_can_start(settings)
    ensure_runtime(settings)
    env = platform_environment(settings)
    if foreground:
        os.chdir(settings.data_dir)
        os.execve(sys.executable, supervisor_command(), env)
    log = os.open(settings.logs_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            supervisor_command(),
            cwd=settings.data_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(log)
    try:
        wait_started(settings, process)
    except BaseException:
        if process.poll() is None:
            stop_supervisor(process.pid)
        stop_leftovers(settings)
        raise
    print(f"mlopshub is running at {settings.public_url}/")
    print(f"  Sign in: first sign up as '{settings.admin_user}' at {settings.public_url}/hub/signup to set the")
    print("  admin password. Others sign up there too; an admin authorizes them at /hub/authorize and adds")
    print("  them to their team in the admin page (/hub/admin).")
    print(f"  Admin API token: {settings.secrets_dir / 'admin-token'}   Logs: {settings.logs_dir}/<part>.log")
    return 0


def restart(settings: Settings, parts: Sequence[str] = ()) -> int:
    """Restart ``parts`` (default: MLflow, the pipeline and the hub) of the running platform, one at a time;
    workspaces keep running, and model endpoints keep answering unless ``models`` is named."""
    from .supervisor import RESTART_DEFAULT

    unknown = sorted(set(parts) - set(PART_NAMES))
    if unknown:
        raise LaunchError(f"no part named {', '.join(unknown)}; the parts are {', '.join(PART_NAMES)}")
    pid = supervisor_pid(settings)
    if not pid:
        raise LaunchError("mlopshub is not running; `mlopshub up` starts it")
    names = list(parts or RESTART_DEFAULT)
    before = {name: part.get("restarts", 0) for name, part in read_state(settings).get("parts", {}).items()}
    _write_private(settings.run_dir / "restart.json", json.dumps({"parts": names}))
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + len(names) * settings.start_timeout + UP_MARGIN
    while time.monotonic() < deadline:
        state = read_state(settings)
        done = all(state.get("parts", {}).get(name, {}).get("restarts", 0) > before.get(name, 0) for name in names)
        if done and state.get("state") == "ready":
            healthy = [name for name in names if state["parts"][name]["state"] == "healthy"]
            if len(healthy) == len(names):
                print(f"restarted {', '.join(names)}; workspaces kept")
                return 0
            failed = sorted(set(names) - set(healthy))
            raise LaunchError(f"{', '.join(failed)} did not come back; the supervisor keeps trying (`mlopshub status`)")
        time.sleep(0.5)
    raise LaunchError(f"the restart of {', '.join(names)} did not finish in time; see {settings.logs_dir}")


def stop_supervisor(pid: int, timeout: float = 180) -> None:
    """SIGTERM to the supervisor (it stops hub, pipeline, MLflow and what is below them); SIGKILL after
    ``timeout``, its tree with it."""
    try:
        process = psutil.Process(pid)
        below = process.children(recursive=True)
        process.terminate()
        process.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        below += process.children(recursive=True)
        process.kill()
    stop_processes([child for child in below if child.is_running()])


#: Pid files in ``<run>/`` of what the platform runs: the supervisor's parts.
PID_FILES = tuple(f"{part}.pid" for part in PART_NAMES)


def leftover_processes(settings: Settings) -> list[psutil.Process]:
    """Processes of a run without its supervisor (pid files in ``<run>/``), checked to be this data dir's.

    A pid in a file counts only if its process still names the data dir in its command line or environment
    (a reused pid does not), with everything below it.
    """
    found: dict[int, psutil.Process] = {}
    for name in PID_FILES:
        pid = _pid_from(settings.run_dir / name)
        if pid is None or pid == os.getpid() or not _alive(pid):
            continue
        try:
            process = psutil.Process(pid)
            if not _names(process, str(settings.data_dir)):
                continue
            for member in [process, *process.children(recursive=True)]:
                found[member.pid] = member
        except psutil.Error:
            continue
    return list(found.values())


def _names(process: psutil.Process, data_dir: str) -> bool:
    if any(data_dir in argument for argument in process.cmdline()):
        return True
    try:
        return any(data_dir in value for value in process.environ().values())
    except psutil.AccessDenied:
        return False


def stop_leftovers(settings: Settings) -> list[str]:
    """Stop what a run left behind without its supervisor; name what was stopped."""
    leftovers = leftover_processes(settings)
    names = []
    for process in leftovers:
        try:
            names.append(f"{process.name()} (pid {process.pid})")
        except psutil.Error:
            continue
    stop_processes(leftovers)
    for name in PID_FILES:
        (settings.run_dir / name).unlink(missing_ok=True)
    return names


def down(settings: Settings) -> int:
    """Stop the supervisor and everything below it, and what a crashed run left behind."""
    pid = supervisor_pid(settings)
    if pid:
        stop_supervisor(pid)
    stopped = stop_leftovers(settings)
    if not pid and not stopped:
        print("mlopshub is not running.")
        return 0
    print("mlopshub stopped." + (f" Also stopped what a crash left: {', '.join(stopped)}" if stopped else ""))
    return 0


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def status(settings: Settings) -> dict[str, Any]:
    """What runs: the supervisor, each part (pid, alive, healthy, restarts), the services, the workspaces."""
    pid = supervisor_pid(settings)
    report: dict[str, Any] = {
        "url": settings.public_url,
        "data_dir": str(settings.data_dir),
        "supervisor_pid": pid,
        "hub_pid": hub_pid(settings) if pid else None,
        "running": bool(pid),
    }
    if not pid:
        return report
    state = read_state(settings)
    report["state"] = state.get("state", "unknown")
    report["parts"] = {
        name: {
            "pid": part["pid"],
            "alive": _alive(part["pid"]),
            "healthy": _alive(part["pid"]) and _healthy(part["health"]),
            "restarts": part["restarts"],
            "log": part["log"],
        }
        for name, part in state.get("parts", {}).items()
    }
    headers = {"Authorization": f"token {admin_token(settings)}"}
    api = f"{settings.public_url}/hub/api"
    try:
        services = requests.get(f"{api}/services", headers=headers, timeout=5).json()
        users = requests.get(f"{api}/users", params={"state": "active"}, headers=headers, timeout=5).json()
    except (requests.RequestException, ValueError) as error:
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
