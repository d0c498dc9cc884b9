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
import json
import logging
import os
import stat
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mlopshub.pipeline import (
    Conflict,
    NotAllowed,
    PipelineError,
    Release,
    ReleaseNotFound,
    ReleaseStore,
    State,
    validate_publish,
)
from mlopshub.pipeline.database import utc_now
from mlopshub.pipeline.gates import COMMIT_TAG, SNAPSHOT_TAG, data_versions
from mlopshub.serving import Endpoints, KServeEndpoints
from mlopshub.serving.gateway import RemoteEndpoints
from mlopshub.serving.integrity import IntegrityError, tree_digest, verify_tree
from mlopshub.serving.manifests import ManifestDeployer
from mlopshub.serving.sandbox import RunAs, hand_over, model_environment, popen_options, seal

from .auth import Caller
from .gatecheck import take_predictions
from .holdout import HoldoutLoader, PushedCheck
from .placement import ClusterPlacement, LocalPlacement, Placement
from .projects import ProjectReader
from .registry import APPROVER_TAG, Registry

log = logging.getLogger("mlopshub.pipeline")

PIPELINE = "pipeline"
#: Run tag naming the folder of the project the model was trained in (set by the Lab extension). A workspace
#: sets it: :class:`~mlopshub.services.pipeline.projects.ProjectReader` decides whether it may be read.
PROJECT_TAG = "mlopshub.project"


@dataclass(frozen=True)
class Cluster:
    """Kubernetes mode of the runner: where models run instead of this machine's processes.

    Online versions are KServe InferenceServices (the runner's endpoints are
    :class:`~mlopshub.serving.KServeEndpoints`, given each version's storage
    URI); batch versions are a Job in staging and a CronJob in production,
    written and applied by ``deployer``. ``artifacts_destination`` is MLflow's
    ``--artifacts-destination`` (``s3://<bucket>/<path>``), to turn
    ``mlflow-artifacts:/`` sources into addresses a predictor can fetch.
    The gates run as Jobs of the teams (:class:`~.placement.ClusterPlacement`),
    reaching the API with ``kubeconfig`` (empty: the pod's in-cluster
    configuration) and the object store at ``s3_endpoint`` (empty: AWS).
    """

    deployer: ManifestDeployer
    artifacts_destination: str = ""
    kubeconfig: str = ""
    s3_endpoint: str = ""


@dataclass(frozen=True)
class TeamRelease:
    """A team's release settings from the catalog: metric ``thresholds``, the ``holdout`` spec and the ``drift``
    thresholds of monitoring (``{psi, p_value}``, defaults where absent)."""

    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    holdout: Mapping[str, Any] | None = None
    drift: Mapping[str, float] = field(default_factory=dict)


