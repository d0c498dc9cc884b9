"""One owner of the one-machine platform's processes: ``python -m mlopshub.supervisor``.

``mlopshub up`` starts it detached (``up --foreground`` runs it in the terminal). It starts the parts in
order and waits for each to answer its health check within ``MLOPSHUB_START_TIMEOUT``:

1. ``mlflow``: its database migrations (``mlflow db upgrade``, a step of their own: they take most of
   MLflow's first start), then the tracking server;
2. ``models``: the model endpoints (:mod:`mlopshub.serving.gateway`), serving again what they served;
3. ``pipeline``: the release pipeline, which switches endpoints through the models service;
4. ``proxy``: configurable-http-proxy (:mod:`mlopshub.proxy`), so that the hub's death takes no route with it;
5. ``hub``: JupyterHub, which runs the membership service and the idle culler (and starts them again when
   they die) and the workspaces; healthy once the hub and the services answer through the proxy.

Each part is a process of its own, so a part that dies takes no other with it: endpoints answer while the
pipeline or MLflow restarts, workspaces and endpoints while the hub does. Once everything is up, a part
that dies is started again, after a pause that doubles with each quick death (1 s to 60 s). On SIGTERM
(``mlopshub down``) it stops the workspaces through the hub's API, then the parts in the reverse order,
then whatever is left below it. SIGHUP (``mlopshub restart``) restarts the parts named in
``<run>/restart.json`` one at a time, workspaces kept. The supervisor is the child subreaper of its tree
(Linux), so what a killed part leaves is still its own to stop.

It writes ``<run>/supervisor.pid`` and ``<run>/supervisor.json`` (each part's pid, state and restarts, and
on a failed start which part and why), which ``up`` and ``status`` read, and ``<run>/<part>.pid``. Each
part writes to ``<logs>/<part>.log`` (mode 0600).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import requests

from . import proxy
from .configure import (
    MLFLOW_SERVICE,
    MODELS_SERVICE,
    PIPELINE_SERVICE,
    Runtime,
    ServiceProcess,
    hub_api_url,
    mlflow_backend_uri,
    mlflow_process,
    models_process,
    pipeline_process,
    service_environment,
)
from .settings import Settings, from_env

#: Order of the parts: started in this order, stopped in the reverse.
PART_NAMES = ("mlflow", "models", "pipeline", "proxy", "hub")
#: What ``mlopshub restart`` restarts unless told otherwise: not the data path (models) nor the routes (proxy).
RESTART_DEFAULT = ("mlflow", "pipeline", "hub")
#: Restart pauses: doubling from the first to the last while a part keeps dying within STABLE seconds.
FIRST_PAUSE, LAST_PAUSE, STABLE = 1.0, 60.0, 60.0
#: Seconds a part has to stop on SIGTERM before SIGKILL (the hub stops its workspaces first).
STOP_GRACE = {"hub": 60.0, "proxy": 10.0, "pipeline": 20.0, "models": 40.0, "mlflow": 20.0}
#: Seconds ``down`` waits for the hub to stop the workspaces.
WORKSPACES_STOP_TIMEOUT = 90.0
#: Lines of a part's log that a failed start shows.
LOG_TAIL_LINES = 20


@dataclass
class Part:
    """One long-running process of the platform: how to run it and how to know it is up."""

    name: str
    command: list[str]
    env: dict[str, str]
    #: URLs that must answer 200, in order.
    health: list[str]
    log: Path
    pid_file: Path
    cwd: Path | None = None
    #: Commands to run to completion before the part starts (MLflow's migrations), with what they are.
    before: list[tuple[str, list[str]]] = field(default_factory=list)
    #: Headers for the health checks (the hub's, through the proxy, send the admin token).
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    state: str = "stopped"
    restarts: int = 0
    started_at: float = 0.0
    pause: float = FIRST_PAUSE
    restart_at: float = 0.0
    #: What the part has started, as last seen: stopped when the part dies (:meth:`Supervisor.stop_orphans`).
    below: list[psutil.Process] = field(default_factory=list)


def hub_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The hub's environment: the platform's, with the settings `up` resolved and without the admin token
    (it is in ``<data dir>/secrets``; keep it out of every child's environment)."""
    env = {
        **inherited,
        "MLOPSHUB_DATA_DIR": str(settings.data_dir),
        "MLOPSHUB_PORT": str(settings.port),
        "MLOPSHUB_CATALOG": str(settings.catalog_dir),
    }
    env.pop("MLOPSHUB_ADMIN_TOKEN", None)
    return env


