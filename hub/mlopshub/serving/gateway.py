"""The models service (one machine): the data path, apart from the release pipeline's control path.

``python -m mlopshub.serving.gateway``, run by the supervisor, answers
``/services/models/{model}/{stage}/...`` (:func:`~.proxy.endpoint_routes`; who may call is
:func:`~mlopshub.services.pipeline.auth.endpoint_authorizer`) from model servers it owns
(:class:`~.endpoints.Endpoints`). The release pipeline switches endpoints through a control API on a Unix
socket (:class:`RemoteEndpoints` is its client). The routes it set are written to ``routes.json`` and served
again when this process starts, so:

* a restart, upgrade or crash of the pipeline, or MLflow being down, costs no request: the servers run here,
  from the pipeline's sealed model copies, each checked against its digest at every start;
* a crash of this process costs the time to fork its servers again from ``routes.json``, pipeline or not.

The control socket lies in a folder only the platform's user may enter (0700): whoever can connect is the
platform itself. A model server whose restart finds its model folder changed stops serving; that refusal
stays in ``routes.json`` until the pipeline has written it to the audit log (``GET``/``DELETE /refusals``).

Control API (JSON): ``GET /endpoints`` (live endpoints and pending refusals), ``PUT /endpoints/{model}/{stage}``
(``version``, ``path``, ``team``, ``digest``: serve that version; converges), ``DELETE
/endpoints/{model}/{stage}``, ``DELETE /refusals/{id}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket

from mlopshub.monitoring.capture import Capture
from mlopshub.monitoring.endpoints import monitoring_routes, observer

from .endpoints import Endpoint, Endpoints, check_stage
from .integrity import IntegrityError
from .proxy import Authorize, endpoint_routes
from .sandbox import RunAs
from .server import ServerFailed, private_folder
from .zygote import Zygotes

log = logging.getLogger("mlopshub.serving")

ROUTES_FILE = "routes.json"
CONTROL_SOCKET = "serving.sock"
#: Seconds the pipeline waits for a switch (a first start forks a server and loads its model).
CONTROL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Route:
    """What an endpoint serves: enough to start its server again without the pipeline."""

    model: str
    stage: str
    version: str
    path: str
    team: str = ""
    digest: str | None = None


def control_socket(pipeline_dir: str | Path) -> Path:
    """Where the control API listens: ``<pipeline dir>/control/serving.sock`` (folder 0700)."""
    return Path(pipeline_dir) / "control" / CONTROL_SOCKET


class RouteTable:
    """``routes.json``: the routes being served and the refusals the pipeline has not recorded yet.

    Written whole to a new file renamed over the old one (mode 0600), so a crash leaves the last table.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.routes: dict[tuple[str, str], Route] = {}
        self.refusals: list[dict[str, Any]] = []
        #: Model -> its team, for every model ever served here (a model's team never changes).
        self.owners: dict[str, str] = {}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            for entry in saved.get("routes", []):
                # Paths inside the pipeline's folder are kept relative to it: a restored data dir may move.
                route = Route(**{**entry, "path": str(self.path.parent / entry["path"])})
                self.routes[(route.model, route.stage)] = route
            self.refusals = list(saved.get("refusals", []))
            self.owners = dict(saved.get("owners", {}))

    def _relative(self, path: str) -> str:
        folder = self.path.parent.resolve()
        resolved = Path(path).resolve()
        return str(resolved.relative_to(folder)) if resolved.is_relative_to(folder) else path

    def team_of(self, model: str) -> str:
        """The team of ``model`` ("" for a model never served here: nobody but model risk may call it)."""
        return self.owners.get(model, "")

    def save(self) -> None:
        data = {
            "routes": [{**asdict(route), "path": self._relative(route.path)} for route in self.routes.values()],
            "refusals": self.refusals,
            "owners": self.owners,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
        os.replace(temporary, self.path)


class Gateway:
    """The endpoints and their routes table, kept in step (see the module's docstring)."""

    def __init__(self, endpoints: Endpoints, table: RouteTable):
        self.endpoints = endpoints
        self.table = table
        endpoints.on_refused = self._refused

    async def serve(self, route: Route) -> Endpoint:
        endpoint = await self.endpoints.deploy(
            route.model, route.stage, route.version, route.path, team=route.team, digest=route.digest
        )
        self.table.routes[(route.model, route.stage)] = route
        if route.team:
            self.table.owners[route.model] = route.team
        self.table.save()
        return endpoint

    async def stop_serving(self, model: str, stage: str) -> None:
        self.table.routes.pop((model, stage), None)
        self.table.save()
        await self.endpoints.undeploy(model, stage)

    async def restore(self) -> None:
        """Serve every route of the table again (at start); a route that cannot be served becomes a refusal."""
        routes = list(self.table.routes.values())
        outcomes = await asyncio.gather(*(self.serve(route) for route in routes), return_exceptions=True)
        for route, outcome in zip(routes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                what = f"{route.model}/{route.stage} version {route.version}"
                log.error("could not serve %s again: %s", what, outcome)
                self.table.routes.pop((route.model, route.stage), None)
                self._record_refusal(route.model, route.stage, route.version, f"{type(outcome).__name__}: {outcome}")
        log.info("serving %d endpoint(s) from %s", len(self.endpoints.all()), self.table.path)

    def _refused(self, endpoint: Endpoint, reason: str) -> None:
        if self.table.routes.get((endpoint.model, endpoint.stage), None) is not None:
            del self.table.routes[(endpoint.model, endpoint.stage)]
        self._record_refusal(endpoint.model, endpoint.stage, endpoint.version, reason)

    def _record_refusal(self, model: str, stage: str, version: str, reason: str) -> None:
        self.table.refusals.append(
            {"id": uuid.uuid4().hex[:12], "model": model, "stage": stage, "version": version, "reason": reason,
             "at": time.time()}
        )  # fmt: skip
        self.table.save()

    def describe(self) -> dict[str, Any]:
        live = []
        for endpoint in self.endpoints.all():
            route = self.table.routes.get((endpoint.model, endpoint.stage))
            live.append({**endpoint.to_dict(), "team": route.team if route else "", "digest": route and route.digest})
        return {"endpoints": live, "refusals": self.table.refusals}


# --- the control API (Unix socket) ---


class ControlHandler(web.RequestHandler):
    def initialize(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def check_xsrf_cookie(self) -> None:
        """Only the platform's user can reach the socket: no browser, no cookies."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        self.finish({"message": getattr(error, "log_message", None) or str(error or self._reason)})

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as error:
            raise web.HTTPError(400, f"the body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body


class EndpointsControl(ControlHandler):
    def get(self) -> None:
        self.finish(self.gateway.describe())


class EndpointControl(ControlHandler):
    async def put(self, model: str, stage: str) -> None:
        body = self.body()
        try:
            route = Route(
                model=model,
                stage=check_stage(stage),
                version=str(body["version"]),
                path=str(body["path"]),
                team=str(body.get("team") or ""),
                digest=body.get("digest") or None,
            )
        except (KeyError, ValueError) as error:
            raise web.HTTPError(400, f"a route needs version and path: {error}") from None
        try:
            endpoint = await self.gateway.serve(route)
        except IntegrityError as error:
            self.set_status(409)
            self.finish({"message": str(error), "kind": "integrity"})
            return
        except ServerFailed as error:
            self.set_status(502)
            self.finish({"message": str(error), "kind": "server"})
            return
        self.finish(endpoint.to_dict())

    async def delete(self, model: str, stage: str) -> None:
        await self.gateway.stop_serving(model, check_stage(stage))
        self.set_status(204)
        self.finish()


class RefusalControl(ControlHandler):
    def delete(self, refusal: str) -> None:
        self.gateway.table.refusals = [item for item in self.gateway.table.refusals if item["id"] != refusal]
        self.gateway.table.save()
        self.set_status(204)
        self.finish()


def control_app(gateway: Gateway) -> web.Application:
    args = {"gateway": gateway}
    name = r"([A-Za-z0-9][A-Za-z0-9_.-]*)"
    return web.Application(
        [
            (r"/endpoints/?", EndpointsControl, args),
            (rf"/endpoints/{name}/([a-z]+)/?", EndpointControl, args),
            (r"/refusals/([0-9a-f]+)/?", RefusalControl, args),
        ]
    )


# --- the pipeline's side ---


class RemoteEndpoints:
    """The pipeline's handle on the models service: :class:`Endpoints`' interface over the control socket.

    ``get``/``all`` answer from the table last read (each call that changes something reads it again, and
    :meth:`refresh` does). ``zygotes`` are the pipeline's own, for the gates it forks; ``close`` stops those
    and leaves every endpoint serving.
    """

    def __init__(self, socket_path: str | Path, run_as: Mapping[str, RunAs] | None = None, log_dir: Path | None = None):
        self.socket_path = str(socket_path)
        self.run_as = run_as if run_as is not None else {}  # may make accounts on demand: not copied
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.zygotes = Zygotes(log_dir=log_dir, run_as=self.run_as)
        self._live: dict[tuple[str, str], Endpoint] = {}
        self.refusals: list[dict[str, Any]] = []

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        connector = aiohttp.UnixConnector(path=self.socket_path)
        timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.request(method, f"http://models{path}", json=body) as response:
                    text = await response.text()
                    return response.status, (json.loads(text) if text else {})
        except (aiohttp.ClientError, OSError) as error:
            raise ServerFailed(f"the models service does not answer on {self.socket_path}: {error}") from error

    async def refresh(self) -> None:
        """Read the live endpoints and pending refusals from the models service."""
        status, body = await self._call("GET", "/endpoints")
        if status != 200:
            raise ServerFailed(f"the models service answered {status}: {body.get('message')}")
        self._live = {(item["model"], item["stage"]): _remote_endpoint(item) for item in body["endpoints"]}
        self.refusals = list(body.get("refusals", []))

    def get(self, model: str, stage: str) -> Endpoint | None:
        return self._live.get((model, stage))

    def all(self) -> list[Endpoint]:
        return list(self._live.values())

    async def deploy(
        self, model: str, stage: str, version: str, model_path: str | Path, team: str = "", digest: str | None = None
    ) -> Endpoint:
        """As :meth:`Endpoints.deploy`, in the models service; its errors come back as the same exceptions."""
        body = {"version": str(version), "path": str(model_path), "team": team, "digest": digest}
        status, answer = await self._call("PUT", f"/endpoints/{model}/{check_stage(stage)}", body)
        if status == 409:
            raise IntegrityError(answer.get("message", "the model folder does not have the recorded digest"))
        if status != 200:
            raise ServerFailed(answer.get("message") or f"the models service answered {status}")
        await self.refresh()
        endpoint = self.get(model, stage)
        assert endpoint is not None
        return endpoint

    async def undeploy(self, model: str, stage: str) -> None:
        status, answer = await self._call("DELETE", f"/endpoints/{model}/{check_stage(stage)}")
        if status != 204:
            raise ServerFailed(answer.get("message") or f"the models service answered {status}")
        await self.refresh()

    async def forget_refusal(self, refusal: str) -> None:
        await self._call("DELETE", f"/refusals/{refusal}")

    async def warm(self, *teams: str) -> None:
        """Start the pipeline's own zygotes (for gates; the models service warms its own) and read the table."""
        await self.zygotes.warm(*teams)
        await self.refresh()

    async def close(self) -> None:
        """Stop the pipeline's zygotes; the endpoints keep serving."""
        await self.zygotes.close()


@dataclass
class _RemoteServer:
    """What the pipeline sees of a model server in the models service."""

    pid: int | None
    restarts: int


def _remote_endpoint(item: Mapping[str, Any]) -> Endpoint:
    server = _RemoteServer(pid=item.get("pid"), restarts=int(item.get("restarts") or 0))
    return Endpoint(model=item["model"], stage=item["stage"], version=str(item["version"]), server=server)  # type: ignore[arg-type]


# --- the process ---


@dataclass(frozen=True)
class Monitoring:
    """The models service's monitoring: the capture, and how ``/metrics`` authenticates its caller."""

    capture: Capture
    authenticate: Callable[[web.RequestHandler], Awaitable[Any]]


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        """Up and listening (public, like the hub's health): how many endpoints it serves."""
        self.finish({"status": "ok"})


async def serve(
    gateway: Gateway,
    authorize: Authorize,
    *,
    host: str,
    port: int,
    prefix: str,
    socket_path: Path,
    teams: Collection[str],
    monitoring: Monitoring | None = None,
) -> None:
    """Serve the routes again, then answer endpoint calls and control requests until cancelled.

    With ``monitoring``, every scoring call is counted and captured, and ``{prefix}metrics`` and
    ``{prefix}{model}/outcomes`` answer (:mod:`mlopshub.monitoring.endpoints`).
    """
    private_folder(socket_path.parent)
    control = HTTPServer(control_app(gateway))
    control.add_socket(bind_unix_socket(str(socket_path), mode=0o600))
    # What was served comes back first (starting the zygotes of those teams); the other teams' zygotes after
    # the endpoints answer, so that a restart costs the served models' load time only.
    await gateway.restore()
    observe = observer(monitoring.capture, gateway.table.team_of) if monitoring else None
    routes = [
        (rf"{prefix.rstrip('/')}/health", HealthHandler),
        *endpoint_routes(prefix, gateway.endpoints, authorize, observe),
    ]
    if monitoring is not None:
        routes += monitoring_routes(
            prefix, monitoring.capture, gateway.table.team_of, authorize, monitoring.authenticate
        )
    public = HTTPServer(web.Application(routes), xheaders=False)
    public.listen(port, host)
    log.info("models service on http://%s:%d%s, control on %s", host, port, prefix, socket_path)
    await gateway.endpoints.warm(*teams)
    try:
        await asyncio.Event().wait()
    finally:
        public.stop()
        control.stop()
        # Stopping leaves routes.json as it is: the next start serves the same versions.
        await gateway.endpoints.close()
        if monitoring is not None:
            # What was captured and queued is written before the process goes.
            await asyncio.to_thread(monitoring.capture.close)


def main() -> None:
    """``python -m mlopshub.serving.gateway`` (run by the supervisor)."""
    from urllib.parse import urlparse

    from jupyterhub.services.auth import HubAuth

    from mlopshub import catalog
    from mlopshub.logs import bound_handlers
    from mlopshub.services.pipeline.auth import authenticated, endpoint_authorizer, hub_authenticator

    from .sandbox import TeamAccounts, models_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    bound_handlers()  # request paths are the caller's: no log line carries one whole
    os.umask(0o026)  # as the pipeline: model servers run as the teams' accounts, reading their folders
    env = os.environ
    pipeline_dir = Path(env["MLOPSHUB_PIPELINE_DIR"])
    cat = catalog.load(env["MLOPSHUB_CATALOG"])
    run_as = TeamAccounts(models_dir(pipeline_dir), cat.teams)
    endpoints = Endpoints(log_dir=pipeline_dir / "logs", socket_dir=pipeline_dir / "sockets", run_as=run_as)
    gateway = Gateway(endpoints, RouteTable(pipeline_dir / ROUTES_FILE))
    authenticate = hub_authenticator(HubAuth(cache_max_age=1), {"access:services!service=models"})
    authorize = endpoint_authorizer(
        gateway.table.team_of, authenticate, {name: consumer.models for name, consumer in cat.consumers.items()}
    )
    monitoring = Monitoring(
        capture=Capture(pipeline_dir / "monitoring"), authenticate=lambda handler: authenticated(handler, authenticate)
    )
    url = urlparse(env["JUPYTERHUB_SERVICE_URL"])
    asyncio.run(
        serve(
            gateway,
            authorize,
            host=url.hostname or "127.0.0.1",
            port=url.port or 80,
            prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/models/"),
            socket_path=control_socket(pipeline_dir),
            teams=sorted(cat.teams),
            monitoring=monitoring,
        )
    )


if __name__ == "__main__":
    main()
