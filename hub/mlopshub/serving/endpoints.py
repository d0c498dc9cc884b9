"""Online endpoints: which model server answers ``/services/models/{model}/{stage}/``.

A switch (promotion, rollback, a new staging version) never drops a request:
the new server is started and answers ``/ping`` before the mapping changes;
the change itself is one dict assignment on the event loop, so each request
is forwarded to either the old server or the new one, whole; the old server
is stopped only after the requests it has in flight are done
(:meth:`ModelServer.drain`).

Each team's model servers are forked from that team's own warm parent
(:class:`Zygotes`, one pool per registry), so starting one is cheap and
teams never share a process; :meth:`Endpoints.close` stops the servers, then
the zygotes.

The servers listen on Unix sockets in ``socket_dir`` (a folder only the
service's user can enter, see :mod:`.server`); the proxy reaches them over
kept-alive connections (:class:`Upstream`). A deploy with a ``digest`` serves
that version only if its folder still has that digest, at the start and at
every restart (:class:`~mlopshub.serving.integrity.IntegrityError`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sandbox import RunAs
from .server import ModelServer, check_socket_folder, private_folder, remove_stale_sockets
from .upstream import Upstream
from .zygote import Zygotes

log = logging.getLogger("mlopshub.serving")

STAGES = ("staging", "production")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class Endpoint:
    """One live endpoint: the model version it serves and the server doing it."""

    model: str
    stage: str
    version: str
    server: ModelServer

    def to_dict(self) -> dict[str, Any]:
        """What the pipeline API shows about it."""
        return {
            "model": self.model,
            "stage": self.stage,
            "version": self.version,
            "pid": self.server.pid,
            "restarts": self.server.restarts,
        }


class UnknownStage(ValueError):
    """A stage other than staging or production."""


def check_stage(stage: str) -> str:
    """``stage`` if it is one of :data:`STAGES`, else :class:`UnknownStage` naming them."""
    if stage not in STAGES:
        raise UnknownStage(f"unknown stage {stage!r}; endpoints are {' and '.join(STAGES)}")
    return stage


class Endpoints:
    """The registry of live endpoints, (model, stage) -> :class:`Endpoint`.

    ``server_factory(model_path, label=, log_path=, team=[, digest=])`` makes
    the server of a new endpoint (by default a :class:`ModelServer` forked
    from the team's zygote in :attr:`zygotes`; ``digest`` is passed only when
    a deploy has one). ``log_dir`` keeps each server's output, named after the
    model, stage and version, and each zygote's. ``socket_dir`` holds the
    servers' Unix sockets: made with mode 0700 if missing, refused if another
    user owns it or its paths would be too long, emptied of stale sockets
    here; None: a private temporary folder. ``on_refused(endpoint, reason)``
    (may be a coroutine function) is told when a supervised restart found
    the model folder changed: that endpoint has then stopped and is gone.
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        server_factory: Callable[..., ModelServer] | None = None,
        drain_timeout: float = 30.0,
        run_as: Mapping[str, RunAs] | None = None,
        socket_dir: str | Path | None = None,
        on_refused: Callable[[Endpoint, str], Any] | None = None,
    ):
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir = Path(socket_dir) if socket_dir else None
        if self.socket_dir:
            check_socket_folder(self.socket_dir)
            private_folder(self.socket_dir)
            if stale := remove_stale_sockets(self.socket_dir):
                log.info("removed %d stale sockets from %s", len(stale), self.socket_dir)
        self.on_refused = on_refused
        #: team -> the account its model servers run as (see :mod:`.sandbox`); empty: as this process.
        self.run_as = run_as if run_as is not None else {}  # may make accounts on demand: not copied
        self.zygotes = Zygotes(log_dir=self.log_dir, run_as=self.run_as)
        #: Kept-alive connections to the model servers, used by the proxy.
        self.upstream = Upstream()
        self.server_factory = server_factory or self._forked_server
        self.drain_timeout = drain_timeout
        self._live: dict[tuple[str, str], Endpoint] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def get(self, model: str, stage: str) -> Endpoint | None:
        """The endpoint answering for ``model`` at ``stage`` now, if any."""
        return self._live.get((model, stage))

    def all(self) -> list[Endpoint]:
        """Every live endpoint."""
        return list(self._live.values())

    def _forked_server(self, model_path: str | Path, **options: Any) -> ModelServer:
        run_as = self.run_as.get(options.get("team", ""))
        return ModelServer(model_path, zygotes=self.zygotes, run_as=run_as, socket_dir=self.socket_dir, **options)

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def deploy(
        self,
        model: str,
        stage: str,
        version: str,
        model_path: str | Path,
        team: str = "",
        digest: str | None = None,
    ) -> Endpoint:
        """Make ``model`` at ``stage`` serve ``version`` from ``model_path``; return the endpoint.

        ``team`` owns the model: its server is forked from that team's zygote
        (``""`` is a team of its own). ``digest`` (``sha256:<hex>``, see
        :func:`mlopshub.serving.integrity.tree_digest`) is what the folder
        must hold: the server process checks it before it loads the model, at
        this start and at every restart. On a mismatch this raises
        :class:`~mlopshub.serving.integrity.IntegrityError` (its message names
        the folder, both digests and the server) and nothing changes: the
        version served before, if any, keeps serving. Other start failures
        raise :class:`ServerFailed`. Converges: when that version is already
        served there, nothing changes. Switches for one endpoint are done one
        at a time.
        """
        check_stage(stage)
        key = (model, stage)
        async with self._lock(key):
            current = self._live.get(key)
            if current is not None and current.version == str(version) and current.server.pid is not None:
                return current
            label = _SAFE.sub("_", f"{model}-{stage}-v{version}")
            log_path = self.log_dir / f"{label}.log" if self.log_dir else None
            options: dict[str, Any] = {"label": label, "log_path": log_path, "team": team}
            if digest:
                options["digest"] = digest
            server = self.server_factory(model_path, **options)
            await server.start()
            endpoint = Endpoint(model=model, stage=stage, version=str(version), server=server)
            server.on_refused = functools.partial(self._refused, endpoint)
            self._live[key] = endpoint  # the switch: from here on new requests go to the new server
            log.info("endpoint %s/%s now serves version %s", model, stage, version)
            if current is not None:
                await self._retire(current)
            return endpoint

    async def undeploy(self, model: str, stage: str) -> None:
        """Stop serving ``model`` at ``stage`` (after its requests in flight finish)."""
        key = (model, check_stage(stage))
        async with self._lock(key):
            current = self._live.pop(key, None)
            if current is not None:
                await self._retire(current)

    async def warm(self, *teams: str) -> None:
        """Start the zygotes of ``teams`` now (at service start), so no first deploy waits for one."""
        await self.zygotes.warm(*teams)

    async def close(self) -> None:
        """Stop every endpoint, then every zygote (the service is shutting down)."""
        for endpoint in list(self._live.values()):
            await self.undeploy(endpoint.model, endpoint.stage)
        await self.zygotes.close()
        await self.upstream.close()

    async def _refused(self, endpoint: Endpoint, server: ModelServer) -> None:
        """A restart of ``endpoint``'s server found its model changed: it is stopped; drop it, tell ``on_refused``."""
        key = (endpoint.model, endpoint.stage)
        if self._live.get(key) is endpoint:
            del self._live[key]
            log.error(
                "endpoint %s/%s no longer serves version %s: %s", endpoint.model, endpoint.stage, endpoint.version,
                server.refused,
            )  # fmt: skip
        await self.upstream.forget(server.url)
        if self.on_refused is not None:
            outcome = self.on_refused(endpoint, server.refused or "")
            if inspect.isawaitable(outcome):
                await outcome

    async def _retire(self, endpoint: Endpoint) -> None:
        if not await endpoint.server.drain(self.drain_timeout):
            log.warning(
                "endpoint %s/%s version %s still had %d requests after %.0f s; stopping it anyway",
                endpoint.model,
                endpoint.stage,
                endpoint.version,
                endpoint.server.active,
                self.drain_timeout,
            )
        url = endpoint.server.url
        await endpoint.server.stop()
        await self.upstream.forget(url)