class ReleaseRunner:
    """Carries releases from publish to production.

    ``teams`` maps each team to its :class:`TeamRelease`; ``load_holdout``
    reads a team's hold-out set; ``endpoint_url(model, stage)`` is the public
    address of an endpoint (recorded on the release). ``cluster`` turns on
    Kubernetes mode (:class:`Cluster`). ``projects`` reads publishers'
    projects (batch inputs) with their rights; without one, no project is read.
    """

    def __init__(
        self,
        store: ReleaseStore,
        registry: Registry,
        endpoints: Endpoints | KServeEndpoints | RemoteEndpoints,
        teams: Mapping[str, TeamRelease],
        load_holdout: HoldoutLoader,
        endpoint_url: Callable[[str, str], str],
        pushed: PushedCheck | None = None,
        cluster: Cluster | None = None,
        projects: ProjectReader | None = None,
    ):
        self.store = store
        self.registry = registry
        self.endpoints = endpoints
        self.teams = dict(teams)
        #: Teams archived by a platform admin (the Teams API keeps this): their members publish nothing new.
        self.archived: set[str] = set()
        self.load_holdout = load_holdout
        self.endpoint_url = endpoint_url
        self.pushed = pushed
        #: Kubernetes mode (None: one machine); see :class:`Cluster`.
        self.cluster = cluster
        self.projects = projects
        #: Production monitoring (:class:`~.monitoring.ModelMonitoring`): set by the service when it monitors.
        self.monitoring: Any = None
        self._locks: dict[str, asyncio.Lock] = {}
        # One publish of a model at a time (apart from _locks, which a release holds while it advances).
        self._publishing: dict[str, asyncio.Lock] = {}
        #: Where model code runs for the gates: chosen here, once (see :mod:`.placement`).
        self.placement = self._placement()
        if isinstance(endpoints, Endpoints):
            # A model server's restart that finds its copy changed stops serving; the audit log says so.
            endpoints.on_refused = self.endpoint_refused
        self._tasks: set[asyncio.Task[None]] = set()

    def _placement(self) -> Placement:
        if self.cluster is None:
            return LocalPlacement(
                self._model_copy, self.endpoints, self.registry.cache_dir, self._staging_run, self.batch_output_dir
            )
        cluster = self.cluster

        def storage_uri(release: Release) -> str:
            return self.registry.storage_uri(
                release.team, release.model_name, release.version, cluster.artifacts_destination
            )

        return ClusterPlacement(
            storage_uri,
            endpoints=self.endpoints,
            deployer=cluster.deployer,
            audit=self._audit,
            kubeconfig=cluster.kubeconfig or None,
            s3_endpoint=cluster.s3_endpoint,
        )

    async def _staging_run(self, release: Release, stage: str) -> dict[str, Any]:
        return await self.start_batch(release, stage, PIPELINE)

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

    def endpoint_refused(self, endpoint: Any, reason: str) -> None:
        """Record that ``endpoint`` stopped serving because its model copy no longer has the recorded digest."""
        release = self.store.production(endpoint.model) if endpoint.stage == "production" else None
        release = release or self.store.in_flight(endpoint.model)
        if release is None or release.version != endpoint.version:
            self.store.audit.record(
                PIPELINE, "model digest mismatch", model=endpoint.model, version=endpoint.version, reason=reason
            )
            return
        self._audit("model digest mismatch", release, reason=reason, stage=endpoint.stage)

    # --- requests ---

    async def publish(self, body: Any, caller: Caller) -> Release:
        """Validate, register the version in MLflow, record the release and start it moving."""
        allowed = caller.publish_teams(self.teams) - self.archived
        # The caller's teams first: the run is almost always there; then the rest, to tell "another team's" from
        # "no such run".
        search = [*sorted(allowed), *sorted(set(self.teams) - allowed)]

        def team_of_run(run_id: str) -> str | None:
            return self.registry.team_of_run(run_id, search)

        request = await asyncio.to_thread(validate_publish, body, team_of_run, allowed_teams=allowed)
        # The check, the registration and the record as one step per model name: concurrent publishes make one
        # MLflow version; the others are refused by the check, before they register anything.
        async with self._publishing.setdefault(request.name, asyncio.Lock()):
            self.store.check_can_publish(request.name, request.team)
            release_id = f"rel-{uuid.uuid4().hex[:12]}"
            version = await asyncio.to_thread(self.registry.register, request, caller.name, release_id)
            try:
                digest = await asyncio.to_thread(self._take_copy, request.team, request.name, version)
                release = self.store.create(
                    request, version=version, publisher=caller.name, release_id=release_id, model_digest=digest
                )
            except Exception:
                await asyncio.to_thread(self.registry.discard, request.team, request.name, version)
                raise
        self.schedule(release.id)
        return release

    # --- the model copy: taken once, sealed, checked before every load ---

    def _run_as(self, team: str) -> RunAs | None:
        return self.endpoints.run_as.get(team)

    def _take_copy(self, team: str, model: str, version: str) -> str:
        """Download a fresh copy of the version, seal it (root's, read-only to the team's model account); its digest.

        The digest is what the release records: every later load is checked against it.
        """
        path = self.registry.local_copy(team, model, version, fresh=True)
        run_as = self._run_as(team)
        seal(path, run_as)
        hand_over(path.parent, run_as, 0o750)
        return tree_digest(path)

    def _model_copy(self, release: Release) -> tuple[Path, str]:
        """The pipeline's copy of ``release``'s version and its recorded digest, checked to agree.

        A missing copy is downloaded again; one that differs from the digest
        recorded at registration raises :class:`IntegrityError`, recorded in
        the audit log, and nothing loads it. Releases recorded before digests
        existed get one now, from a fresh download.
        """
        team, model, version = release.team, release.model_name, release.version
        if release.model_digest is None:
            digest = self._take_copy(team, model, version)
            self.store.record_model_digest(release.id, digest)
            return self.registry.copy_path(team, model, version), digest
        path = self.registry.copy_path(team, model, version)
        if not path.exists() and not path.is_symlink():
            path = self.registry.local_copy(team, model, version)
            seal(path, self._run_as(team))
            hand_over(path.parent, self._run_as(team), 0o750)
        try:
            verify_tree(path, release.model_digest)
        except IntegrityError as error:
            self._audit("model digest mismatch", release, reason=str(error), model_digest=release.model_digest)
            raise
        return path, release.model_digest

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
        """Record a refused approval (model risk reviews who tried), then let the caller answer 403.

        An id that names no release is recorded too, and answered the same: the
        refusal must not tell a caller which release ids exist.
        """
        try:
            release = self.store.get(release_id)
        except ReleaseNotFound:
            self.store.audit.record(caller.name, "approval refused", release_id=release_id[:100], reason=reason)
            return
        self._audit("approval refused", release, actor=caller.name, reason=reason)

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
                # Nothing to switch: the store refuses it and says precisely why; model risk sees who tried.
                try:
                    return self.store.rollback(model, caller.name, reason)
                except PipelineError as error:
                    self.store.audit.record(
                        caller.name,
                        "rollback refused",
                        release_id=current.id if current else None,
                        model=model,
                        version=current.version if current else None,
                        reason=str(error)[:500],
                    )
                    raise
            if previous.kind == "online":
                await self._serve(previous, "production")
                self._audit("endpoint switched", previous, actor=caller.name, stage="production")
            else:
                await self.placement.schedule_batch(previous)
                self._audit("schedule switched", previous, actor=caller.name, schedule=_schedule_of(previous))
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
        request = await asyncio.to_thread(self._gate_request, release)
        # Apart from the pipeline: the placement adds where the model is and runs its code as the team.
        results = await self.placement.run_gates(release, request)
        # The model's hold-out predictions are monitoring's baseline, not part of the release's record.
        results, predictions = take_predictions(results)
        release = self.store.record_gate_results(release.id, results)
        if self.monitoring is not None and release.state == State.STAGING:
            await self.monitoring.take_baseline(release, request["tags"], predictions)

    def _gate_request(self, release: Release) -> dict[str, Any]:
        """What the gates need that takes the pipeline's rights: the run's tags, the hold-out set, the data checks."""
        team = self.teams.get(release.team, TeamRelease())
        tags = self.registry.run_tags(release.run_id, release.team) if release.run_id else {}
        request: dict[str, Any] = {
            "tags": tags,
            "thresholds": {name: dict(bounds) for name, bounds in team.thresholds.items()},
            "holdout": None,
            "holdout_error": None,
            "pushed": self._pushed_map(release.team, tags),
            "recorded": self._recorded_versions(release, tags),
        }
        holdout_spec = dict(team.holdout) if team.holdout else None
        if holdout_spec is not None:
            if not holdout_spec.get("repo") and tags.get(PROJECT_TAG):
                holdout_spec["repo"] = tags[PROJECT_TAG]
            # Read as the publisher, from their own projects (HoldoutLoader).
            holdout_spec["publisher"] = release.publisher
            try:
                data = self.load_holdout(release.team, holdout_spec)
            except Exception as error:  # the metrics gate reports it
                request["holdout_error"] = f"{type(error).__name__}: {error}"
            else:
                request["holdout"] = {
                    "csv": data.frame.to_csv(index=False),
                    "target": data.target,
                    "path": data.path,
                    "version": data.version,
                }
        return request

    def _recorded_versions(self, release: Release, tags: Mapping[str, str]) -> dict[str, Any] | str | None:
        """For a snapshot commit: the data versions the run's project records at it, read as the publisher, or why not.

        A snapshot lives only in the workspace's project (on a ref of the
        platform's own), so the gate proves it is there. None (not checked):
        a plain commit, no project, or this pipeline reads no projects.
        """
        commit, repo = tags.get(COMMIT_TAG), tags.get(PROJECT_TAG)
        if tags.get(SNAPSHOT_TAG) != "true" or not commit or not repo or self.projects is None:
            return None
        try:
            project = self.projects.resolve(release.publisher, repo, release.team)
            versions = self.projects.versions_at(project, commit, sorted(data_versions(tags)))
        except Exception as error:  # the lineage gate reports it
            return f"{type(error).__name__}: {error}"
        return {"commit": commit, "versions": versions}

    def _pushed_map(self, team: str, tags: Mapping[str, str]) -> dict[str, bool | str] | None:
        """For each DVC data version on the run: pushed to the team's remote (True/False) or why it can't be told."""
        check = self.pushed(team) if self.pushed else None
        if check is None:
            return None
        answers: dict[str, bool | str] = {}
        for path, digest in data_versions(tags).items():
            try:
                answers[path] = bool(check(path, digest))
            except Exception as error:  # the lineage gate reports it
                answers[path] = f"{type(error).__name__}: {error}"
        return answers

    async def _deploy_staging(self, release: Release) -> None:
        endpoints: dict[str, str] = {}
        if release.kind == "online":
            await self._serve(release, "staging")
            endpoints["staging"] = self.endpoint_url(release.model_name, "staging")
            self._audit("endpoint switched", release, stage="staging")
        else:
            # A batch model's staging is one scoring run that model risk can inspect; the release records its output.
            endpoints["staging"] = await self.placement.stage_batch(release)
        await asyncio.to_thread(self.registry.set_alias, release.team, release.model_name, "staging", release.version)
        self._audit("alias set", release, alias="staging")
        self.store.mark_staging_ready(release.id, endpoints)

    async def _deploy_production(self, release: Release) -> None:
        endpoints: dict[str, str] = {}
        if release.kind == "online":
            await self._serve(release, "production")
            endpoints["production"] = self.endpoint_url(release.model_name, "production")
            self._audit("endpoint switched", release, stage="production")
        else:
            endpoints["production"] = await self.placement.schedule_batch(release)
            self._audit("schedule active", release, schedule=_schedule_of(release))
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
            await self._serve(previous, "production")
        else:
            await self.placement.schedule_batch(previous)
        await asyncio.to_thread(
            self.registry.set_alias, previous.team, previous.model_name, "production", previous.version
        )
        self._audit("production restored", previous, reason=f"release {release.id} failed to deploy")

    # --- batch models ---

    def batch_output_dir(self, model: str, stage: str) -> Path:
        """Where runs of ``model`` at ``stage`` write: ``<pipeline data dir>/batch/<model>/<stage>``."""
        return self.store.database.path.parent / "batch" / model / stage

    @cached_property
    def _batch_running(self) -> dict[tuple[str, str], dict[str, Any]]:
        # (model, stage) -> the run in progress: one at a time, as a CronJob's concurrencyPolicy Forbid.
        return {}

    def batch_release(self, model: str, stage: str) -> Release:
        """The batch release a run of ``model`` at ``stage`` scores with; :class:`Conflict` when there is none."""
        if stage == "production":
            release = self.store.production(model)
        else:
            release = self.store.in_flight(model)
            if release is not None and release.state != State.AWAITING_APPROVAL:
                release = None
        if release is None:
            waiting = "in production" if stage == "production" else "awaiting approval (in staging)"
            raise Conflict(f"model '{model}' has no release {waiting}; there is no version to run at {stage}")
        if release.kind != "batch" or not release.batch:
            raise Conflict(f"model '{model}' is an online model; call its {stage} endpoint instead of running it")
        return release

    async def run_batch(self, model: str, stage: str, actor: str, wait: float) -> tuple[dict[str, Any], bool]:
        """Run ``model``'s batch job at ``stage`` now: (the run, whether it finished within ``wait`` seconds).

        :class:`Conflict` while a run of the same model and stage is in progress.
        """
        task = self.start_batch(self.batch_release(model, stage), stage, actor)
        done, _ = await asyncio.wait({task}, timeout=wait)
        if done:
            return task.result(), True
        return dict(self._batch_running.get((model, stage)) or {}), False

    def run_output(self, model: str, run_id: str) -> tuple[int, str]:
        """A read-only descriptor of the CSV run ``run_id`` of ``model`` wrote, and its file name.

        :class:`LookupError` when there is no such finished run or its output is gone.
        """
        run = next((r for r in self.batch_runs(model) if r.get("run") == run_id), None)
        if run is None or run.get("status") != "succeeded" or not run.get("output"):
            raise LookupError(f"no finished run {run_id!r} of model '{model}'; list its runs with GET .../runs")
        name = Path(str(run["output"])).name
        return open_output(self.batch_output_dir(model, str(run["stage"])), name), name

    def batch_runs(self, model: str) -> list[dict[str, Any]]:
        """Runs of ``model``, newest first: those in progress, then finished ones from the audit log."""
        running = [dict(run) for (name, _), run in self._batch_running.items() if name == model]
        finished = [
            {
                "model": entry.model,
                "version": entry.version,
                "release_id": entry.release_id,
                "actor": entry.actor,
                "reason": entry.reason,
                **{k: v for k, v in entry.details.items() if k != "state"},
            }
            for entry in self.store.audit.entries()
            if entry.action == BATCH_RUN and entry.model == model
        ]
        return running + finished[::-1]

    def start_batch(self, release: Release, stage: str, actor: str) -> asyncio.Task[dict[str, Any]]:
        """Start one scoring run of ``release`` at ``stage`` in a background task; the task gives the run.

        :class:`Conflict` while a run of the same model and stage is in progress.
        """
        self.placement.check_run_on_demand(release, stage)
        key = (release.model_name, stage)
        if key in self._batch_running:
            running = self._batch_running[key]
            raise Conflict(
                f"run {running['run']} of {release.model_name} at {stage} (version {running['version']}) is still "
                "in progress; wait for it (GET .../runs) before starting another"
            )
        run: dict[str, Any] = {
            "run": f"brun-{uuid.uuid4().hex[:12]}",
            "model": release.model_name,
            "version": release.version,
            "release_id": release.id,
            "stage": stage,
            "status": "running",
            "actor": actor,
            "started": utc_now(),
            "finished": None,
            "output": None,
            "record": None,
            "reason": "",
        }
        self._batch_running[key] = run
        task = asyncio.get_running_loop().create_task(self._run_batch(release, run))
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]
        return task

    async def _run_batch(self, release: Release, run: dict[str, Any]) -> dict[str, Any]:
        """Do ``run`` (from :meth:`start_batch`) in a process of its own; audit it as ``batch run``."""
        stage = run["stage"]
        try:
            call = await asyncio.to_thread(self._batch_command, release, stage)
            printed = await _run_process(call, BATCH_TIMEOUT)
            # The process runs model code: what it printed names a file in its output folder, or nothing.
            output = call.cwd / _output_name(printed, call.cwd)
            record = json.loads(read_output(call.cwd, output.with_suffix(".json").name, limit=MAX_RECORD))
            run.update(status="succeeded", output=str(output), record=record)
            if self.monitoring is not None:
                # Monitoring sees a batch run's rows as it sees an endpoint's requests (source "batch").
                await self.monitoring.capture_batch(release, run, call.cwd, output.name)
        except Exception as error:
            log.warning("batch run of %s at %s failed: %s", release.model_name, stage, str(error)[:500])
            run.update(status="failed", reason=f"{type(error).__name__}: {error}"[:1900])
        finally:
            run["finished"] = utc_now()
            del self._batch_running[(release.model_name, stage)]
        record = run["record"] or {}
        self._audit(
            BATCH_RUN,
            release,
            actor=run["actor"],
            reason=run["reason"],
            **{k: v for k, v in run.items() if k not in ("model", "version", "release_id", "actor", "reason")},
            input_md5=(record.get("input") or {}).get("md5"),
            rows=(record.get("input") or {}).get("rows"),
        )
        return run

    def _batch_command(self, release: Release, stage: str) -> BatchCall:
        """The scoring process for ``release`` at ``stage``: its arguments, scrubbed environment and folder.

        The model is the pipeline's local copy of the version (no MLflow
        credentials needed), recorded as ``models:/<name>/<version>``. The
        process gets no secret of the pipeline's: model code runs in it.
        """
        assert release.batch is not None
        spec = release.batch
        if self.projects is None:
            raise RuntimeError("this pipeline reads no projects (no project reader configured); batch runs need one")
        tags = self.registry.run_tags(release.run_id, release.team) if release.run_id else {}
        # The publisher's own project, read with their rights (ProjectReader): never the pipeline's.
        project = self.projects.resolve(release.publisher, spec.get("repo") or tags.get(PROJECT_TAG), release.team)
        data = self.projects.read(project, spec["input"], spec["rev"])
        if not data.md5:
            raise ValueError(
                f"input '{spec['input']}' at revision '{spec['rev']}' is not versioned by DVC; track it and save a "
                "version"
            )
        digest, repo = data.md5, project.repo
        model_path, model_digest = self._model_copy(release)
        run_as = self._run_as(release.team)
        output = self.batch_output_dir(release.model_name, stage)
        output.mkdir(parents=True, exist_ok=True)
        for folder in (output.parent, output.parent.parent):
            folder.chmod(0o711)  # passable to the model account on the way to its output, not listable
        hand_over(output, run_as, 0o2770)  # the team's model account writes the output, no workspace reads it
        input_file = output / f".input-{uuid.uuid4().hex[:12]}.csv"
        input_file.write_text(data.csv)
        hand_over(input_file, run_as, 0o640)
        argv = [sys.executable, "-m", "mlopshub.serving.batch", "--model-uri", str(model_path),
                "--record-uri", f"models:/{release.model_name}/{release.version}", f"--input={spec['input']}",
                f"--rev={spec['rev']}", f"--repo={repo}", "--output", str(output),
                "--input-file", str(input_file), "--input-md5", digest,
                "--model-digest", model_digest]  # fmt: skip
        env = model_environment(run_as, {"DVC_NO_ANALYTICS": "1"})
        return BatchCall(argv=argv, env=env, cwd=output, run_as=run_as, cleanup=(input_file,))

    async def _serve(self, release: Release, stage: str) -> None:
        """Make ``release``'s version the online endpoint of its model at ``stage`` (where: :attr:`placement`)."""
        await self.placement.serve(release, stage)

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
        current = self.endpoints.get(release.model_name, stage)
        if current is not None and current.version == release.version:
            return  # still served: the models service outlives this process
        try:
            await self._serve(release, stage)
        except Exception as error:
            log.exception("could not bring back the %s endpoint of %s", stage, release.model_name)
            self._audit("endpoint not restored", release, reason=f"{type(error).__name__}: {error}", stage=stage)
        else:
            self._audit("endpoint restored", release, stage=stage)


