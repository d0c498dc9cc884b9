"""A supervised model server: one scoring process for one model version, restarted if it dies.

Measured on this machine (2 cores, a small scikit-learn model, start = spawn
until ``/ping`` answers 200, memory of the whole process tree):

=====================================================  ========  ======  ==========
how                                                    start     RSS     processes
=====================================================  ========  ======  ==========
``mlflow models serve --env-manager local --workers 1``  4.8-5.1 s  551 MB  2
``python -m mlopshub.serving.scoring`` (this module)     3.8-4.0 s  312 MB  1
=====================================================  ========  ======  ==========

The saving is the CLI process that ``mlflow models serve`` keeps beside its
uvicorn child, and the re-download it does on every start (our caller
downloads a version once). Most of what is left is importing MLflow and
scikit-learn; the next step for the benchmark targets is to fork model
servers from a pre-imported parent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

log = logging.getLogger("mlopshub.serving")

#: Seconds a new server may take to answer /ping before it is given up.
START_TIMEOUT = 120.0
#: Seconds between supervisor checks.
POLL_INTERVAL = 0.5
#: Failed /ping checks in a row after which a running but unresponsive server is killed and replaced.
UNHEALTHY_AFTER = 6
#: Seconds a server gets to finish after SIGTERM before SIGKILL.
STOP_TIMEOUT = 30.0


class ServerFailed(RuntimeError):
    """A model server did not start (or start again): names the model and the end of its log."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ModelServer:
    """One model version served by one scoring process on a fixed local address.

    :meth:`start` opens the listening socket, spawns the process and returns
    once ``/ping`` answers; a supervisor task then restarts the process
    whenever it exits or stops answering, on the same socket, so the address
    never changes. :attr:`active` counts requests the proxy has in flight to
    this server (see :meth:`drain`).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        label: str = "",
        log_path: str | Path | None = None,
        python: str = sys.executable,
        start_timeout: float = START_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
    ):
        self.model_path = Path(model_path)
        self.label = label or self.model_path.name
        self.log_path = Path(log_path) if log_path else None
        self.python = python
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.active = 0
        self.restarts = 0
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
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
        """The scoring process's id, or None when none is running."""
        return self._process.pid if self._process and self._process.poll() is None else None

    # --- life cycle ---

    async def start(self) -> None:
        """Spawn the scoring process and wait until it answers; :class:`ServerFailed` if it does not."""
        if not (self.model_path / "MLmodel").is_file():
            raise ServerFailed(f"{self.model_path} is not an MLflow model (no MLmodel file); download the model first")
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(256)
        try:
            await self._spawn_until_healthy()
        except BaseException:
            await self.stop()
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Stop supervising, let the process finish its requests (SIGTERM), then close the socket."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            self._supervisor = None
        await self._terminate()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._client.close()

    async def drain(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait until no request is in flight through the proxy (True), or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while self.active > 0:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def healthy(self) -> bool:
        """Whether ``/ping`` answers 200 right now."""
        try:
            response = await self._client.fetch(f"{self.url}/ping", request_timeout=5, raise_error=False)
        except (OSError, HTTPClientError):
            return False
        return response.code == 200

    # --- inside ---

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
        env = dict(os.environ)
        # The child imports mlopshub from wherever this process did (an installed package or the source tree).
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command, env=env, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        finally:
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        log.info("model server %s: pid %s on %s", self.label, self._process.pid, self.url)

    async def _spawn_until_healthy(self) -> None:
        self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                log_text = _tail(self.log_path) if self.log_path else "(no log kept)"
                raise ServerFailed(
                    f"model server {self.label} exited with code {self._process.returncode} while starting; "
                    f"its log ends:\n{log_text}"
                )
            if await self.healthy():
                return
            await asyncio.sleep(0.1)
        raise ServerFailed(f"model server {self.label} did not answer /ping within {self.start_timeout:.0f} s")

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def _supervise(self) -> None:
        """Replace the process when it exits or stops answering, until :meth:`stop`."""
        failures = 0
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            process = self._process
            dead = process is None or process.poll() is not None
            if not dead:
                failures = 0 if await self.healthy() else failures + 1
                if failures < UNHEALTHY_AFTER:
                    continue
                log.warning("model server %s: /ping failed %d times; replacing it", self.label, failures)
                await self._terminate()
            else:
                code = process.returncode if process else None
                log.warning("model server %s: process exited (code %s); restarting it", self.label, code)
            failures = 0
            try:
                await self._spawn_until_healthy()
                self.restarts += 1
            except ServerFailed as error:
                log.error("%s; trying again", error)
                await self._terminate()
                await asyncio.sleep(min(30.0, self.poll_interval * 10))
