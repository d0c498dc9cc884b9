"""Warm parents ("zygotes"): one long-lived process per team that has imported MLflow and forks model servers.

``python -c "from mlopshub.serving.zygote import main; main()" --control-fd <n> --parent <pid> --team <name>``

Why: a model server spends most of its start importing MLflow, pandas and
scikit-learn (3.8-4.0 s, ~250 MB of its ~310 MB). A zygote does that once;
each model server is then a ``fork()`` of it that only loads its model and
answers MLflow's scoring protocol (:func:`mlopshub.serving.scoring.serve`), in a
fraction of a second, and shares the imported modules' pages copy-on-write
(``gc.freeze()`` keeps the collector from touching, and so copying, them).
The figures are in :mod:`mlopshub.serving.server`.

Isolation stays what it was where it matters: each model version is still
its own process (a crash or ``kill -9`` takes down one endpoint), and teams
never share a process or a parent: :class:`Zygotes` keeps one zygote per
team, so one team's model code never runs in, or is forked from, a process
another team's model touched. A zygote only imports libraries (the
:data:`PRELOAD` list); it never loads a model itself.

How sockets travel: the service (:class:`ModelServer`) opens each model's
listening socket, a Unix stream socket bound in a folder only the service's
own user can enter (mode 0700), and hands it to the zygote over a Unix
``SOCK_SEQPACKET`` socketpair with ``socket.send_fds``; the zygote forks, the
child serves on it, the zygote closes its copy and answers with the child's
pid. The zygote and its children run as the team's model account and never
need the socket's path, only the descriptor; a workspace, running as another
user, cannot reach the path, and no TCP port is open for it to find.
Keeping the socket in the service (rather than letting the zygote open one)
keeps the address fixed for the endpoint's whole life, through child
restarts and zygote restarts alike, and requests that arrive while a child
is being replaced wait in the socket's backlog instead of being refused.
``SOCK_SEQPACKET`` keeps one message per request, so no framing is needed.

What is served is what was registered: a fork request may carry the model
folder's recorded digest; the child checks it
(:func:`mlopshub.serving.integrity.verify_tree`) before it loads the model,
and exits on a mismatch, at every fork (so at every supervised restart too).

Lifetimes: the zygote exits when its control socket closes (the service
stopped it or died) or its parent is gone; a child gets ``SIGKILL`` when the
zygote dies (``PR_SET_PDEATHSIG``, with a polling watch as a fallback), so no
model server outlives the service. The zygote ignores ``SIGCHLD`` so the
kernel reaps its children at once; the service watches a child by pid
(:mod:`psutil`, which also guards against pid reuse).

Why written here and not taken from a library: none forks per team as that
team's own account and hands each child a socket its caller opened.
``multiprocessing``'s ``forkserver`` is one server per program, as the
program's user, forking only its own ``Process`` objects; gunicorn's
``--preload`` forks workers of one application sharing one listener; and
supervisord or circus watch only what they start themselves, with ``exec``,
so every start would pay the imports again. The supervision (restarts, the
parent-death signal, pid checks through :mod:`psutil`) follows from that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .integrity import IntegrityError
from .sandbox import RunAs, model_environment, popen_options
from .scoring import REFUSED, exit_with_parent, scoring_app, serve

log = logging.getLogger("mlopshub.serving")

#: Modules a zygote imports before it forks: MLflow's scoring server and what a pyfunc scikit-learn
#: model needs to load and answer. A module missing here still works in a child; it is just imported
#: there, at start, into pages of its own. Add the flavours your teams serve (e.g. ``xgboost``).
PRELOAD = (
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.pyfunc.scoring_server",
    "mlflow.sklearn",
    "mlflow.models.utils",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.off",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.h11_impl",
    "pandas",
    "sklearn",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.tree",
)
#: Seconds a zygote may take to import :data:`PRELOAD` and say it is ready.
READY_TIMEOUT = 120.0
#: Seconds a zygote may take to answer one fork request.
FORK_TIMEOUT = 30.0
#: Seconds between the zygote's checks that its parent is alive.
PARENT_CHECK = 1.0
#: Seconds a zygote gets to exit after its control socket is closed, before SIGKILL.
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class ZygoteFailed(RuntimeError):
    """A zygote did not start or did not answer a fork request: names the team and the end of its log."""


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None:
        return "(no log kept)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the service side ---------------------------------------------------------------------------------------------


#: Seconds a :meth:`Zygote.call` child may take (gates load and score a model on the hold-out set).
CALL_TIMEOUT = 900.0


class Zygote:
    """The service's handle on one team's zygote process: start it, ask it to fork, stop it."""

    def __init__(
        self,
        team: str,
        *,
        python: str = sys.executable,
        log_path: str | Path | None = None,
        run_as: RunAs | None = None,
    ):
        self.team = team
        self.python = python
        #: The account the zygote (and so every server it forks) runs as; None: as this process.
        self.run_as = run_as
        self.log_path = Path(log_path) if log_path else None
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The zygote's process id, or None when it is not running."""
        return self._process.pid if self.alive() else None

    def alive(self) -> bool:
        """Whether the zygote process is running."""
        return self._process is not None and self._process.poll() is None

    async def start(self) -> None:
        """Start the zygote and wait until it has imported :data:`PRELOAD`; :class:`ZygoteFailed` if it does not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [
            self.python,
            # Not ``-m``: the package imports this module, and runpy warns when it runs one already imported.
            "-c",
            "from mlopshub.serving.zygote import main; main()",
            "--control-fd",
            str(theirs.fileno()),
            "--parent",
            str(os.getpid()),
            "--team",
            self.team,
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command,
                # No secrets of the service (tokens, the MLflow password) reach model code.
                env=model_environment(self.run_as),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                **popen_options(self.run_as),
            )
        finally:
            theirs.close()
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        self._control = ours
        try:
            ready = await asyncio.to_thread(self._receive, READY_TIMEOUT)
        except ZygoteFailed:
            await self.stop()
            raise
        log.info("zygote of team %r: pid %s ready (%s)", self.team, self._process.pid, ready)

    async def fork(
        self,
        listening: socket.socket,
        model_path: str | Path,
        log_path: str | Path | None,
        digest: str | None = None,
    ) -> int:
        """Fork a model server for ``model_path`` serving on ``listening``; return its pid.

        With ``digest``, the child checks the folder against it before loading
        and exits on a mismatch. Starts the zygote first if it is not running
        (first use, or it died).
        """
        request: dict[str, Any] = {"model_path": str(model_path)}
        if digest:
            request["digest"] = digest
        async with self._lock:
            await self._ensure_running()
            # The service opens the server's log, so the zygote's account needs no write access to the log folder.
            fds = [listening.fileno()]
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640) if log_path else None
            if log_fd is not None:
                fds.append(log_fd)
            try:
                answer = await asyncio.to_thread(self._ask, request, fds)
            finally:
                if log_fd is not None:
                    os.close(log_fd)
        if "error" in answer:
            raise ZygoteFailed(
                f"zygote of team {self.team!r} could not fork a server for {model_path}: {answer['error']}"
            )
        return int(answer["pid"])

    async def call(self, target: str, request_path: str | Path, timeout: float = CALL_TIMEOUT) -> Any:
        """Run ``target`` (``"module:function"``) on the JSON in ``request_path`` in a forked child; its result.

        For short jobs on a team's model code that should not pay a cold
        Python start (the release gates): the child starts from the warm,
        preloaded zygote, as the team's account, and writes its result, as
        JSON, to a pipe only this process reads. :class:`ZygoteFailed` with the
        child's error when it raised, died or took longer than ``timeout``.
        """
        read_end, write_end = os.pipe()
        try:
            async with self._lock:
                await self._ensure_running()
                try:
                    answer = await asyncio.to_thread(
                        self._ask, {"call": target, "request": str(request_path)}, [write_end]
                    )
                finally:
                    os.close(write_end)
            if "error" in answer:
                raise ZygoteFailed(f"zygote of team {self.team!r} could not run {target}: {answer['error']}")
            data = await asyncio.to_thread(_read_until_closed, read_end, timeout)
        finally:
            os.close(read_end)
        if not data:
            raise ZygoteFailed(f"{target} in the zygote of team {self.team!r} died before answering")
        outcome = json.loads(data)
        if "error" in outcome:
            raise ZygoteFailed(f"{target} failed: {outcome['error']}\n{outcome.get('trace', '')}")
        return outcome["result"]

    async def _ensure_running(self) -> None:
        """Start the zygote if it is not running (first use, or it died); under :attr:`_lock`."""
        if self.alive():
            return
        if self._process is not None:
            log.warning("zygote of team %r exited (code %s); starting it again", self.team, self._process.poll())
            self.restarts += 1
            await self.stop()
        await self.start()

    async def stop(self) -> None:
        """Close the control socket (the zygote exits, its children with it); SIGKILL after :data:`STOP_TIMEOUT`."""
        control, self._control = self._control, None
        if control is not None:
            control.close()
        process, self._process = self._process, None
        if process is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)

    def _ask(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        assert self._control is not None
        try:
            socket.send_fds(self._control, [json.dumps(request).encode()], fds)
        except OSError as error:
            gone = f"zygote of team {self.team!r} is gone ({error}); its log ends:\n{_tail(self.log_path)}"
            raise ZygoteFailed(gone) from error
        return self._receive(FORK_TIMEOUT)

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self._control is not None
        self._control.settimeout(timeout)
        try:
            data = self._control.recv(65536)
        except OSError as error:
            data, reason = b"", str(error)
        else:
            reason = "it closed its end"
        if not data:
            raise ZygoteFailed(
                f"zygote of team {self.team!r} did not answer ({reason}); its log ends:\n{_tail(self.log_path)}"
            )
        return dict(json.loads(data))


class Zygotes:
    """One :class:`Zygote` per team, started on first use and kept warm until :meth:`close`.

    ``log_dir`` keeps each zygote's output as ``zygote-<team>.log``.
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        python: str = sys.executable,
        run_as: Mapping[str, RunAs] | None = None,
    ):
        self.log_dir = Path(log_dir) if log_dir else None
        self.python = python
        #: team -> the account its zygote runs as (see :mod:`.sandbox`).
        self.run_as = run_as if run_as is not None else {}  # may make accounts on demand: not copied
        self._teams: dict[str, Zygote] = {}

    def of(self, team: str) -> Zygote:
        """The zygote of ``team`` (not started until its first fork)."""
        if team not in self._teams:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in team) or "default"
            log_path = self.log_dir / f"zygote-{safe}.log" if self.log_dir else None
            self._teams[team] = Zygote(team, python=self.python, log_path=log_path, run_as=self.run_as.get(team))
        return self._teams[team]

    async def warm(self, *teams: str) -> None:
        """Start the zygotes of ``teams`` now, so their first model server starts as fast as the next."""
        for team in teams:
            zygote = self.of(team)
            async with zygote._lock:
                if not zygote.alive():
                    await zygote.start()

    def pids(self) -> dict[str, int | None]:
        """team -> the pid of its zygote (None when not running)."""
        return {team: zygote.pid for team, zygote in self._teams.items()}

    async def close(self) -> None:
        """Stop every zygote (and so any model server still forked from one)."""
        for zygote in list(self._teams.values()):
            await zygote.stop()


