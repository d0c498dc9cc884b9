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
team): ours 27 MB PSS against 369 MB for one more ``mlflow models serve``
(0.07x); a second team pays its own zygote once (~250 MB PSS with its first
server). Publishing to a staging endpoint that answers takes 0.25 s median
against 4.7 s by hand (registry + ``mlflow models serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .sandbox import RunAs, model_environment, popen_options
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
    """One model version served by one process on a fixed local address.

    :meth:`start` opens the listening socket, starts the process (forked from
    ``team``'s zygote, or spawned, per ``start_method``) and returns once
    ``/ping`` answers; a supervisor task then restarts the process whenever
    it exits or stops answering, on the same socket, so the address never
    changes. :attr:`active` counts requests the proxy has in flight to this
    server (see :meth:`drain`). ``zygotes`` is the pool forking servers
    (the process-wide one by default; :class:`Endpoints` passes its own).
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
        self.active = 0
        self.restarts = 0
        self._socket: socket.socket | None = None
        self._process: psutil.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None  # only when spawned: we are its parent and reap it
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._client = AsyncHTTPClient(force_instance=True)

    # --- state ---

    @property
    def port(self) -> int:
        """The local port the server listens on (fixed for its whole life)."""
        if self._socket is None:
            raise RuntimeError(f"model server {self.label} is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The model server process's id, or None when none is running."""
        return self._process.pid if self._alive() else None

    # --- life cycle ---

    async def start(self) -> None:
        """Start the server process and wait until it answers; :class:`ServerFailed` if it does not."""
        if not (self.model_path / "MLmodel").is_file():
            raise ServerFailed(f"{self.model_path} is not an MLflow model (no MLmodel file); download the model first")
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(256)
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
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._client.close()

    async def drain(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait until no request is in flight through the proxy (True), or ``timeout`` passed (False)."""
        return await until_idle(lambda: self.active, timeout)

    async def healthy(self) -> bool:
        """Whether ``/ping`` answers 200 right now."""
        try:
            response = await self._client.fetch(f"{self.url}/ping", request_timeout=5, raise_error=False)
        except (OSError, HTTPClientError):
            return False
        return response.code == 200

    # --- inside ---

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
                pid = await zygotes.of(self.team).fork(self._socket, self.model_path, self.log_path)
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
            except ServerFailed as error:
                log.error("%s; trying again", error)
                await self._terminate()
                await asyncio.sleep(min(30.0, self.poll_interval * 10))
