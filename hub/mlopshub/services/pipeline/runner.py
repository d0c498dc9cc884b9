"""The release runner: moves releases through registry, gates, staging and production.

The core (:mod:`mlopshub.pipeline`) records each step; this module does the
work between two records: MLflow registry calls, the gates, the endpoints.
Each release advances in a background task (:meth:`ReleaseRunner.advance`)
that reads its state and performs the next step until the release waits for a
person or stops. Steps on one model are done one at a time (a lock per
model), so a rollback never interleaves with a promotion.

"Nothing half-deployed": an endpoint is switched before its alias is moved,
and when a deploy step fails, both are put back as they were before the
release failed is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopshub.pipeline import Conflict, NotAllowed, Release, ReleaseStore, State, validate_publish
from mlopshub.pipeline.gates import HoldOut, run_gates
from mlopshub.serving import Endpoints

from .auth import Caller
from .holdout import HoldoutLoader, PushedCheck
from .registry import APPROVER_TAG, Registry

log = logging.getLogger("mlopshub.pipeline")

PIPELINE = "pipeline"
#: Run tag naming the folder of the project the model was trained in (set by the Lab extension).
PROJECT_TAG = "mlopshub.project"


@dataclass(frozen=True)
class TeamRelease:
    """A team's release settings from the catalog: metric ``thresholds`` and the ``holdout`` spec."""

    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    holdout: Mapping[str, Any] | None = None


