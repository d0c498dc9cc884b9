"""A supervised model server: one process for one model version, restarted if it dies.

Two ways to start the process (``start_method``):

* ``"fork"`` (default): ask the team's warm parent (:mod:`.zygote`) to fork
  one; it has imported MLflow, pandas and scikit-learn already, so the child
  only loads its model. A dead child is forked again; a dead zygote is started
  again first.
* ``"spawn"``: run ``python -m mlopshub.serving.scoring`` (:mod:`.scoring`),
  which imports everything itself. Kept as a fallback (e.g. a flavour whose
  libraries do not survive ``fork``); it costs nothing to keep.

Measured on this machine (2 cores, a small scikit-learn model, start = from
asking until ``/ping`` answers 200; memory in MB, of the whole process tree;
PSS and USS from ``psutil.Process.memory_full_info()``; ``python -m bench
--only pipeline`` measures the same, see docs/benchmarks.md):

=========================================================  ==========  =====  =====  =====  ==========
how                                                        start       RSS    PSS    USS    processes
=========================================================  ==========  =====  =====  =====  ==========
``mlflow models serve --env-manager local --workers 1``    4.8-5.1 s   508    369    355    2
``spawn``: ``python -m mlopshub.serving.scoring``          3.8-4.0 s   312    —      —      1
``fork``: the zygote of a team (once per team)             3.0-4.0 s   297    76     26     1
``fork``: each model server forked from it                 0.06-0.07 s 227    64     26     1
=========================================================  ==========  =====  =====  =====  ==========

A forked server's RSS counts the pages it shares with its zygote; what one
more model really costs is its USS (freed if it stops), and its fair share of
what it shares is its PSS. The baseline shares nothing, so its cost per model
is its whole footprint. Per additional model (bench, 1 -> 4 servers of one
team, 2026-12-03): ours 22 MB PSS against 374 MB for one more ``mlflow models
serve`` (0.06x); a second team pays its own zygote once (~290 MB PSS with its
first server). Publishing to a staging endpoint that answers takes 0.6 s
median against 10.3 s by hand (registry + ``mlflow models serve``); the
current figures are in docs/benchmarks.md.

Where a server listens: a Unix stream socket, ``<socket_dir>/<16 hex>.sock``,
in a folder that belongs to the service's user and has mode 0700
(:func:`private_folder`), so only the service (and root) can connect; the
model server itself only gets the listening descriptor. No TCP port is
opened, so nothing on the machine's loopback answers for a model.
``socket_dir`` is the pipeline's ``<data dir>/sockets`` (see
``mlopshub.services.pipeline.service``), or a private temporary folder of
this process. A Unix socket's path has at most 107 bytes (``sun_path``):
a longer folder is refused when it is given, naming the limit.

What is served is what was registered: with ``digest``, every start (and so
every restart by the supervisor) has the process check the model folder
before it loads it (:func:`mlopshub.serving.scoring.serve`); a mismatch
raises :class:`~mlopshub.serving.integrity.IntegrityError` from
:meth:`ModelServer.start`, and a restart that meets one stops the server for
good (:attr:`ModelServer.refused`, :attr:`ModelServer.on_refused`) instead
of serving something else.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from .integrity import IntegrityError, verify_tree
from .sandbox import RunAs, model_environment, popen_options
from .upstream import unix_url
from .zygote import ZygoteFailed, Zygotes, shared_zygotes

log = logging.getLogger("mlopshub.serving")

#: Seconds a new server may take to answer /ping before it is given up.
START_TIMEOUT = 120.0
#: Seconds between supervisor checks.
POLL_INTERVAL = 0.5
#: Failed /ping checks in a row after which a running but unresponsive server is killed and replaced.
UNHEALTHY_AFTER = 6
#: Seconds a server gets to finish after SIGTERM before SIGKILL.
STOP_TIMEOUT = 30.0
#: How model server processes are started (see the module docstring).
START_METHODS = ("fork", "spawn")
#: Longest path of a Unix socket: ``sun_path`` holds 108 bytes, the last one a NUL.
MAX_SOCKET_PATH = 107
#: A socket's file name: 16 hex digits (random, so a replaced server never meets its predecessor's path) and ``.sock``.
SOCKET_NAME_LENGTH = 16 + len(".sock")


async def until_idle(active: Callable[[], int], timeout: float) -> bool:
    """Wait until ``active()`` (requests in flight to a server) is 0 (True), or ``timeout`` s passed (False)."""
    deadline = time.monotonic() + timeout
    while active() > 0:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class ServerFailed(RuntimeError):
    """A model server did not start (or start again): names the model and the end of its log."""


def private_folder(folder: str | Path) -> Path:
    """``folder`` (made if missing) as a folder of this process's user that only it can enter (mode 0700).

    :class:`ServerFailed` when it is a symlink or not a folder, or belongs to
    another user (someone else made it first: it cannot be trusted).
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise ServerFailed(f"socket folder {folder} is not a folder (a symlink is refused); remove it")
    if info.st_uid != os.geteuid():
        raise ServerFailed(
            f"socket folder {folder} belongs to uid {info.st_uid}, not to this service (uid {os.geteuid()}); "
            "remove it, the service makes it again"
        )
    os.chmod(folder, 0o700)
    return folder