_shared: Zygotes | None = None


def shared_zygotes() -> Zygotes:
    """The process-wide pool for model servers made without one (an :class:`Endpoints` has its own)."""
    global _shared
    if _shared is None:
        _shared = Zygotes()
    return _shared


# --- the zygote process --------------------------------------------------------------------------------------------


def preload(modules: tuple[str, ...] = PRELOAD, warm_up: bool = True) -> None:
    """Import ``modules`` (and :func:`warm_up`), then freeze the heap.

    ``gc.freeze()`` moves every object to a generation the collector never
    scans again, so it never writes to (and so copies) the shared pages.
    """
    for name in modules:
        importlib.import_module(name)
    if warm_up:
        try:
            warm_up_scoring()
        except Exception as error:  # a cold import in each child is slower, not wrong
            print(f"warm-up failed, model servers will import more themselves: {error!r}", flush=True)
    gc.collect()
    gc.freeze()


def warm_up_scoring() -> None:
    """Save, load and score a throw-away scikit-learn model, the way a model server will.

    MLflow's loaders and pandas import much of what they need on first use
    (the sklearn flavour alone pulls in ``skops``, most of ``sklearn`` and
    ``scipy.io``: ~0.8 s and ~20 MB per server). Doing it once here puts those
    pages in the zygote, shared by every child. The model is the zygote's own
    eight-row toy, never a team's.
    """
    import tempfile
    import warnings

    import mlflow.sklearn
    import pandas as pd
    from mlflow.pyfunc import scoring_server
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "b": [1.0, 0.0] * 4})
    environment = dict(os.environ)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        one_thread: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        # No OpenMP/BLAS worker pool may be started before fork: a child inheriting a busy pool can hang.
        one_thread = threadpool_limits(limits=1)
    with (
        one_thread,
        tempfile.TemporaryDirectory(prefix="mlopshub-zygote-") as folder,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # the toy's inferred schema is of no interest to anyone
        model = LogisticRegression().fit(frame, [0, 1] * 4)
        path = Path(folder) / "model"
        mlflow.sklearn.save_model(model, path, input_example=frame.head(2), pip_requirements=["scikit-learn"])
        loaded = scoring_server.load_model_with_mlflow_config(str(path))
        scoring_app(loaded)
        body = json.dumps({"dataframe_split": frame.head(2).to_dict(orient="split")})
        scoring_server.invocations(body, "application/json", loaded, loaded.metadata.get_input_schema())
    os.environ.clear()
    os.environ.update(environment)  # scoring_app() marks the process as serving; children set that themselves


def _die_with_parent(parent: int) -> None:
    """In a forked child: be killed when the zygote dies (Linux), and watch for it anyway (elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the zygote died before prctl took effect
        os._exit(0)
    exit_with_parent(parent)


def _run_child(fd: int, model_path: str, log_fd: int | None, zygote: int, digest: str | None = None) -> None:
    """The forked model server: never returns into the zygote's loop."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the model may run subprocesses and wait for them
        if log_fd is not None:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
        _die_with_parent(zygote)
        serve(fd, model_path, digest=digest)  # checks the digest before it loads anything
        code = 0
    except IntegrityError as error:
        print(f"refused: {error}", flush=True)
        code = REFUSED
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(control: socket.socket, request: dict[str, Any], fd: int, log_fd: int | None) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        control.close()
        _run_child(fd, request["model_path"], log_fd, zygote, request.get("digest"))
    return pid


def _fork_call(control: socket.socket, request: dict[str, Any], result_fd: int) -> int:
    """Fork a child that runs ``request["call"]`` on the JSON file ``request["request"]`` and writes the outcome."""
    sys.stdout.flush()
    sys.stderr.flush()
    zygote = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    control.close()
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent(zygote)
        module, _, name = str(request["call"]).partition(":")
        function = getattr(importlib.import_module(module), name)
        result = function(json.loads(Path(request["request"]).read_text()))
        outcome = json.dumps({"result": result})
    except BaseException as error:  # reported to the service, which decides what it means
        outcome = json.dumps({"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-3000:]})
    try:
        with os.fdopen(os.dup(result_fd), "wb") as out:
            out.write(outcome.encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _read_until_closed(fd: int, timeout: float) -> bytes:
    """Everything written to the pipe ``fd`` until its last writer closes it; TimeoutError after ``timeout`` s."""
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ZygoteFailed(f"no answer within {timeout:.0f} s")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def serve_forks(control: socket.socket, parent: int) -> None:
    """Answer fork requests on ``control`` until it closes or ``parent`` is gone."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no zombies
    control.send(json.dumps({"ready": os.getpid()}).encode())
    while os.getppid() == parent:
        readable, _, _ = select.select([control], [], [], PARENT_CHECK)
        if not readable:
            continue
        try:
            data, fds, _flags, _address = socket.recv_fds(control, 65536, 2)
        except OSError:
            return
        if not data:
            return  # the service closed its end
        try:
            if len(fds) not in (1, 2):
                raise ValueError(f"a request carries one or two file descriptors, this one {len(fds)}")
            request = json.loads(data)
            if "call" in request:
                answer: dict[str, Any] = {"pid": _fork_call(control, request, fds[0])}
            else:
                log_fd = fds[1] if len(fds) == 2 else None
                answer = {"pid": _fork(control, request, fds[0], log_fd)}
        except Exception as error:  # answered, not fatal: the next request may be fine
            answer = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                os.close(fd)
        control.send(json.dumps(answer).encode())


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="mlopshub.serving.zygote", description=__doc__.split("\n")[0])
    parser.add_argument("--control-fd", type=int, required=True, help="inherited Unix SOCK_SEQPACKET socket")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit when this process is gone")
    parser.add_argument("--team", default="", help="the team whose model servers this zygote forks (for logs)")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    started = time.monotonic()
    preload()
    print(f"zygote of team {args.team!r}: preloaded in {time.monotonic() - started:.1f} s", flush=True)
    try:
        serve_forks(control, args.parent)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
