"""The reverse proxy in front of the model servers: ``/services/models/{model}/{stage}/invocations`` and ``/ping``.

Each request is forwarded to the server the :class:`Endpoints` registry names
at that moment, and counted in its :attr:`ModelServer.active` until the answer
is back, so a switch drains the old server before stopping it. A request that
cannot reach its server (the process died and is being restarted) is sent
again until :data:`RETRY_FOR` seconds have passed: scoring has no side effects,
so repeating it is safe, and a crash then costs latency instead of errors.

Requests go to the model servers over the endpoints' kept-alive connections
(:class:`mlopshub.serving.upstream.Upstream`, over each server's Unix
socket); one the server has closed fails fast and is retried like any other.

A request's path and body are the caller's: nothing here logs them whole
(:func:`bounded`); a body nested too deeply for MLflow's parser is answered
400 by the model server (:func:`mlopshub.serving.scoring.scoring_app`).

Why written here and not taken from a library: configurable-http-proxy
(which already routes ``/services/models/`` to this service) and
jupyter-server-proxy forward to one address and answer an error while it is
down; neither counts a server's requests in flight so a switch can drain it,
nor resends a request to the server that replaced a crashed one. Proxies that
can retry (Envoy, Traefik) would be one more server to run and reconfigure at
every switch. The HTTP itself is tornado's (server) and aiohttp's (client,
:mod:`mlopshub.serving.upstream`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tornado import web
from tornado.log import app_log

from .endpoints import STAGES, Endpoint, Endpoints

#: Seconds a request keeps being retried while its model server is unreachable.
RETRY_FOR = 60.0
#: Headers passed to the model server.
FORWARDED_HEADERS = ("Content-Type", "Accept")
#: Characters of anything a caller sent (path, model name) that go into a log line or a message.
LOGGED_CHARS = 200


def bounded(text: str, limit: int = LOGGED_CHARS) -> str:
    """``text``, cut to ``limit`` characters with its full length said."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


#: ``authorize(handler, model, stage)``: return to allow, raise ``tornado.web.HTTPError(401/403)`` to refuse.
Authorize = Callable[[web.RequestHandler, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Answered:
    """A request an endpoint answered (what monitoring counts and captures)."""

    request_id: str
    model: str
    stage: str
    version: str
    status: int
    seconds: float
    content_type: str
    body: bytes
    answer: bytes


#: ``observe(answered)``: called on the event loop after each answered ``/invocations``; must not block.
Observe = Callable[[Answered], None]


class EndpointHandler(web.RequestHandler):
    """Forwards ``/invocations`` and ``/ping`` of one model's stage to its current model server."""

    def initialize(self, endpoints: Endpoints, authorize: Authorize | None, observe: Observe | None = None) -> None:
        self.endpoints = endpoints
        self.authorize = authorize
        self.observe = observe
        self.upstream = endpoints.upstream

    def check_xsrf_cookie(self) -> None:
        """Callers are programs with tokens, not browsers with cookies: no XSRF check."""

    def _request_summary(self) -> str:
        # Tornado's access log and error logs use this; the path is the caller's and may be megabytes long.
        return f"{self.request.method} {bounded(self.request.uri or '')} ({self.request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """As tornado's, without the whole request (its ``repr`` holds the path) for an unexpected error."""
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
        else:
            app_log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON in MLflow's shape (``error_code``, ``message``)."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(error, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error_code": f"HTTP_{status_code}", "message": message}))

    async def _authorized(self, model: str, stage: str) -> None:
        if stage not in STAGES:
            raise web.HTTPError(404, f"unknown stage {bounded(stage)!r}; endpoints are {' and '.join(STAGES)}")
        if self.authorize is not None:
            await self.authorize(self, model, stage)

    def _endpoint(self, model: str, stage: str) -> Endpoint:
        endpoint = self.endpoints.get(model, stage)
        if endpoint is None:
            raise web.HTTPError(
                404, f"model {bounded(model)!r} has no {stage} endpoint; publish it or check the release"
            )
        return endpoint

    async def get(self, model: str, stage: str, action: str) -> None:
        """``GET .../ping`` (or ``/health``, ``/version``): the model server's own answer."""
        if action not in ("ping", "health", "version"):
            raise web.HTTPError(405, f"GET is for ping, health and version; {action} takes POST")
        await self._forward(model, stage, action, method="GET", body=None)

    async def post(self, model: str, stage: str, action: str) -> None:
        """``POST .../invocations``: score, in MLflow's scoring protocol."""
        if action != "invocations":
            raise web.HTTPError(405, f"POST is for invocations; {action} takes GET")
        await self._forward(model, stage, action, method="POST", body=self.request.body)

    async def _forward(self, model: str, stage: str, action: str, *, method: str, body: bytes | None) -> None:
        await self._authorized(model, stage)  # once per request, before anything is looked up
        started = time.monotonic()
        headers = {name: self.request.headers[name] for name in FORWARDED_HEADERS if name in self.request.headers}
        deadline = time.monotonic() + RETRY_FOR
        while True:
            # Looked up again on each try: after a switch the retry goes to the new server.
            endpoint = self._endpoint(model, stage)
            server = endpoint.server
            server.active += 1
            try:
                response = await self.upstream.fetch(f"{server.url}/{action}", method, headers, body)
            finally:
                server.active -= 1
            if response is not None:
                break
            if time.monotonic() > deadline:
                self._answered(endpoint, 503, started, b"")
                raise web.HTTPError(503, f"the {stage} server of {bounded(model)} did not answer for {RETRY_FOR:.0f} s")
            await asyncio.sleep(0.1)
        self.set_status(response.code, response.reason)
        self.set_header("Content-Type", response.content_type)
        self.set_header("X-Mlopshub-Model-Version", endpoint.version)
        if action == "invocations":
            self._answered(endpoint, response.code, started, response.body)
        self.finish(response.body)

    def _answered(self, endpoint: Endpoint, status: int, started: float, answer: bytes) -> None:
        """Hand an answered scoring request to monitoring, with the id its caller gets to post an outcome."""
        if self.observe is None or self.request.method != "POST":
            return
        request_id = uuid.uuid4().hex
        self.set_header("X-Mlopshub-Request-Id", request_id)
        answered = Answered(
            request_id=request_id,
            model=endpoint.model,
            stage=endpoint.stage,
            version=endpoint.version,
            status=status,
            seconds=time.monotonic() - started,
            content_type=self.request.headers.get("Content-Type", ""),
            body=self.request.body,
            answer=answer,
        )
        try:
            self.observe(answered)
        except Exception:  # monitoring never fails a request
            app_log.exception("could not hand a request of %s/%s to monitoring", endpoint.model, endpoint.stage)


def endpoint_routes(
    prefix: str, endpoints: Endpoints, authorize: Authorize | None, observe: Observe | None = None
) -> list[tuple[str, Any, dict]]:
    """Tornado routes for ``{prefix}{model}/{stage}/{invocations|ping|health|version}``.

    ``prefix`` is e.g. ``/services/models/``. ``authorize`` decides who may
    call; ``None`` lets everyone (only for a server that is not reachable
    from outside). ``observe`` is told of every answered ``/invocations``
    (:class:`Answered`: monitoring's counts and capture).
    """
    return [
        (
            rf"{prefix.rstrip('/')}/([A-Za-z0-9][A-Za-z0-9_.-]*)/([a-z]+)/(invocations|ping|health|version)",
            EndpointHandler,
            {"endpoints": endpoints, "authorize": authorize, "observe": observe},
        )
    ]