def _service_part(settings: Settings, runtime: Runtime, service: ServiceProcess, inherited: Mapping[str, str]) -> Part:
    return Part(
        name=service.name,
        command=service.command,
        env=service_environment(service, runtime, inherited),
        health=[service.health_url],
        log=settings.logs_dir / f"{service.name}.log",
        pid_file=settings.run_dir / f"{service.name}.pid",
    )


def plan(settings: Settings, runtime: Runtime, inherited: Mapping[str, str], hub_command: list[str]) -> list[Part]:
    """The parts in start order, each with its command, environment, health checks and log (pure)."""
    mlflow = _service_part(settings, runtime, mlflow_process(settings, runtime), inherited)
    mlflow.before = [
        (
            "database migrations",
            [sys.executable, "-m", "mlflow", "db", "upgrade", mlflow_backend_uri(settings)],
        )
    ]
    models = _service_part(settings, runtime, models_process(settings, runtime), inherited)
    pipeline = _service_part(settings, runtime, pipeline_process(settings, runtime), inherited)
    router = Part(
        name="proxy",
        command=proxy.command(settings.ip, settings.port, runtime.proxy_api_port, runtime.hub_port),
        # The data dir in its environment marks it as this platform's (`up` after a crash finds it by that).
        env={
            "PATH": inherited.get("PATH", "/usr/bin:/bin"),
            "CONFIGPROXY_AUTH_TOKEN": runtime.proxy_auth_token,
            "MLOPSHUB_DATA_DIR": str(settings.data_dir),
        },
        # Its own health answer on the public address (its API would need the token).
        health=[f"{settings.public_url}/_chp_healthz"],
        log=settings.logs_dir / "proxy.log",
        pid_file=settings.run_dir / "proxy.pid",
    )
    public = settings.public_url
    hub = Part(
        name="hub",
        command=hub_command,
        env=hub_environment(settings, inherited),
        health=[
            f"{public}/hub/health",
            f"{public}/services/{MLFLOW_SERVICE}/health",
            f"{public}/services/{PIPELINE_SERVICE}/health",
            f"{public}/services/{MODELS_SERVICE}/health",
        ],
        log=settings.logs_dir / "hub.log",
        pid_file=settings.run_dir / "hub.pid",
        cwd=settings.data_dir,
        headers={"Authorization": f"token {runtime.admin_token}"},
    )
    return [mlflow, models, pipeline, router, hub]


def next_pause(pause: float, lived: float) -> float:
    """The pause before the next restart: back to the first after a stable run, else doubled up to the last."""
    if lived >= STABLE:
        return FIRST_PAUSE
    return min(LAST_PAUSE, pause * 2)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log (its last 64 KiB at most)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def refusal(answer: requests.Response) -> str | None:
    """Why a health check answered that the part will not become healthy by waiting, or None.

    Today: the pipeline's audit log is broken (it records nothing until an
    admin has looked), which no timeout mends.
    """
    if answer.status_code != 503:
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("status") != "audit log broken":
        return None
    audit = body.get("audit") or {}
    return (
        f"the audit log is broken at entry {audit.get('first_bad_entry')}: {audit.get('problem')}; "
        "run `mlopshub audit verify` (docs/admin-guide.md, Audit log)"
    )