class ReleaseRunner:
    """Carries releases from publish to production.

    ``teams`` maps each team to its :class:`TeamRelease`; ``load_holdout``
    reads a team's hold-out set; ``endpoint_url(model, stage)`` is the public
    address of an endpoint (recorded on the release).
    """

    def __init__(
        self,
        store: ReleaseStore,
        registry: Registry,
        endpoints: Endpoints,
        teams: Mapping[str, TeamRelease],
        load_holdout: HoldoutLoader,
        endpoint_url: Callable[[str, str], str],
        pushed: PushedCheck | None = None,
    ):
        self.store = store
        self.registry = registry
        self.endpoints = endpoints
        self.teams = dict(teams)
        self.load_holdout = load_holdout
        self.endpoint_url = endpoint_url
        self.pushed = pushed
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    def _audit(self, action: str, release: Release, actor: str = PIPELINE, reason: str = "", **details: Any) -> None:
        self.store.audit.record(
            actor,
            action,
            release_id=release.id,
            model=release.model_name,
            version=release.version,
            reason=reason,
            details=details,
        )

    # --- requests ---

    async def publish(self, body: Any, caller: Caller) -> Release:
        """Validate, register the version in MLflow, record the release and start it moving."""
        allowed = caller.publish_teams(self.teams)
        # The caller's teams first: the run is almost always there; then the rest, to tell "another team's" from
        # "no such run".
        search = [*sorted(allowed), *sorted(set(self.teams) - allowed)]

        def team_of_run(run_id: str) -> str | None:
            return self.registry.team_of_run(run_id, search)

        request = await asyncio.to_thread(validate_publish, body, team_of_run, allowed_teams=allowed)
        owner = self.store.owner(request.name)
        if owner is not None and owner != request.team:
            raise NotAllowed(
                f"the model name '{request.name}' belongs to team '{owner}' (endpoints are named after models); "
                "choose another name"
            )
        in_flight = self.store.in_flight(request.name)
        if in_flight is not None:
            # Checked before registering, so a refused publish leaves no stray version in MLflow.
            raise Conflict(
                f"release '{in_flight.id}' of model '{request.name}' (version {in_flight.version}) is still "
                f"'{in_flight.state}'; wait until it is done, or reject it, before publishing another version"
            )
        release_id = f"rel-{uuid.uuid4().hex[:12]}"
        version = await asyncio.to_thread(self.registry.register, request, caller.name, release_id)
        release = self.store.create(request, version=version, publisher=caller.name, release_id=release_id)
        self.schedule(release.id)
        return release

    async def approve(self, release_id: str, caller: Caller, comment: str) -> Release:
        """Record a validator's approval (four eyes checked by the store) and start the promotion."""
        try:
            release = self.store.approve(release_id, caller.name, comment)
        except NotAllowed as error:
            self.refuse_approval(release_id, caller, str(error))
            raise
        self.schedule(release.id)
        return release

    def refuse_approval(self, release_id: str, caller: Caller, reason: str) -> None:
        """Record a refused approval (model risk reviews who tried), then let the caller answer 403."""
        self._audit("approval refused", self.store.get(release_id), actor=caller.name, reason=reason)

    async def reject(self, release_id: str, caller: Caller, reason: str) -> Release:
        """Record the rejection and take the staging endpoint and alias down."""
        release = self.store.reject(release_id, caller.name, reason)
        async with self._lock(release.model_name):
            await self._take_down_staging(release)
        return release

    async def rollback(self, model: str, caller: Caller, reason: str) -> tuple[Release, Release]:
        """Put the previous production version back: endpoint first, then alias, then the record."""
        async with self._lock(model):
            current = self.store.production(model)
            previous = self.store.previous_production(model)
            if current is None or previous is None or not isinstance(reason, str) or not reason.strip():
                # Nothing to switch: the store refuses it and says precisely why.
                return self.store.rollback(model, caller.name, reason)
            if previous.kind == "online":
                path = await asyncio.to_thread(self.registry.local_copy, previous.team, model, previous.version)
                await self.endpoints.deploy(model, "production", previous.version, path, team=previous.team)
                self._audit("endpoint switched", previous, actor=caller.name, stage="production")
            await asyncio.to_thread(self.registry.set_alias, previous.team, model, "production", previous.version)
            return self.store.rollback(model, caller.name, reason)

    # --- background ---

    def schedule(self, release_id: str) -> None:
        """Advance ``release_id`` in a background task."""
        task = asyncio.get_running_loop().create_task(self.advance(release_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until no release is advancing (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def advance(self, release_id: str) -> None:
        """Do the release's next steps until it waits for a person or stops."""
        release = self.store.get(release_id)
        async with self._lock(release.model_name):
            while True:
                release = self.store.get(release_id)
                step = {
                    State.REGISTERED: self._start_gating,
                    State.GATING: self._gate,
                    State.STAGING: self._deploy_staging,
                    State.APPROVED: self._deploy_production,
                }.get(State(release.state))
                if step is None:
                    return
                try:
                    await step(release)
                except Exception as error:
                    log.exception("release %s failed in state %s", release.id, release.state)
                    await self._fail(release, error)
                    return

    async def _fail(self, release: Release, error: Exception) -> None:
        reason = f"{release.state} failed: {type(error).__name__}: {error}"[:1900]
        try:
            if release.state == State.STAGING:
                await self._take_down_staging(release)
            elif release.state == State.APPROVED:
                await self._restore_production(release)
        finally:
            self.store.mark_failed(release.id, reason)

    async def _start_gating(self, release: Release) -> None:
        self.store.start_gating(release.id)

    async def _gate(self, release: Release) -> None:
        results = await asyncio.to_thread(self._run_gates, release)
        self.store.record_gate_results(release.id, results)

    def _run_gates(self, release: Release) -> list[Any]:
        import mlflow

        path = self.registry.local_copy(release.team, release.model_name, release.version)
        team = self.teams.get(release.team, TeamRelease())
        tags = self.registry.run_tags(release.run_id, release.team) if release.run_id else {}
        holdout_spec = dict(team.holdout) if team.holdout else None
        if holdout_spec is not None and not holdout_spec.get("repo") and tags.get(PROJECT_TAG):
            holdout_spec["repo"] = tags[PROJECT_TAG]

        def holdout() -> HoldOut:
            assert holdout_spec is not None
            return self.load_holdout(release.team, holdout_spec)

        return run_gates(
            load=lambda: mlflow.pyfunc.load_model(str(path)),
            # The MLmodel file itself: get_model_info looks the logged model up in the process-wide tracking server.
            model_info=lambda: mlflow.models.Model.load(str(path / "MLmodel")),
            tags=tags,
            thresholds=team.thresholds,
            holdout=holdout if holdout_spec else None,
            pushed=self.pushed(release.team) if self.pushed else None,
        )

    async def _deploy_staging(self, release: Release) -> None:
        endpoints: dict[str, str] = {}
        if release.kind == "online":
            path = await asyncio.to_thread(self.registry.local_copy, release.team, release.model_name, release.version)
            await self.endpoints.deploy(release.model_name, "staging", release.version, path, team=release.team)
            endpoints["staging"] = self.endpoint_url(release.model_name, "staging")
            self._audit("endpoint switched", release, stage="staging")
        await asyncio.to_thread(self.registry.set_alias, release.team, release.model_name, "staging", release.version)
        self._audit("alias set", release, alias="staging")
        self.store.mark_staging_ready(release.id, endpoints)

    async def _deploy_production(self, release: Release) -> None:
        endpoints: dict[str, str] = {}
        if release.kind == "online":
            path = await asyncio.to_thread(self.registry.local_copy, release.team, release.model_name, release.version)
            await self.endpoints.deploy(release.model_name, "production", release.version, path, team=release.team)
            endpoints["production"] = self.endpoint_url(release.model_name, "production")
            self._audit("endpoint switched", release, stage="production")
        await asyncio.to_thread(
            self.registry.set_alias, release.team, release.model_name, "production", release.version
        )
        await asyncio.to_thread(
            self.registry.tag_version,
            release.team,
            release.model_name,
            release.version,
            {APPROVER_TAG: release.approver or ""},
        )
        self._audit("alias set", release, alias="production")
        self.store.mark_production(release.id, endpoints=endpoints)
        # The validator tested this version in staging; production now serves it, so staging's server goes.
        if self.endpoints.get(release.model_name, "staging") is not None:
            await self.endpoints.undeploy(release.model_name, "staging")

    async def _take_down_staging(self, release: Release) -> None:
        if self.endpoints.get(release.model_name, "staging") is not None:
            await self.endpoints.undeploy(release.model_name, "staging")
        if await asyncio.to_thread(self.registry.alias, release.team, release.model_name, "staging") == release.version:
            await asyncio.to_thread(self.registry.delete_alias, release.team, release.model_name, "staging")
        self._audit("staging taken down", release)

    async def _restore_production(self, release: Release) -> None:
        previous = self.store.production(release.model_name)
        if previous is None:
            await self.endpoints.undeploy(release.model_name, "production")
            await asyncio.to_thread(self.registry.delete_alias, release.team, release.model_name, "production")
            self._audit("production taken down", release)
            return
        if previous.kind == "online":
            path = await asyncio.to_thread(
                self.registry.local_copy, previous.team, previous.model_name, previous.version
            )
            await self.endpoints.deploy(previous.model_name, "production", previous.version, path, team=previous.team)
        await asyncio.to_thread(
            self.registry.set_alias, previous.team, previous.model_name, "production", previous.version
        )
        self._audit("production restored", previous, reason=f"release {release.id} failed to deploy")

    # --- start ---

    async def resume(self) -> None:
        """At start: bring back the endpoints that were live, then resume or fail releases caught mid-step."""
        recovery = self.store.resume_or_fail_on_restart()
        for release in self.store.releases(state=State.PRODUCTION):
            await self._restore_endpoint(release, "production")
        for release in self.store.releases(state=State.AWAITING_APPROVAL):
            await self._restore_endpoint(release, "staging")
        for release in recovery.resume:
            self.schedule(release.id)

    async def _restore_endpoint(self, release: Release, stage: str) -> None:
        if release.kind != "online":
            return
        try:
            path = await asyncio.to_thread(self.registry.local_copy, release.team, release.model_name, release.version)
            await self.endpoints.deploy(release.model_name, stage, release.version, path, team=release.team)
        except Exception as error:
            log.exception("could not bring back the %s endpoint of %s", stage, release.model_name)
            self._audit("endpoint not restored", release, reason=f"{type(error).__name__}: {error}", stage=stage)
        else:
            self._audit("endpoint restored", release, stage=stage)


def cache_dir(data_dir: str | Path) -> Path:
    """Where downloaded model versions are kept."""
    return Path(data_dir) / "models"