def check_socket_folder(folder: str | Path) -> None:
    """ValueError when the sockets in ``folder`` would have paths longer than :data:`MAX_SOCKET_PATH` bytes."""
    longest = len(os.fsencode(str(folder))) + 1 + SOCKET_NAME_LENGTH
    if longest > MAX_SOCKET_PATH:
        raise ValueError(
            f"socket folder {folder} is too long for Unix sockets: a socket there has a {longest}-byte path, the "
            f"limit is {MAX_SOCKET_PATH} (sun_path); give a folder of at most "
            f"{MAX_SOCKET_PATH - 1 - SOCKET_NAME_LENGTH} bytes (socket_dir=)"
        )


def remove_stale_sockets(folder: str | Path) -> list[str]:
    """Remove the socket files left in ``folder`` (by a service that died); their names."""
    removed = []
    for entry in Path(folder).glob("*.sock"):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(entry.lstat().st_mode):
                entry.unlink()
                removed.append(entry.name)
    return removed


_default_socket_dir: Path | None = None


def default_socket_dir() -> Path:
    """This process's private socket folder for servers not given one (``mkdtemp``: 0700), removed at exit."""
    global _default_socket_dir
    if _default_socket_dir is None or not _default_socket_dir.is_dir():
        _default_socket_dir = Path(tempfile.mkdtemp(prefix="mlopshub-"))
        atexit.register(shutil.rmtree, _default_socket_dir, ignore_errors=True)
    return _default_socket_dir


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _running(process: psutil.Process | None) -> bool:
    """Whether ``process`` still runs (a zombie does not; a reused pid is another process)."""
    if process is None:
        return False
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ModelServer:
    """One model version served by one process on a fixed Unix socket.

    :meth:`start` opens the listening socket in ``socket_dir`` (see the
    module docstring), starts the process (forked from ``team``'s zygote,
    or spawned, per ``start_method``) and returns once ``/ping`` answers; a
    supervisor task then restarts the process whenever it exits or stops
    answering, on the same socket, so the address never changes.
    :attr:`active` counts requests the proxy has in flight to this server
    (see :meth:`drain`). ``zygotes`` is the pool forking servers (the
    process-wide one by default; :class:`Endpoints` passes its own).
    ``digest`` (``sha256:<hex>``, see :mod:`.integrity`) is checked by the
    process before it loads the model, at every start; None: not checked.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        label: str = "",
        log_path: str | Path | None = None,
        team: str = "",
        start_method: str = "fork",
        zygotes: Zygotes | None = None,
        python: str = sys.executable,
        start_timeout: float = START_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
        run_as: RunAs | None = None,
        socket_dir: str | Path | None = None,
        digest: str | None = None,
    ):
        if start_method not in START_METHODS:
            raise ValueError(f"start_method {start_method!r}: use one of {', '.join(START_METHODS)}")
        self.model_path = Path(model_path)
        self.label = label or self.model_path.name
        self.log_path = Path(log_path) if log_path else None
        self.team = team
        self.start_method = start_method
        self.zygotes = zygotes
        #: The account a spawned server runs as (forked ones run as their zygote's; see :mod:`.sandbox`).
        self.run_as = run_as
        self.python = python
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        #: The folder of the listening socket (None: :func:`default_socket_dir`).
        self.socket_dir = Path(socket_dir) if socket_dir else None
        #: The digest the model folder must have when the process loads it (None: not checked).
        self.digest = digest
        self.active = 0
        self.restarts = 0
        #: Why the supervisor stopped this server for good (the model folder no longer matches its digest).
        self.refused: str | None = None
        #: Called (``on_refused(server)``, may be a coroutine function) when the supervisor sets :attr:`refused`.
        self.on_refused: Callable[[ModelServer], Any] | None = None
        self.socket_path: Path | None = None
        self._socket: socket.socket | None = None
        self._process: psutil.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None  # only when spawned: we are its parent and reap it
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._health: aiohttp.ClientSession | None = None

    # --- state ---

    @property
    def url(self) -> str:
        """``http+unix://<socket path, percent-encoded>`` (see :func:`mlopshub.serving.upstream.unix_url`)."""
        if self.socket_path is None:
            raise RuntimeError(f"model server {self.label} is not started")
        return unix_url(self.socket_path)

    @property
    def pid(self) -> int | None:
        """The model server process's id, or None when none is running."""
        return self._process.pid if self._alive() else None

    # --- life cycle ---

    async def start(self) -> None:
        """Start the server process and wait until it answers.

        :class:`ServerFailed` if it does not;
        :class:`~mlopshub.serving.integrity.IntegrityError` if the model
        folder does not have :attr:`digest` (nothing was served).
        """
        if not (self.model_path / "MLmodel").is_file():
            raise ServerFailed(f"{self.model_path} is not an MLflow model (no MLmodel file); download the model first")
        self._listen()
        try:
            await self._start_until_healthy()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Stop supervising, let the process finish its requests (SIGTERM), then close the socket."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate()
        self._close_socket()
        if self._health is not None:
            await self._health.close()
            self._health = None

    async def drain(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait until no request is in flight through the proxy (True), or ``timeout`` passed (False)."""
        return await until_idle(lambda: self.active, timeout)

    async def healthy(self) -> bool:
        """Whether ``/ping`` answers 200 right now."""
        if self.socket_path is None:
            return False
        if self._health is None or self._health.closed:
            connector = aiohttp.UnixConnector(str(self.socket_path), limit=1)
            self._health = aiohttp.ClientSession(connector=connector, trust_env=False)
        try:
            async with self._health.get("http://localhost/ping", timeout=aiohttp.ClientTimeout(total=5)) as response:
                await response.read()
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    # --- inside ---

    def _listen(self) -> None:
        folder = self.socket_dir or default_socket_dir()
        check_socket_folder(folder)
        private_folder(folder)
        path = folder / f"{secrets.token_hex(8)}.sock"
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(str(path))
            os.chmod(path, 0o600)  # the folder already keeps others out; this says so twice
            listening.listen(256)
        except OSError as error:
            listening.close()
            raise ServerFailed(f"model server {self.label}: cannot listen on {path}: {error}") from error
        self._socket, self.socket_path = listening, path

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    async def _check_digest(self) -> None:
        """:class:`IntegrityError` naming this server when the model folder does not have :attr:`digest`."""
        if not self.digest:
            return
        try:
            await asyncio.to_thread(verify_tree, self.model_path, self.digest)
        except IntegrityError as error:
            raise IntegrityError(f"model server {self.label}: {error}") from error

    def _alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return _running(self._process)

    async def _launch(self) -> None:
        assert self._socket is not None
        if self.start_method == "spawn":
            self._spawn()
        else:
            zygotes = self.zygotes or shared_zygotes()
            try:
                pid = await zygotes.of(self.team).fork(self._socket, self.model_path, self.log_path, self.digest)
            except ZygoteFailed as error:
                raise ServerFailed(f"model server {self.label}: {error}") from error
            try:
                self._process = psutil.Process(pid)
            except psutil.NoSuchProcess:
                self._process = None  # already gone: reported with its log by _start_until_healthy
        log.info("model server %s: pid %s on %s (%s)", self.label, self.pid, self.url, self.start_method)

    def _spawn(self) -> None:
        assert self._socket is not None
        fd = self._socket.fileno()
        command = [
            self.python,
            "-m",
            "mlopshub.serving.scoring",
            "--fd",
            str(fd),
            "--model-path",
            str(self.model_path),
            "--parent",
            str(os.getpid()),
            *(["--digest", self.digest] if self.digest else []),
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._popen = subprocess.Popen(
                command,
                env=model_environment(self.run_as),
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                **popen_options(self.run_as),
            )
        finally:
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        self._process = psutil.Process(self._popen.pid)

    async def _start_until_healthy(self) -> None:
        await self._launch()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self._alive():
                await self._check_digest()  # the process refused its model: say why, as the exception's type
                code = self._popen.returncode if self._popen is not None else "unknown: it was forked"
                log_text = _tail(self.log_path) if self.log_path else "(no log kept)"
                raise ServerFailed(
                    f"model server {self.label} exited (code {code}) while starting; its log ends:\n{log_text}"
                )
            if await self.healthy():
                return
            await asyncio.sleep(0.05)
        raise ServerFailed(f"model server {self.label} did not answer /ping within {self.start_timeout:.0f} s")

    async def _terminate(self) -> None:
        process, popen = self._process, self._popen
        self._process = self._popen = None

        def running() -> bool:
            return popen.poll() is None if popen is not None else _running(process)

        if process is not None and running():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)  # psutil refuses if the pid now names another process
            deadline = time.monotonic() + STOP_TIMEOUT
            while running() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if running():
                with contextlib.suppress(psutil.Error):
                    process.kill()
        if popen is not None:
            await asyncio.to_thread(popen.wait)

    async def _supervise(self) -> None:
        """Replace the process when it exits or stops answering, until :meth:`stop`."""
        failures = 0
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            if self._alive():
                failures = 0 if await self.healthy() else failures + 1
                if failures < UNHEALTHY_AFTER:
                    continue
                log.warning("model server %s: /ping failed %d times; replacing it", self.label, failures)
                await self._terminate()
            else:
                code = self._popen.returncode if self._popen is not None else "unknown"
                log.warning("model server %s: process exited (code %s); restarting it", self.label, code)
            failures = 0
            try:
                await self._terminate()  # reaps a spawned child; nothing to do for a forked one
                await self._start_until_healthy()
                self.restarts += 1
            except IntegrityError as error:
                await self._refuse(error)
                return
            except ServerFailed as error:
                log.error("%s; trying again", error)
                await self._terminate()
                await asyncio.sleep(min(30.0, self.poll_interval * 10))

    async def _refuse(self, error: IntegrityError) -> None:
        """Stop for good: the model folder changed. The socket goes too, so callers fail fast instead of waiting."""
        self.refused = str(error)
        log.error("%s; it is no longer served", error)
        await self._terminate()
        self._close_socket()
        if self._health is not None:
            await self._health.close()
            self._health = None
        if self.on_refused is not None:
            outcome = self.on_refused(self)
            if inspect.isawaitable(outcome):
                await outcome