#: Audit action of every batch scoring run (details: run, stage, status, output, input_md5, rows, record).
BATCH_RUN = "batch run"
#: Seconds a batch scoring run may take before it is stopped and recorded as failed.
BATCH_TIMEOUT = 3600.0


@dataclass(frozen=True)
class BatchCall:
    """A scoring process to start: argument list, environment and working folder."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    #: The team's account to run as (None: as the pipeline).
    run_as: RunAs | None = None
    #: Files to remove once the process is done.
    cleanup: tuple[Path, ...] = ()


async def _run_process(call: BatchCall, timeout: float) -> Path:
    """Run ``call``; the output CSV it prints. Fails with the end of its error output, or after ``timeout`` s."""
    process = await asyncio.create_subprocess_exec(
        *call.argv,
        env=call.env,
        cwd=call.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **popen_options(call.run_as),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"the scoring process ran longer than {timeout:.0f} s and was stopped") from None
    finally:
        for path in call.cleanup:
            path.unlink(missing_ok=True)
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["(no error output)"]
        raise RuntimeError(f"the scoring process exited with {process.returncode}: {tail[0][:1500]}")
    return Path(out.decode().strip().splitlines()[-1])


#: The largest run record (``<output>.json``) the pipeline reads.
MAX_RECORD = 1 << 20


def _output_name(printed: Path, folder: Path) -> str:
    name = printed.name
    if printed.parent != folder or not name.endswith(".csv") or name.startswith("."):
        shown = str(printed)[:200]
        raise RuntimeError(f"the scoring process named {shown!r} as its output, not a CSV in its output folder")
    return name


def open_output(folder: Path, name: str) -> int:
    """A read-only descriptor of the regular file ``name`` directly in ``folder``, never through a symlink.

    A batch output folder is written by the team's model account, which runs
    model code: a symlink or a path out of the folder there is hostile, and
    the pipeline (root) must not follow it. :class:`FileNotFoundError` otherwise.
    """
    if "/" in name or name in ("", ".", ".."):
        raise FileNotFoundError(f"{name!r} is not a file name in {folder}")
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError as error:
        raise FileNotFoundError(f"no output {name} in {folder} ({error.strerror})") from None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(f"output {name} in {folder} is not a regular file")
    return fd


def read_output(folder: Path, name: str, limit: int) -> bytes:
    """The bytes of ``name`` in ``folder`` (:func:`open_output`), refused when larger than ``limit``."""
    fd = open_output(folder, name)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"output {name} in {folder} is larger than {limit} bytes")
    return data


def _schedule_of(release: Release) -> str:
    return str((release.batch or {}).get("schedule") or "on demand")
