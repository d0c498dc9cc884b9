"""The pipeline service's web app: the release REST API and, beside it, the online model endpoints.

One routing table (:func:`make_app`), one base handler (:class:`ApiHandler`)
that authenticates every request with a hub token and turns the core's
errors into JSON with their ``http_status``. The API is written down in
``openapi.json`` next to this file, served at ``{prefix}openapi.json``.

Model endpoints are served apart (:mod:`mlopshub.serving.gateway`, the ``models``
service), so they keep answering while this process restarts; an app made on
in-process :class:`~mlopshub.serving.Endpoints` (tests, a pipeline without a
gateway) routes ``/services/models/`` here too.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tornado import web

from mlopshub.pipeline import InvalidRequest, PipelineError, Release, ReleaseNotFound, State
from mlopshub.pipeline.audit import AuditLog
from mlopshub.pipeline.release import MODEL_NAME_PATTERN
from mlopshub.serving import Endpoints, endpoint_routes
from mlopshub.serving.proxy import Observe

from .auth import APPROVE, PUBLISH, READ_RELEASES, Authenticate, Caller, authenticated, endpoint_authorizer
from .runner import ReleaseRunner

log = logging.getLogger("mlopshub.pipeline")
OPENAPI = Path(__file__).resolve().parent / "openapi.json"


class ApiHandler(web.RequestHandler):
    """Base of the API handlers: JSON in and out, hub-token authentication, errors with their status."""

    caller: Caller

    def initialize(self, runner: ReleaseRunner, authenticate: Authenticate) -> None:
        self.runner = runner
        self.store = runner.store
        self.authenticate = authenticate

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated API: no cookies are read, so no XSRF check."""

    async def prepare(self) -> None:
        self.caller = await authenticated(self, self.authenticate)

    def require(self, scope: str, doing: str) -> None:
        """403 naming the scope unless the caller's token carries ``scope``."""
        if not self.caller.has(scope):
            raise web.HTTPError(403, f"{self.caller.name} may not {doing}: the token lacks the scope {scope}")

    def body(self) -> dict[str, Any]:
        """The request's JSON object (422 naming the body when it is not one)."""
        if not self.request.body:
            return {}
        try:
            value = json.loads(self.request.body)
        except ValueError as error:
            raise InvalidRequest("(body)", f"not JSON: {error}") from None
        if not isinstance(value, dict):
            raise InvalidRequest("(body)", "expected a JSON object")
        return value

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A refused request (the core's errors) is an answer, not a crash: no traceback in the log."""
        if isinstance(value, PipelineError):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON: the core's errors with their ``http_status`` (and ``field`` for 422), others as raised."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, PipelineError):
            status_code = error.http_status
            self.set_status(status_code)
            data: dict[str, Any] = {"error": type(error).__name__, "message": str(error), "status": status_code}
            if isinstance(error, InvalidRequest):
                data["field"] = error.field
        else:
            message = getattr(error, "log_message", None) or self._reason
            data = {"error": self._reason, "message": message, "status": status_code}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def model_team(self, model: str) -> str:
        """The team of ``model``; 404 when no release ever named it, or the caller may not read its releases."""
        team = self.store.owner(model)
        if team is None or not self.caller.may_read(team):
            raise web.HTTPError(404, f"no model '{model}' has been published; check the name in GET .../releases")
        return team

    def readable(self, release_id: str) -> Release:
        """The release ``release_id`` if the caller may read it; else 404, as for an id that names no release.

        The same answer for both, so that a caller learns nothing of another team's releases, not even that they exist.
        """
        release = self.store.get(release_id)
        if not self.caller.may_read(release.team):
            raise ReleaseNotFound(release_id)
        return release


class ReleasesHandler(ApiHandler):
    async def get(self) -> None:
        """List releases (newest first) the caller may read; ``?state=`` and ``?model=`` filter."""
        state = self.get_argument("state", None)
        if state is not None and state not in {str(s) for s in State}:
            raise InvalidRequest("state", f"expected one of: {', '.join(str(s) for s in State)}")
        releases = self.store.releases(state=state, model_name=self.get_argument("model", None))
        self.reply({"releases": [r.to_dict() for r in releases if self.caller.may_read(r.team)]})

    async def post(self) -> None:
        """Publish ``{model_uri, name, kind, description, batch}`` -> 201 ``{id, release}``; gates run in background."""
        teams = self.caller.publish_teams(self.runner.teams)
        if not teams:
            raise web.HTTPError(
                403, f"{self.caller.name} may not publish: a member of a team may, with a token that carries {PUBLISH}"
            )
        if teams <= self.runner.archived:
            archived = ", ".join(sorted(teams))
            raise web.HTTPError(403, f"team {archived} is archived: it makes no new releases (ask a platform admin)")
        release = await self.runner.publish(self.body(), self.caller)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{release.id}")
        self.reply({"id": release.id, "release": release.to_dict()}, 201)


class ReleaseHandler(ApiHandler):
    async def get(self, release_id: str) -> None:
        """One release: state, steps, gate results, endpoints, who published and approved."""
        self.reply(self.readable(release_id).to_dict())


class ApproveHandler(ApiHandler):
    async def post(self, release_id: str) -> None:
        """Approve ``{comment}`` (required): needs the approve scope, and never by the publisher (four eyes)."""
        if not self.caller.has(APPROVE):
            message = f"{self.caller.name} may not approve releases: the token lacks the scope {APPROVE}"
            self.runner.refuse_approval(release_id, self.caller, message)
            raise web.HTTPError(403, message)
        release = await self.runner.approve(release_id, self.caller, self.body().get("comment", ""))
        self.reply(release.to_dict())


class RejectHandler(ApiHandler):
    async def post(self, release_id: str) -> None:
        """Reject ``{reason}``: a validator, or the publishing team withdrawing its release."""
        release = self.readable(release_id)
        if not (self.caller.has(APPROVE) or self.caller.publish_teams([release.team])):
            raise web.HTTPError(403, f"{self.caller.name} may not reject: needs {APPROVE} or membership of the team")
        release = await self.runner.reject(release_id, self.caller, self.body().get("reason", ""))
        self.reply(release.to_dict())


class RollbackHandler(ApiHandler):
    async def post(self, model: str) -> None:
        """Roll ``model`` back to its previous production version ``{reason}``."""
        current = self.store.production(model)
        team = current.team if current else None
        if not (self.caller.has(APPROVE) or (team and self.caller.publish_teams([team]))):
            raise web.HTTPError(403, f"{self.caller.name} may not roll back {model}: needs {APPROVE} or the team's")
        rolled_back, restored = await self.runner.rollback(model, self.caller, self.body().get("reason", ""))
        self.reply({"rolled_back": rolled_back.to_dict(), "restored": restored.to_dict()})


#: Seconds ``POST .../runs`` waits for a run to finish before answering 202 (the run goes on; poll ``GET .../runs``).
RUN_WAIT = 60.0


class RunsHandler(ApiHandler):
    async def get(self, model: str) -> None:
        """A batch model's scoring runs, newest first: in progress, then finished (from the audit log)."""
        self.model_team(model)
        self.reply({"runs": self.runner.batch_runs(model)})

    async def post(self, model: str) -> None:
        """Run a batch model now ``{stage, wait}``: 200 with the run when done within ``wait`` s, else 202."""
        team = self.model_team(model)
        if not (self.caller.has(APPROVE) or self.caller.publish_teams([team])):
            raise web.HTTPError(403, f"{self.caller.name} may not run {model}: needs {APPROVE} or the team's")
        body = self.body()
        stage = body.get("stage", "production")
        if stage not in ("staging", "production"):
            raise InvalidRequest("stage", f"expected staging or production, got {stage!r}")
        wait = body.get("wait", RUN_WAIT)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= RUN_WAIT:
            raise InvalidRequest("wait", f"expected seconds to wait for the run, 0 to {RUN_WAIT:.0f}, got {wait!r}")
        run, finished = await self.runner.run_batch(model, stage, self.caller.name, float(wait))
        if not finished:
            self.set_header("Location", self.request.path)
        self.reply({"run": run}, 200 if finished else 202)


class RunOutputHandler(ApiHandler):
    async def get(self, model: str, run_id: str) -> None:
        """The scored CSV of a finished batch run, for the model's team and validators (text/csv)."""
        self.model_team(model)
        try:
            fd, name = self.runner.run_output(model, run_id)
        except LookupError as error:
            raise web.HTTPError(404, str(error)) from None
        self.set_header("Content-Type", "text/csv")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        with open(fd, "rb") as handle:
            while chunk := handle.read(1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


#: Entries one ``GET .../audit`` answers at most, and by default: page on with ``after=<the last one's id>``.
AUDIT_PAGE = 1000
#: The audit log's filters that match an entry's field of the same name exactly, and their longest value.
AUDIT_FIELDS = ("release_id", "model", "actor", "action")
MAX_FILTER = 200
#: SQLite's largest integer: an entry id above it cannot exist.
MAX_ID = 2**63 - 1


def instant(name: str, value: str) -> datetime:
    """``value`` as an ISO 8601 time in UTC; 422 naming ``name`` when it is not one or has no zone (ambiguous)."""
    try:
        moment = datetime.fromisoformat(value)
        zoned = moment.tzinfo is not None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            name, f"{value[:100]!r} is not a time; expected ISO 8601 like 2026-12-01T09:00:00Z"
        ) from None
    if not zoned:
        raise InvalidRequest(name, f"{value[:100]!r} has no time zone; add Z (UTC) or an offset like +01:00")
    return moment


def whole(name: str, value: str, low: int, high: int) -> int:
    """``value`` as a whole number from ``low`` to ``high``; 422 naming ``name`` otherwise."""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise InvalidRequest(name, f"expected a whole number from {low} to {high}, got {value[:100]!r}")
    return number


class AuditHandler(ApiHandler):
    async def get(self) -> None:
        """The audit log, filtered and paged (openapi.json), ``?format=json`` (default) or ``csv``.

        Validators and admins read all of it; with ``release_id``, so does
        whoever may read that release (another team's answers 404, as a missing one).
        """
        form = self.get_argument("format", "json")
        if form not in ("json", "csv"):
            raise InvalidRequest("format", f"expected json or csv, got {form!r}")
        filters = self.audit_filters()
        if not self.caller.has(READ_RELEASES):
            if "release_id" not in filters:
                self.require(READ_RELEASES, "read the whole audit log (one release's trail: ?release_id=<id>)")
            self.readable(filters["release_id"])
        stream = io.StringIO()
        if form == "csv":
            self.store.audit.export_csv(stream, **filters)
            self.set_header("Content-Type", "text/csv")
            self.set_header("Content-Disposition", 'attachment; filename="mlopshub-audit.csv"')
        else:
            self.store.audit.export_json(stream, **filters)
            self.set_header("Content-Type", "application/json")
        self.finish(stream.getvalue())

    def audit_filters(self) -> dict[str, Any]:
        """The query's checked filters and page, as :meth:`AuditLog.entries` takes them (422 naming a wrong one)."""
        filters: dict[str, Any] = {"limit": AUDIT_PAGE}
        for name in (*AUDIT_FIELDS, "since", "until", "limit", "after"):
            value = self.get_argument(name, "").strip()
            if not value:
                continue
            if len(value) > MAX_FILTER:
                raise InvalidRequest(name, f"is {len(value)} characters; at most {MAX_FILTER}")
            if name in ("since", "until"):
                filters[name] = instant(name, value)
            elif name == "limit":
                filters[name] = whole(name, value, 1, AUDIT_PAGE)
            elif name == "after":
                filters[name] = whole(name, value, 0, MAX_ID)
            else:
                filters[name] = value
        return filters


class EndpointsHandler(ApiHandler):
    async def get(self) -> None:
        """Live endpoints (model, stage, version, process, restarts) of the teams the caller may read."""
        live = [e.to_dict() for e in self.runner.endpoints.all()]
        teams = {r.model_name: r.team for r in self.store.releases()}
        self.reply({"endpoints": [e for e in live if self.caller.may_read(teams.get(e["model"], ""))]})


class OpenApiHandler(web.RequestHandler):
    def get(self) -> None:
        """The API's OpenAPI document (public: it holds no data)."""
        self.set_header("Content-Type", "application/json")
        self.finish(OPENAPI.read_bytes())


def store_owner(runner: ReleaseRunner) -> Callable[[str], str]:
    """``owner(model)``: the team of ``model`` ("" for an unknown model), from the release store.

    A model's team never changes (its first release names it), so each is read once.
    """
    owners: dict[str, str] = {}

    def owner(model: str) -> str:
        if model not in owners:
            team = runner.store.owner(model)
            if team is None:
                return ""
            owners[model] = team
        return owners[model]

    return owner


class IndexHandler(web.RequestHandler):
    def get(self) -> None:
        """Where the API and its description are (the hub also checks this address is up)."""
        prefix = self.request.path.rstrip("/")
        self.finish({"api": f"{prefix}/api/", "openapi": f"{prefix}/openapi.json"})


class HealthHandler(web.RequestHandler):
    def initialize(self, audit: AuditLog) -> None:
        self.audit = audit

    def get(self) -> None:
        """Health for ``mlopshub up`` and the hub (public): 200 ok, or 503 when the audit log's chain is broken.

        The 503 names the first bad entry and what is wrong with it, not its
        content (anyone may ask): ``mlopshub audit verify`` gives the rest.
        """
        problem = self.audit.broken
        if problem is None:
            self.finish({"status": "ok"})
            return
        self.set_status(503)
        self.finish(
            {
                "status": "audit log broken",
                "audit": {"first_bad_entry": problem.seq, "problem": problem.kind},
                "message": f"the audit log is broken at entry {problem.seq} ({problem.kind}); nothing new is "
                "recorded; run `mlopshub audit verify` on the hub machine",
            }
        )


def make_app(
    runner: ReleaseRunner,
    authenticate: Authenticate,
    *,
    prefix: str = "/services/pipeline/",
    models_prefix: str = "/services/models/",
    endpoints: Endpoints | None = None,
    models_authenticate: Authenticate | None = None,
    consumers: Mapping[str, Collection[str]] | None = None,
    team_admin: Any = None,
    monitoring: Any = None,
    observe: Observe | None = None,
) -> web.Application:
    """The service's tornado application: the API under ``{prefix}api/``, endpoints under ``models_prefix``.

    ``models_authenticate`` checks tokens of endpoint callers (the ``models``
    service's access scope); by default the API's ``authenticate``.
    ``consumers`` maps each consumer system to the models it may call.
    ``team_admin`` (:class:`~.team_admin.TeamAdmin`) serves ``{prefix}api/teams`` for platform admins.
    ``monitoring`` (:class:`~.monitoring.ModelMonitoring`) serves ``{prefix}api/monitoring``, ``{prefix}metrics``
    and, with ``team_admin`` (which brings the OAuth pages' cookie secret), the printable report.
    ``observe`` is told of every answered request of in-process ``endpoints`` (monitoring's hook; the models
    service has its own).
    """
    from .monitoring_api import monitoring_routes
    from .team_admin import team_routes
    from .teams_page import page_routes

    api = prefix.rstrip("/") + "/api"
    args = {"runner": runner, "authenticate": authenticate}
    release_id = r"([A-Za-z0-9_.-]+)"
    model = rf"({MODEL_NAME_PATTERN})"
    routes: list[Any] = [
        (rf"{api}/releases/?", ReleasesHandler, args),
        (rf"{api}/releases/{release_id}/?", ReleaseHandler, args),
        (rf"{api}/releases/{release_id}/approve/?", ApproveHandler, args),
        (rf"{api}/releases/{release_id}/reject/?", RejectHandler, args),
        (rf"{api}/models/{model}/rollback/?", RollbackHandler, args),
        (rf"{api}/models/{model}/runs/?", RunsHandler, args),
        (rf"{api}/models/{model}/runs/(brun-[0-9a-f]{{12}})/output", RunOutputHandler, args),
        (rf"{api}/audit/?", AuditHandler, args),
        (rf"{api}/endpoints/?", EndpointsHandler, args),
        *(team_routes(api, args, team_admin) if team_admin is not None else []),
        *(page_routes(prefix, args, team_admin) if team_admin is not None else []),
        *(monitoring_routes(api, prefix, args, monitoring, team_admin is not None) if monitoring is not None else []),
        (rf"{prefix.rstrip('/')}/openapi.json", OpenApiHandler),
        (rf"{prefix.rstrip('/')}/health", HealthHandler, {"audit": runner.store.audit}),
        (rf"{prefix.rstrip('/')}/?", IndexHandler),
    ]
    serving = endpoints or runner.endpoints
    if isinstance(serving, Endpoints):
        authorize = endpoint_authorizer(store_owner(runner), models_authenticate or authenticate, consumers)
        routes += endpoint_routes(models_prefix, serving, authorize, observe)
    if team_admin is None:
        return web.Application(routes)
    from .teams_page import cookie_secret

    # The Teams page's OAuth state and token cookies are signed with it (HubOAuth's secure cookies).
    return web.Application(routes, cookie_secret=cookie_secret())