class StartFailed(Exception):
    """A part did not come up; the message says how."""

    def __init__(self, part: Part, reason: str) -> None:
        super().__init__(reason)
        self.part = part


def become_subreaper() -> None:
    """Orphans below us (what a killed hub started) become our children instead of init's (Linux only)."""
    if sys.platform.startswith("linux"):
        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) by renaming a new file over it, so readers see it whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


class Supervisor:
    """Starts, watches and stops the parts; see the module's docstring."""

    def __init__(
        self, settings: Settings, parts: list[Part], say: Callable[[str], None] = print, hub_api: str = ""
    ) -> None:
        self.settings = settings
        self.parts = parts
        self.say = say
        #: The hub's REST API (internal address), to stop the workspaces on ``down``.
        self.hub_api = hub_api
        self.stopping = False
        self.restart_requested = False
        self.state = "starting"
        self.failure: dict[str, str] | None = None

    # --- state for `up` and `status` -------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.settings.run_dir / "supervisor.json"

    def report(self) -> None:
        write_private(
            self.state_file,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "state": self.state,
                    "failure": self.failure,
                    "parts": {
                        part.name: {
                            "pid": part.process.pid if part.process else None,
                            "state": part.state,
                            "restarts": part.restarts,
                            "log": str(part.log),
                            "health": part.health[0],
                        }
                        for part in self.parts
                    },
                },
                indent=2,
            ),
        )

    # --- one part --------------------------------------------------------------------------------------

    def _open_log(self, part: Part) -> int:
        return os.open(part.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _run_before(self, part: Part, deadline: float) -> None:
        for what, command in part.before:
            self.say(f"{part.name}: {what}")
            log = self._open_log(part)
            try:
                process = subprocess.Popen(
                    command, env=part.env, cwd=part.cwd, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            finally:
                os.close(log)
            while process.poll() is None:
                if self.stopping or time.monotonic() > deadline:
                    _stop_group(process, 10)
                    raise StartFailed(part, f"{what} did not finish in {self.settings.start_timeout:.0f}s")
                time.sleep(0.2)
            if process.returncode != 0:
                raise StartFailed(part, f"{what} failed (exit code {process.returncode})")

    def _spawn(self, part: Part) -> None:
        log = self._open_log(part)
        try:
            part.process = subprocess.Popen(
                part.command, env=part.env, cwd=part.cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(log)
        part.started_at = time.monotonic()
        part.state = "starting"
        write_private(part.pid_file, f"{part.process.pid}\n")
        self.report()

    def healthy(self, part: Part, timeout: float = 5) -> bool:
        """Whether every health check of ``part`` answers 200 now."""
        try:
            return all(
                requests.get(url, headers=part.headers, timeout=timeout).status_code == 200 for url in part.health
            )
        except requests.RequestException:
            return False

    def start(self, part: Part) -> None:
        """Run what comes before ``part``, start it and wait until it is healthy, or raise :class:`StartFailed`."""
        deadline = time.monotonic() + self.settings.start_timeout
        self._run_before(part, deadline)
        self.say(f"{part.name}: starting")
        self._spawn(part)
        assert part.process is not None
        checks = list(part.health)
        while checks:
            if self.stopping:
                raise StartFailed(part, "stopped while starting")
            if part.process.poll() is not None:
                raise StartFailed(part, f"exited with code {part.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise StartFailed(
                    part, f"not healthy after {self.settings.start_timeout:.0f}s (no answer from {checks[0]})"
                )
            try:
                answer = requests.get(checks[0], headers=part.headers, timeout=5)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code == 200:
                checks.pop(0)
                continue
            if answer is not None and (broken := refusal(answer)):
                raise StartFailed(part, broken)
            time.sleep(0.3)
        part.state = "healthy"
        self.say(f"{part.name}: healthy (pid {part.process.pid})")
        self.report()

    def stop(self, part: Part) -> None:
        """SIGTERM to the part's process group, SIGKILL after its grace."""
        if part.process is not None and part.process.poll() is None:
            self.say(f"{part.name}: stopping")
            _stop_group(part.process, STOP_GRACE.get(part.name, 20.0))
        part.state = "stopped"
        part.pid_file.unlink(missing_ok=True)

    # --- the whole platform ----------------------------------------------------------------------------

    def start_all(self) -> bool:
        """Start the parts in order; on a failure, stop what started and record which part and why."""
        for part in self.parts:
            try:
                self.start(part)
            except StartFailed as failed:
                part.state = "failed"
                self.failure = {"part": failed.part.name, "reason": str(failed), "log": str(failed.part.log)}
                self.say(f"{failed.part.name}: {failed}")
                self.stop_all()
                self.state = "failed"
                self.report()
                return False
        self.state = "ready"
        self.report()
        self.say(f"mlopshub is running at {self.settings.public_url}/")
        return True

    def stop_all(self) -> None:
        """Stop the workspaces, then the parts in the reverse order, then anything still below the supervisor."""
        self.state = "stopping"
        self.report()
        self.stop_workspaces()
        below = _descendants(os.getpid())
        for part in reversed(self.parts):
            self.stop(part)
        stop_processes([process for process in below + _descendants(os.getpid()) if process.is_running()])
        self.reap()

    def stop_workspaces(self) -> None:
        """Have the hub stop every running workspace (it keeps them across its own restarts), within a bound;
        what is left is stopped with the rest of the tree."""
        hub = next((part for part in self.parts if part.name == "hub"), None)
        if hub is None or hub.process is None or hub.process.poll() is not None or not self.hub_api:
            return
        deadline = time.monotonic() + WORKSPACES_STOP_TIMEOUT
        try:
            active = self._active_servers(hub)
            if active:
                self.say(f"hub: stopping {len(active)} workspace(s)")
            for path in active:
                requests.delete(f"{self.hub_api}{path}", headers=hub.headers, timeout=10)
            while active and time.monotonic() < deadline:
                time.sleep(1)
                active = self._active_servers(hub)
        except (requests.RequestException, ValueError) as error:
            self.say(f"hub: could not stop the workspaces through its API ({error}); stopping their processes")

    def _active_servers(self, hub: Part) -> list[str]:
        """API paths of the running (or starting) servers: ``/users/<name>/server`` or ``.../servers/<name>``."""
        answer = requests.get(f"{self.hub_api}/users", params={"state": "active"}, headers=hub.headers, timeout=10)
        answer.raise_for_status()
        return [
            f"/users/{quote(user['name'])}/" + (f"servers/{quote(server)}" if server else "server")
            for user in answer.json()
            for server in (user.get("servers") or {})
        ]

    def restart_parts(self) -> None:
        """Restart the parts that ``<run>/restart.json`` names, one at a time in start order (``mlopshub restart``).

        Workspaces are kept (the hub does not stop them, :func:`_stop_group` spares them); a part that does not
        come back is left to :meth:`watch`, which starts it again with backoff.
        """
        self.restart_requested = False
        request = self.settings.run_dir / "restart.json"
        try:
            names = set(json.loads(request.read_text()).get("parts") or RESTART_DEFAULT)
        except (OSError, ValueError):
            names = set(RESTART_DEFAULT)
        request.unlink(missing_ok=True)
        self.state = "restarting"
        self.report()
        for part in self.parts:
            if part.name not in names or self.stopping:
                continue
            self.stop(part)
            part.restarts += 1
            try:
                self.start(part)
            except StartFailed as failed:
                self.say(f"{part.name}: {failed}; it will be started again")
                part.state = "waiting"
                part.restart_at = time.monotonic() + part.pause
        self.state = "ready"
        self.report()

    def watch(self) -> None:
        """Until SIGTERM: restart a part that died (with backoff), mark one healthy again when it answers."""
        while not self.stopping:
            if self.restart_requested:
                self.restart_parts()
            self.reap()
            now = time.monotonic()
            for part in self.parts:
                if part.process is None or self.stopping:
                    continue
                if part.process.poll() is None:
                    part.below = _descendants(part.process.pid)
                    if part.state == "starting" and self.healthy(part, timeout=2):
                        part.state = "healthy"
                        self.say(f"{part.name}: healthy again (pid {part.process.pid})")
                        self.report()
                elif part.state != "waiting":
                    self.stop_orphans(part)
                    lived = now - part.started_at
                    part.pause = next_pause(part.pause, lived) if part.restarts else FIRST_PAUSE
                    part.restart_at = now + part.pause
                    part.state = "waiting"
                    self.say(f"{part.name}: exited with code {part.process.returncode}; restart in {part.pause:.0f}s")
                    self.report()
                elif part.state == "waiting" and now >= part.restart_at:
                    part.restarts += 1
                    self._spawn(part)
            time.sleep(0.5)

    def stop_orphans(self, part: Part) -> None:
        """Stop what a part that died had started, so that its next run does not find a second copy (the
        hub's services, its proxy; the pipeline's model servers). Workspaces are kept: the hub's next run
        finds them through their spawner's state."""
        orphans = [process for process in part.below if process.is_running() and not _is_workspace(process)]
        if orphans:
            self.say(f"{part.name}: stopping {len(orphans)} process(es) it left")
            stop_processes(orphans)
        part.below = []

    def reap(self) -> None:
        """Collect orphans that died below us (our own parts are collected by their Popen)."""
        ours = {part.process.pid for part in self.parts if part.process is not None}
        for child in _children(os.getpid()):
            try:
                if child.pid not in ours and child.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(child.pid, os.WNOHANG)
            except (psutil.Error, ChildProcessError):
                pass

    def on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.restart_requested = True
        else:
            self.stopping = True


def _is_workspace(process: psutil.Process) -> bool:
    """A user's server or one of its kernels (the hub sets ``JUPYTERHUB_USER`` for them, not for services)."""
    try:
        return bool(process.environ().get("JUPYTERHUB_USER"))
    except psutil.AccessDenied:
        return True  # another user's: a workspace (the platform's own processes run as its user)
    except psutil.Error:
        return False


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.Error:
        return []


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to ``process``'s group (it leads one: started in a session of its own), SIGKILL after ``grace``,
    then to what it started in sessions of their own, workspaces excepted (the hub keeps them across restarts;
    ``down`` stops them)."""
    below = [child for child in _descendants(process.pid) if not _is_workspace(child)]
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    # What it started in sessions of their own, and did not stop itself.
    stop_processes([child for child in below if child.is_running()])


def stop_processes(processes: list[psutil.Process], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def run(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Start the platform, watch it until SIGTERM, stop it; exit code 1 when the start failed."""
    from .launcher import hub_command, load_runtime

    become_subreaper()
    runtime = load_runtime(settings)
    parts = plan(settings, runtime, os.environ, hub_command())
    supervisor = Supervisor(settings, parts, say, hub_api=hub_api_url(runtime))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    pid_file = settings.run_dir / "supervisor.pid"
    write_private(pid_file, f"{os.getpid()}\n")
    try:
        if not supervisor.start_all():
            return 1
        supervisor.watch()
        supervisor.stop_all()
        supervisor.state = "stopped"
        supervisor.report()
        say("mlopshub stopped.")
        return 0
    finally:
        if supervisor.state != "failed":
            supervisor.state_file.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


def main() -> None:
    """``python -m mlopshub.supervisor`` (started by ``mlopshub up``)."""

    def say(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} mlopshub.supervisor {message}", flush=True)

    sys.exit(run(from_env(), say))


if __name__ == "__main__":
    main()
