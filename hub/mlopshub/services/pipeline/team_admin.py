"""Teams, managed by platform admins at runtime: the pipeline's ``/api/teams`` (issue 14).

The hub is the truth: a team is a hub group whose properties describe it
(:mod:`mlopshub.teams`, :mod:`mlopshub.access`). Creating one makes, at once
and without a restart, everything a team needs, in an order that leaves
nothing half-made: the request is checked whole (every bad field named),
then the team's MLflow workspace is made (the pipeline is MLflow's admin),
then (Kubernetes) the team's volume and model ServiceAccount, the objects
``mlopshub helm generate`` writes for a catalog team
(:mod:`.cluster_teams`), then the hub group with its properties and
members; if a step fails, the workspace and group are removed again (an
applied volume is kept: it is empty, and Helm keeps team volumes). On one
machine the team's Unix group, DVC remote and model account follow on first
use (the spawner, :class:`~mlopshub.serving.sandbox.TeamAccounts`); its
release settings apply to the next release. Every change is an entry in
the audit log: who, what, before, after.

Every call needs ``custom:mlopshub:manage-teams`` (platform admins). The
pipeline's hub token may manage groups and read servers for this
(``mlopshub.configure``: role ``pipeline-teams``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from mlopshub import access, catalog, quotas, teams
from mlopshub.accounts import ensure_team_folder
from mlopshub.usage import Running, UsageStore, to_csv

from .app import ApiHandler
from .cluster_teams import ClusterTeamObjects, ClusterUnavailable
from .runner import ReleaseRunner, TeamRelease

log = logging.getLogger("mlopshub.pipeline.teams")

MANAGE_TEAMS = "custom:mlopshub:manage-teams"
PAGINATION = "application/jupyterhub-pagination+json"
#: Seconds between two reads of the hub's teams (their release settings apply to the next release).
FOLLOW_TEAMS_EVERY = 10.0


class HubUnavailable(web.HTTPError):
    def __init__(self, what: str, detail: str):
        super().__init__(502, f"the hub refused to {what}: {detail}")


@dataclass
class Hub:
    """The hub REST calls team management makes, with the pipeline's own token."""

    api_url: str
    token: str

    async def call(self, method: str, path: str, body: Any = None, *, pages: bool = False) -> Any:
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        if pages:
            headers["Accept"] = PAGINATION
        request = HTTPRequest(
            f"{self.api_url.rstrip('/')}/{path}",
            method=method,
            headers=headers,
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body) if response.body else None

    async def listing(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every item of a paginated hub listing (``/groups``, ``/users?state=active``)."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            query = "&".join([f"offset={offset}", "limit=200", *(f"{k}={quote(v)}" for k, v in params.items())])
            page = await self.call("GET", f"{path}?{query}", pages=True)
            items += page["items"]
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return items
            offset = int(following["offset"])

    async def groups(self) -> dict[str, dict[str, Any]]:
        """name -> {"properties", "users"} of every hub group."""
        return {g["name"]: g for g in await self.listing("groups")}

    async def missing_users(self, names: list[str]) -> list[str]:
        """Of ``names``, those the hub does not know."""
        missing = []
        for name in names:
            try:
                await self.call("GET", f"users/{quote(name, safe='')}")
            except HTTPClientError as error:
                if error.code != 404:
                    raise
                missing.append(name)
        return missing


def team_view(
    name: str,
    group: Mapping[str, Any],
    cat: catalog.Catalog,
    running: list[quotas.Charge],
    served: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the API shows of a team: its settings, members, what it uses now and the models it serves
    (``served``: the team's live endpoints, ``{model, stage, version}``)."""
    properties = dict(group.get("properties") or {})
    team = teams.team_from_group(name, properties, cat)
    assert team is not None
    mine = [charge for charge in running if charge.team == name]
    return {
        "name": name,
        "display_name": team.display_name,
        "members": sorted(group.get("users") or []),
        "profiles": list(team.profiles),
        "gpu_profiles": [slug for slug in team.profiles if slug in cat.profiles and cat.profiles[slug].gpu],
        "quotas": dict(team.quotas),
        "release": dict(team.release),
        "archived": team.archived,
        "use": {
            "servers": len(mine),
            "cpu": sum(c.cpu for c in mine),
            "memory_bytes": sum(c.memory for c in mine),
            "gpus": sum(c.gpus for c in mine),
            "running": [{"user": c.user, "server": c.server, "profile": c.profile} for c in mine],
        },
        "models": list(served or []),
    }


def running_charges(active_users: list[dict[str, Any]]) -> list[quotas.Charge]:
    """The charge of every server the hub reports running (kept in its spawner's state by the hub)."""
    charges = []
    for user in active_users:
        for server in (user.get("servers") or {}).values():
            charge = quotas.Charge.from_state((server.get("state") or {}).get(quotas.CHARGE_STATE))
            if charge is not None:
                charges.append(charge)
    return charges


def running_sessions(active_users: list[dict[str, Any]]) -> list[Running]:
    """The servers of a poll as usage records: started ones with their charge (none yet: still starting)."""
    sessions = []
    for user in active_users:
        for name, server in (user.get("servers") or {}).items():
            started = server.get("started")
            charge = quotas.Charge.from_state((server.get("state") or {}).get(quotas.CHARGE_STATE))
            if not started or server.get("pending") == "spawn":
                continue
            moment = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            sessions.append(
                Running(
                    user=str(user["name"]),
                    server=name,
                    started=moment,
                    team=charge.team if charge else "",
                    profile=charge.profile if charge else str((server.get("user_options") or {}).get("profile", "")),
                    cpu=charge.cpu if charge else 0.0,
                    memory=charge.memory if charge else 0,
                    gpus=charge.gpus if charge else 0,
                )
            )
    return sessions


def lowered_below_use(view: Mapping[str, Any], new_quotas: Mapping[str, Any]) -> list[str]:
    """Warnings for quotas set below what runs now (allowed: nothing running is stopped)."""
    use = view["use"]
    probe = quotas.quotas_of({f"quotas.{k}": v for k, v in new_quotas.items() if v is not None})
    warnings = []
    for quota, used, limit in (
        ("max_servers", use["servers"], probe.max_servers),
        ("cpu", use["cpu"], probe.cpu),
        ("memory", use["memory_bytes"], probe.memory),
        ("gpus", use["gpus"], probe.gpus),
    ):
        if limit is not None and used > limit:
            warnings.append(
                f"quotas.{quota} is now below what runs ({used:g} in use): nothing running is stopped, but no new "
                "server of the team starts until use falls below it"
            )
    return warnings


class TeamAdmin:
    """The operations behind ``/api/teams``; the handlers only authenticate and translate."""

    def __init__(
        self,
        runner: ReleaseRunner,
        hub: Hub,
        cat: catalog.Catalog,
        usage: UsageStore | None = None,
        cluster: ClusterTeamObjects | None = None,
        remotes_dir: Path | None = None,
    ):
        self.runner = runner
        self.hub = hub
        self.catalog = cat
        #: Kubernetes: applies a new team's volume and model ServiceAccount (None on one machine).
        self.cluster = cluster
        #: One machine: the folder of the teams' DVC remotes (``MLOPSHUB_DVC_REMOTES``), made for a new team at once.
        self.remotes_dir = remotes_dir
        #: Where the servers seen running are recorded (None: usage is not kept).
        self.usage = usage
        #: One change at a time: "does the name exist" and "make it" must not interleave.
        self.lock = asyncio.Lock()

    async def _state(self) -> tuple[dict[str, dict[str, Any]], list[quotas.Charge]]:
        try:
            groups = await self.hub.groups()
            active = await self.hub.listing("users", state="active")
        except HTTPClientError as error:
            raise HubUnavailable("list groups and servers", str(error)) from None
        return groups, running_charges(active)

    def _served(self) -> dict[str, list[dict[str, Any]]]:
        """Each team's live endpoints (model, stage, version), from the endpoint table and the release store."""
        served: dict[str, list[dict[str, Any]]] = {}
        for endpoint in self.runner.endpoints.all():
            team = self.runner.store.owner(endpoint.model)
            if team:
                served.setdefault(team, []).append(
                    {"model": endpoint.model, "stage": endpoint.stage, "version": str(endpoint.version)}
                )
        return served

    def _teams(self, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
        return access.teams_of(self.catalog, {n: g.get("properties") or {} for n, g in groups.items()}, archived=True)

    async def list(self) -> list[dict[str, Any]]:
        groups, running = await self._state()
        served = self._served()
        return [team_view(name, groups[name], self.catalog, running, served.get(name)) for name in self._teams(groups)]

    async def get(self, name: str) -> dict[str, Any]:
        groups, running = await self._state()
        if name not in self._teams(groups):
            raise web.HTTPError(404, f"no team named {name!r}")
        return team_view(name, groups[name], self.catalog, running, self._served().get(name))

    async def follow(self, every: float = FOLLOW_TEAMS_EVERY) -> None:
        """Until cancelled: keep the release settings of every team as the hub holds them (teams made or changed
        elsewhere: the hub's group editor, a restart of this service), and record which servers run (usage)."""
        if self.usage is not None:
            await asyncio.to_thread(self.usage.recover, datetime.now(UTC))
        while True:
            try:
                # Under the lock: a read begun before an admin's change must not undo it once the change is made.
                async with self.lock:
                    groups = await self.hub.groups()
                    found = teams.teams_from_groups({n: g.get("properties") for n, g in groups.items()}, self.catalog)
                    for name, team in found.items():
                        self._release_settings(name, team.release)
                    self.runner.archived = {name for name, team in found.items() if team.archived}
                if self.usage is not None:
                    active = await self.hub.listing("users", state="active")
                    await asyncio.to_thread(self.usage.observe, running_sessions(active), datetime.now(UTC))
            except (HTTPClientError, OSError) as error:
                log.warning("could not read the hub's teams and servers: %s", error)
            await asyncio.sleep(every)

    def _release_settings(self, name: str, release: Mapping[str, Any]) -> None:
        self.runner.teams[name] = TeamRelease(
            thresholds=dict(release.get("thresholds") or {}),
            holdout=release.get("holdout"),
            drift=dict(release.get("drift") or {}),
        )

    async def create(self, body: Any, actor: str) -> dict[str, Any]:
        async with self.lock:
            groups, running = await self._state()
            spec = teams.validate_spec(
                body, self.catalog, existing_teams=self._teams(groups), existing_groups=list(groups)
            )
            missing = await self.hub.missing_users(spec["members"])
            if missing:
                raise teams.TeamSpecError(
                    {"members": f"no such user: {', '.join(missing)} (add them to the hub first)"}
                )
            name = spec["name"]
            team = catalog.Team(name, spec["display_name"], tuple(spec["profiles"]), spec["quotas"], spec["release"])
            await asyncio.to_thread(self._make_workspace, name, team.display_name)
            if self.cluster is not None:
                try:
                    applied = await self.cluster.apply(name)
                except ClusterUnavailable as error:
                    await self._undo(name)
                    raise web.HTTPError(502, f"the cluster did not take team {name}'s objects: {error}") from None
                log.info("team %s: applied %s", name, ", ".join(applied))
            try:
                await self.hub.call("POST", f"groups/{quote(name)}", {"users": spec["members"]})
                await self.hub.call("PUT", f"groups/{quote(name)}/properties", teams.group_properties(team))
            except HTTPClientError as error:
                await self._undo(name)
                raise HubUnavailable(f"create the group {name}", str(error)) from None
            self._release_settings(name, team.release)
            if self.remotes_dir is not None:
                await asyncio.to_thread(self._make_remote, name)
            view = await self.get(name)
            self.runner.store.audit.record(actor, "team created", reason=name, details={"team": name, "after": view})
            log.info("%s created team %s", actor, name)
            return view

    def _make_remote(self, name: str) -> None:
        """One machine: the team's DVC remote, shared by its members only (as the spawner makes it on first use)."""
        folder = self.remotes_dir / name  # type: ignore[operator]
        if os.geteuid() == 0:
            ensure_team_folder(folder, name)
        else:
            folder.mkdir(parents=True, exist_ok=True)

    def _make_workspace(self, name: str, display_name: str) -> None:
        """The team's MLflow workspace (an existing one is kept: a team re-made after its group was removed)."""
        client = self.runner.registry.client
        try:
            client.get_workspace(name)
            return
        except Exception:  # noqa: BLE001 - MlflowException: not there
            pass
        try:
            client.create_workspace(name, f"Experiments and models of team {display_name}")
        except Exception as error:
            raise web.HTTPError(502, f"MLflow refused to make the workspace of team {name}: {error}") from None

    async def _undo(self, name: str) -> None:
        """Remove what a failed create made: the group (if any) and the (empty) workspace."""
        try:
            await self.hub.call("DELETE", f"groups/{quote(name)}")
        except HTTPClientError:
            pass
        try:
            await asyncio.to_thread(self.runner.registry.client.delete_workspace, name)
        except Exception as error:  # noqa: BLE001 - said, not raised: the create's own error is the answer
            log.error("could not remove the workspace of the team %s not made: %s", name, error)

    async def edit(self, name: str, body: Any, actor: str) -> dict[str, Any]:
        async with self.lock:
            before = await self.get(name)
            groups = await self.hub.groups()
            spec = teams.validate_spec(
                body, self.catalog, existing_teams=self._teams(groups), existing_groups=list(groups), partial=True
            )
            warnings = (
                lowered_below_use(before, {**before["quotas"], **spec.get("quotas", {})}) if "quotas" in spec else []
            )
            if "members" in spec:
                missing = await self.hub.missing_users(spec["members"])
                if missing:
                    raise teams.TeamSpecError({"members": f"no such user: {', '.join(missing)}"})
            properties = dict(groups[name].get("properties") or {})
            for key, value in spec.items():
                if key == "quotas":
                    for quota, limit in value.items():
                        # A lifted quota is kept as null: a missing key would bring the catalog's back at the
                        # next start (seeding fills what the hub lacks).
                        properties[access.quota_property(quota)] = limit
                elif key == "archived":
                    properties.pop(access.ARCHIVED_PROPERTY, None)
                    if value:
                        properties[access.ARCHIVED_PROPERTY] = value
                elif key != "members":
                    properties[key] = value
            try:
                await self.hub.call("PUT", f"groups/{quote(name)}/properties", properties)
                if "members" in spec:
                    await self._set_members(name, set(before["members"]), set(spec["members"]))
            except HTTPClientError as error:
                raise HubUnavailable(f"change the team {name}", str(error)) from None
            if "release" in spec:
                self._release_settings(name, spec["release"])
            if "archived" in spec:
                (self.runner.archived.add if spec["archived"] else self.runner.archived.discard)(name)
            after = await self.get(name)
            self.runner.store.audit.record(
                actor, "team changed", reason=name, details={"team": name, "before": before, "after": after}
            )
            return {**after, "warnings": warnings}

    async def _set_members(self, name: str, before: set[str], after: set[str]) -> None:
        if after - before:
            await self.hub.call("POST", f"groups/{quote(name)}/users", {"users": sorted(after - before)})
        if before - after:
            # Removal takes access away at once: the services read membership with each token (TRUST_SECONDS),
            # and the membership service stops the workspaces that started with the team.
            await self.hub.call("DELETE", f"groups/{quote(name)}/users", {"users": sorted(before - after)})

    async def archive(self, name: str, actor: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        result = await self.edit(name, {"archived": now}, actor)
        result["running_servers"] = result["use"]["running"]
        return result

    async def member(self, name: str, user: str, add: bool, actor: str) -> dict[str, Any]:
        view = await self.get(name)
        members = set(view["members"])
        members = members | {user} if add else members - {user}
        if not add and user not in view["members"]:
            raise web.HTTPError(404, f"{user} is not a member of team {name}")
        return await self.edit(name, {"members": sorted(members)}, actor)


class TeamsHandlerBase(ApiHandler):
    def initialize(self, runner: ReleaseRunner, authenticate: Any, admin: TeamAdmin) -> None:  # type: ignore[override]
        super().initialize(runner, authenticate)
        self.admin = admin

    async def prepare(self) -> None:
        await super().prepare()
        self.require(MANAGE_TEAMS, "manage teams")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, teams.TeamSpecError):
            self.set_status(422)
            self.finish({"status": 422, "message": str(error), "errors": dict(error.errors)})
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A refused request is an answer, not a crash: no traceback in the log."""
        if isinstance(value, teams.TeamSpecError):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)


class TeamsHandler(TeamsHandlerBase):
    async def get(self) -> None:
        """Every team (archived ones too): settings, members, use now."""
        self.reply({"teams": await self.admin.list()})

    async def post(self) -> None:
        """Create a team -> 201 with the team; 422 naming every bad field; nothing half-made."""
        view = await self.admin.create(self.body(), self.caller.name)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{view['name']}")
        self.reply(view, 201)


class TeamHandler(TeamsHandlerBase):
    async def get(self, name: str) -> None:
        self.reply(await self.admin.get(name))

    async def patch(self, name: str) -> None:
        """Change members, profiles, quotas, release settings; ``warnings`` say what a lowered quota means."""
        self.reply(await self.admin.edit(name, self.body(), self.caller.name))


class ArchiveHandler(TeamsHandlerBase):
    async def post(self, name: str) -> None:
        """Archive: no new workspaces or releases; data, runs, models and audit kept; running servers listed."""
        self.reply(await self.admin.archive(name, self.caller.name))


class MemberHandler(TeamsHandlerBase):
    async def put(self, name: str, user: str) -> None:
        self.reply(await self.admin.member(name, user, True, self.caller.name))

    async def delete(self, name: str, user: str) -> None:
        self.reply(await self.admin.member(name, user, False, self.caller.name))


def _when(handler: web.RequestHandler, name: str, default: datetime) -> datetime:
    text = handler.get_argument(name, None)
    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise web.HTTPError(
            422, f"{name}: expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UsageHandler(TeamsHandlerBase):
    async def get(self) -> None:
        """Server-, CPU-, memory- and GPU-hours per team (``?by=user``: per team and user) over ``since``..``until``
        (default: the last 30 days), as JSON or (``?format=csv``) CSV; with what runs now and since when."""
        if self.admin.usage is None:
            raise web.HTTPError(503, "usage is not recorded by this pipeline (it has no hub to poll)")
        now = datetime.now(UTC)
        until = _when(self, "until", now)
        since = _when(self, "since", until - timedelta(days=30))
        by = self.get_argument("by", "team")
        if by not in ("team", "user"):
            raise web.HTTPError(422, f"by: expected 'team' or 'user', got {by!r}")
        group_by = ("team",) if by == "team" else ("team", "user")
        try:
            rows = await asyncio.to_thread(self.admin.usage.report, since, until, group_by, now=now)
        except ValueError as error:
            raise web.HTTPError(422, str(error)) from None
        if self.get_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="usage-{since:%Y%m%d}-{until:%Y%m%d}.csv"')
            self.finish(to_csv(rows))
            return
        running = await asyncio.to_thread(self.admin.usage.running_now)
        self.reply(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "by": by,
                "rows": [asdict(row) for row in rows],
                "running": [
                    {
                        "user": r.user,
                        "server": r.server,
                        "team": r.team,
                        "profile": r.profile,
                        "since": r.started.isoformat(),
                    }
                    for r in running
                ],
            }
        )


class UsageSeriesHandler(TeamsHandlerBase):
    async def get(self) -> None:
        """Per-day (``?step=day``, or ``hour``) totals per team over ``since``..``until``, for the plot."""
        if self.admin.usage is None:
            raise web.HTTPError(503, "usage is not recorded by this pipeline (it has no hub to poll)")
        now = datetime.now(UTC)
        until = _when(self, "until", now)
        since = _when(self, "since", until - timedelta(days=30))
        steps = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
        step = self.get_argument("step", "day")
        if step not in steps:
            raise web.HTTPError(422, f"step: expected one of {', '.join(steps)}, got {step!r}")
        team = self.get_argument("team", None)
        try:
            points = await asyncio.to_thread(self.admin.usage.series, since, until, steps[step], team, now=now)
        except ValueError as error:
            raise web.HTTPError(422, str(error)) from None
        self.reply({"points": [{**asdict(p), "start": p.start.isoformat(), "end": p.end.isoformat()} for p in points]})


class CatalogHandler(TeamsHandlerBase):
    async def get(self) -> None:
        """What a team may be given: the catalog's profiles (GPU ones marked) and the quota names."""
        profiles = [
            {"slug": p.slug, "display_name": p.display_name, "description": p.description, "gpu": bool(p.gpu)}
            for p in self.admin.catalog.profiles.values()
        ]
        self.reply({"profiles": profiles, "quotas": list(teams.quota_names())})


def team_routes(api: str, args: Mapping[str, Any], admin: TeamAdmin) -> list[Any]:
    """The routes of ``/api/teams`` under ``api``."""
    team = r"([a-z][a-z0-9-]{0,62})"
    user = r"([^/]{1,255})"
    extra = {**args, "admin": admin}
    return [
        (rf"{api}/teams/?", TeamsHandler, extra),
        (rf"{api}/teams/{team}/?", TeamHandler, extra),
        (rf"{api}/teams/{team}/archive/?", ArchiveHandler, extra),
        (rf"{api}/teams/{team}/members/{user}/?", MemberHandler, extra),
        (rf"{api}/usage/?", UsageHandler, extra),
        (rf"{api}/usage/series/?", UsageSeriesHandler, extra),
        (rf"{api}/catalog/?", CatalogHandler, extra),
    ]
