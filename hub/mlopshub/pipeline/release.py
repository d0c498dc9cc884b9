"""Releases: one model version on its way to production, as a state machine kept in SQLite.

::

    registered -> gating -> gates_failed
                         -> staging -> awaiting_approval -> rejected
                                                         -> approved -> production -> superseded
                                                                                   -> rolled_back
    (registered, gating, staging, awaiting_approval, approved) -> failed

Two states beyond the issue's list keep the record truthful: ``approved``
(a validator said yes; the switch to production is under way) and
``superseded`` (was in production, replaced by a newer version; what a
rollback returns to). ``rolled_back`` is the production release that a
rollback took out.

The store changes a release only through the methods below; each checks the
current state and writes the new state together with its audit entry, in one
SQLite transaction on one file, so there is never a state change without its
audit entry (or the reverse). The store records; it does not deploy. The
pipeline service does the work (MLflow registry, endpoints) and then calls the
matching method.

Restart rule (:meth:`ReleaseStore.resume_or_fail_on_restart`): a release is
resumed when redoing its interrupted step is idempotent, and failed otherwise.

* ``registered`` and ``gating``: gates only read (load the model, read tags,
  score the hold-out set), so they are run again from the start. But a model
  that kills the pipeline while it is gated (out of memory loading it) would
  kill it at every restart, so a release interrupted more than
  ``max_interruptions`` times in the same state is failed instead, with the
  reason ``"interrupted by a restart; nothing was deployed"`` (true: gates
  deploy nothing).
* ``staging`` and ``approved``: deploying is written as "make the alias and
  the endpoint point at this version", which converges however often it is
  redone, so these always resume; the model runs in its own server process,
  so it cannot be what crashed the pipeline. Finishing a half-done deploy is
  what leaves nothing half-deployed.
  A batch model's staging step is one scoring run in a process of its own,
  writing the same output file when redone, so it resumes too.
* ``awaiting_approval`` is waiting for a person, not in progress: untouched.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .audit import AuditLog
from .contract import check_publish
from .database import Database, utc_now
from .errors import Conflict, InvalidRequest, InvalidTransition, NotAllowed, ReleaseNotFound

#: The actor recorded for steps the pipeline takes by itself.
PIPELINE = "pipeline"
#: Reason recorded on a release failed by :meth:`ReleaseStore.resume_or_fail_on_restart`.
RESTART_REASON = "interrupted by a restart; nothing was deployed"
#: A model name, as the pipeline's OpenAPI document states it (``pattern`` of ``PublishRequest.name`` and of the
#: ``{name}`` in ``/api/models/{name}/...``; a test holds them to this): without anchors, for URL routes.
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
MODEL_NAME = re.compile(rf"^{MODEL_NAME_PATTERN}$")
MAX_TEXT = 2000
#: Fields of a publish request's ``batch`` object (batch models only).
BATCH_FIELDS = ("input", "rev", "schedule", "repo")
#: A git revision as the batch input's ``rev``: a branch, tag or commit (no option-like or range forms).
_GIT_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@-]{0,199}$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[A-Za-z0-9][A-Za-z0-9_-]*)/(?P<path>.+)$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)$")


class State(StrEnum):
    """Where a release is: the pipeline's OpenAPI document lists these values, in this order, as ``Release.state``.

    The Lab extension's server and its TypeScript types take them from the document (a test holds it to this).
    """

    REGISTERED = "registered"
    GATING = "gating"
    GATES_FAILED = "gates_failed"
    STAGING = "staging"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    PRODUCTION = "production"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


#: States of a release still on its way: at most one per model (they share the model's staging endpoint).
IN_FLIGHT = (State.REGISTERED, State.GATING, State.STAGING, State.AWAITING_APPROVAL, State.APPROVED)
#: The steps a release shows, in order.
STEPS = ("registered", "gates", "staging", "approval", "production")


@dataclass(frozen=True)
class PublishRequest:
    """A validated publish request (see :func:`validate_publish`)."""

    model_uri: str
    name: str
    kind: str
    description: str
    team: str
    run_id: str
    #: Path of the model in the run (``runs:/`` URIs), or None.
    artifact_path: str | None = None
    #: Registered model and version the request named (``models:/`` URIs), or None.
    source_model: str | None = None
    source_version: str | None = None
    #: Batch models: ``{input, rev, schedule, repo}`` (see :func:`validate_batch`); None for online ones.
    batch: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Release:
    """One model version on its way to production, with every step and who took it."""

    id: str
    model_name: str
    version: str
    model_uri: str
    run_id: str | None
    team: str
    kind: str
    description: str
    publisher: str
    state: str
    steps: list[dict[str, Any]]
    gate_results: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    approver: str | None = None
    comment: str = ""
    #: Why the release stopped (gates failed, rejected, failed, rolled back); empty otherwise.
    reason: str = ""
    created: str = ""
    updated: str = ""
    #: When it last went into production (orders the versions a rollback goes back through).
    promoted: str | None = None
    #: Restarts that found it in its current state (see the module's restart rule).
    interruptions: int = 0
    #: Batch models: what they score and when, ``{input, rev, schedule, repo}``; None for online ones
    #: (and for releases recorded before batch releases existed).
    batch: dict[str, Any] | None = None
    #: Content digest of the pipeline's copy of the version (``sha256:<hex>``, :mod:`mlopshub.serving.integrity`),
    #: taken at registration; every server, gate and batch run checks the copy against it before loading.
    #: None for releases recorded before digests existed (the pipeline takes one on first use).
    model_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The release as plain JSON-ready data (the API's shape)."""
        return json.loads(json.dumps(asdict(self)))

    def step(self, name: str) -> dict[str, Any]:
        """The step called ``name`` (one of :data:`STEPS`)."""
        for step in self.steps:
            if step["name"] == name:
                return step
        raise KeyError(f"release '{self.id}' has no step {name!r}; its steps are: {', '.join(STEPS)}")


@dataclass(frozen=True)
class Recovery:
    """What :meth:`ReleaseStore.resume_or_fail_on_restart` decided."""

    resume: list[Release]
    failed: list[Release]


# --- validation ------------------------------------------------------------------------------------------------


def parse_model_uri(uri: str) -> dict[str, str]:
    """The parts of ``runs:/<run_id>/<path>`` or ``models:/<name>/<version>``; :class:`InvalidRequest` otherwise."""
    runs = _RUNS_URI.match(uri)
    if runs:
        parts = runs["path"].split("/")
        # Decoded too: MLflow's artifact store decodes %2e%2e into '..'.
        if any(unquote(part) in ("", ".", "..") or unquote(part) != part for part in parts):
            raise InvalidRequest(
                "model_uri", f"the model path in {uri!r} must be relative, with no empty, '.', '..' or %-encoded part"
            )
        return {"run_id": runs["run_id"], "artifact_path": runs["path"]}
    models = _MODELS_URI.match(uri)
    if models:
        return {"source_model": models["name"], "source_version": models["version"]}
    if uri.startswith("models:/m-"):
        # MLflow 3 returns this form from log_model; it names no run we can check the team of.
        raise InvalidRequest(
            "model_uri",
            f"{uri!r} is a logged-model id; publish from its run instead: runs:/<run_id>/<artifact path>",
        )
    raise InvalidRequest("model_uri", f"expected runs:/<run_id>/<path> or models:/<name>/<version>, got {uri!r}")


def _relative_path(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(field_name, f"expected the path of a DVC-tracked CSV in the project, got {value!r}")
    path = value.strip()
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "-", "~")) or any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(
            field_name, f"{path!r} must be relative to the project, e.g. data/new_loans.csv, with no '..' or '.'"
        )
    return path


def validate_batch(value: Any, kind: str) -> dict[str, Any] | None:
    """The ``batch`` object of a publish request, checked: ``{input, rev, schedule, repo}``, or None (online).

    Required for ``kind == "batch"``, refused for online models. ``rev``
    defaults to ``main``; ``schedule`` (five cron fields) and ``repo`` (the
    project folder or git URL; default: the project the run was trained in)
    may be None. Bad fields raise :class:`InvalidRequest` naming them (``batch.schedule``).
    """
    if kind != "batch":
        if value is not None:
            raise InvalidRequest("batch", "only batch models score an input; remove it, or publish with kind 'batch'")
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            "batch",
            'a batch model needs {"input": "<DVC-tracked CSV>", "rev": "main", "schedule": "0 6 * * *"}',
        )
    unknown = sorted(set(value) - set(BATCH_FIELDS))
    if unknown:
        raise InvalidRequest(f"batch.{unknown[0]}", f"unknown field; expected one of: {', '.join(BATCH_FIELDS)}")
    spec: dict[str, Any] = {"input": _relative_path(value.get("input"), "batch.input")}
    rev = value.get("rev") or "main"
    if not isinstance(rev, str) or not _GIT_REV.match(rev) or ".." in rev:
        raise InvalidRequest("batch.rev", f"expected a git branch, tag or commit such as 'main' or 'v2', got {rev!r}")
    spec["rev"] = rev
    schedule = value.get("schedule")
    if schedule is not None:
        # The parser lives with the scheduler that uses it; imported here so the core loads no serving code.
        from mlopshub.serving.schedule import ScheduleError, parse

        try:
            schedule = parse(schedule).expression
        except ScheduleError as error:
            raise InvalidRequest("batch.schedule", str(error)) from None
    spec["schedule"] = schedule
    repo = value.get("repo")
    if repo is not None and (not isinstance(repo, str) or not repo.strip() or repo.strip().startswith("-")):
        raise InvalidRequest("batch.repo", f"expected the project's folder or git URL, got {repo!r}")
    spec["repo"] = repo.strip() if repo else None
    return spec


def validate_publish(
    body: Any,
    team_of_run: Callable[[str], str | None],
    *,
    run_of_version: Callable[[str, str], str | None] | None = None,
    allowed_teams: Collection[str] | None = None,
) -> PublishRequest:
    """Check a publish request body and find the team that owns the model.

    ``team_of_run(run_id)`` gives the team (MLflow workspace) of a run, or None
    when there is no such run. ``run_of_version(name, version)`` gives the run
    of a registered version (needed only for ``models:/`` URIs). When
    ``allowed_teams`` is given (the caller's teams), a model of another team
    raises :class:`NotAllowed` (403). Bad fields raise :class:`InvalidRequest`
    naming the field (422).
    """
    # The shape (fields, types, the name's form, kinds, lengths) is the OpenAPI document's, as the Lab extension
    # checks it too; what follows is what a schema can't say.
    check_publish(body)
    model_uri = body["model_uri"].strip()
    name = body["name"]
    kind = body["kind"]
    description = body.get("description") or ""
    batch = validate_batch(body.get("batch"), kind)
    parts = parse_model_uri(model_uri)
    run_id = parts.pop("run_id", None)
    if run_id is None:
        if run_of_version is None:
            raise InvalidRequest("model_uri", "models:/ URIs are not accepted here; use runs:/<run_id>/<path>")
        run_id = run_of_version(parts["source_model"], parts["source_version"])
        if not run_id:
            raise InvalidRequest("model_uri", f"no registered model version {model_uri!r} (or it has no run)")
    team = team_of_run(run_id)
    if not team:
        raise InvalidRequest("model_uri", f"no run '{run_id}' in any team's experiments")
    if allowed_teams is not None and team not in allowed_teams:
        mine = ", ".join(sorted(allowed_teams)) or "none"
        raise NotAllowed(
            f"the model {model_uri} belongs to team '{team}'; you can publish models of your teams only ({mine})"
        )
    return PublishRequest(
        model_uri=model_uri,
        name=name,
        kind=kind,
        description=description,
        team=team,
        run_id=run_id,
        batch=batch,
        **parts,
    )


def _comment(value: Any, field_name: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidRequest(field_name, f"expected a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise InvalidRequest(field_name, "is required: say why, the publisher and model risk read it")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(field_name, f"is {len(value)} characters; at most {MAX_TEXT}")
    return value


def _actor(value: Any, field_name: str = "actor") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(field_name, f"expected the user name of the person acting, got {value!r}")
    return value.strip()


def same_person(a: str | None, b: str | None) -> bool:
    """Whether two user names are one person (compared case-insensitively, so 'Ann' cannot approve 'ann')."""
    if not a or not b:
        return False
    return a.strip().casefold() == b.strip().casefold()


def _with_step(
    steps: Sequence[Mapping[str, Any]], name: str, status: str, detail: str | None = None
) -> list[dict[str, Any]]:
    """``steps`` with the step ``name`` set to ``status`` (times filled in as it starts and ends)."""
    now = utc_now()
    changed = []
    for step in steps:
        step = dict(step)
        if step["name"] == name:
            step["status"] = status
            if status == "running" or step["started"] is None:
                step["started"] = now
            step["finished"] = now if status in ("passed", "failed") else None
            if detail is not None:
                step["detail"] = detail
        changed.append(step)
    return changed


# --- the store -------------------------------------------------------------------------------------------------


class ReleaseStore:
    """Releases in the SQLite file at ``path``, which also holds their audit log (:attr:`audit`)."""

    def __init__(self, path: str | Path):
        self.database = Database(path)
        # Same file, same transactions: a transition and its audit entry commit together. Opening the log
        # brings the whole file, the releases table included, to the current schema (see .schema).
        self.audit = AuditLog(self.database)

    # --- reading ---

    def get(self, release_id: str) -> Release:
        """The release ``release_id``; :class:`ReleaseNotFound` if there is none."""
        with self.database.reading() as connection:
            return self._load(connection, release_id)

    def releases(
        self, *, state: str | None = None, model_name: str | None = None, team: str | None = None
    ) -> list[Release]:
        """Releases, newest first, optionally only those in a state, of a model or of a team."""
        clauses, values = [], []
        for column, value in (("state", state), ("model_name", model_name), ("team", team)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(str(value))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.database.reading() as connection:
            rows = connection.execute(f"SELECT body FROM releases {where} ORDER BY created DESC", values).fetchall()
        return [_release(row["body"]) for row in rows]

    def in_flight(self, model_name: str) -> Release | None:
        """The release of ``model_name`` still on its way to production, if any."""
        with self.database.reading() as connection:
            return self._in_flight(connection, model_name)

    def owner(self, model_name: str) -> str | None:
        """The team whose model ``model_name`` is (its first release's team), or None for a new name."""
        with self.database.reading() as connection:
            return self._owner(connection, model_name)

    def check_can_publish(self, model_name: str, team: str) -> None:
        """Refuse a new release of ``model_name`` by ``team`` now, as :meth:`create` would.

        The pipeline asks before it registers a version in MLflow, so that a
        refused publish leaves no stray version there; :meth:`create` asks
        again in its own transaction.
        """
        with self.database.reading() as connection:
            self._check_can_publish(connection, model_name, team)

    def production(self, model_name: str) -> Release | None:
        """The release of ``model_name`` in production, if any."""
        with self.database.reading() as connection:
            return self._latest(connection, model_name, State.PRODUCTION)

    def previous_production(self, model_name: str) -> Release | None:
        """The release a rollback of ``model_name`` would put back in production, if any."""
        with self.database.reading() as connection:
            return self._latest(connection, model_name, State.SUPERSEDED)

    # --- transitions ---

    def create(
        self,
        request: PublishRequest,
        *,
        version: str | int,
        publisher: str,
        release_id: str | None = None,
        model_digest: str | None = None,
    ) -> Release:
        """Record a release of a version just registered in MLflow (state ``registered``).

        Raises :class:`Conflict` while another release of the same model is in
        flight: they would share its staging endpoint, and a validator could
        approve one while testing the other; :class:`NotAllowed` when the name
        is another team's model.
        """
        publisher = _actor(publisher, "publisher")
        now = utc_now()
        steps = [{"name": name, "status": "pending", "started": None, "finished": None, "detail": ""} for name in STEPS]
        release = Release(
            id=release_id or f"rel-{uuid.uuid4().hex[:12]}",
            model_name=request.name,
            version=str(version),
            model_uri=request.model_uri,
            run_id=request.run_id,
            team=request.team,
            kind=request.kind,
            description=request.description,
            publisher=publisher,
            state=State.REGISTERED,
            steps=_with_step(steps, "registered", "passed", f"{request.name} version {version}"),
            created=now,
            updated=now,
            batch=dict(request.batch) if request.batch is not None else None,
            model_digest=model_digest,
        )
        with self.database.transaction() as connection:
            self._check_can_publish(connection, request.name, request.team)
            self._save(connection, release, insert=True)
            details: dict[str, Any] = {"model_uri": request.model_uri, "model_digest": model_digest}
            if release.batch is not None:
                details["batch"] = release.batch
            self._record(connection, publisher, "registered", release, details=details)
        return release

    def start_gating(self, release_id: str, actor: str = PIPELINE) -> Release:
        """``registered`` -> ``gating``: the gates are about to run."""

        def change(release: Release) -> Release:
            return replace(release, state=State.GATING, steps=_with_step(release.steps, "gates", "running"))

        return self._transition(release_id, "gating started", actor, (State.REGISTERED,), change)

    def record_gate_results(self, release_id: str, results: Sequence[Any], actor: str = PIPELINE) -> Release:
        """``gating`` -> ``staging`` when every gate passed, else ``gates_failed`` with their reasons.

        ``results`` are :class:`~mlopshub.pipeline.gates.GateResult` objects or their dicts.
        """
        results = [dict(r.to_dict() if hasattr(r, "to_dict") else r) for r in results]
        if not results:
            raise InvalidRequest("gate_results", "no gate results; run the gates first (gates.run_gates)")
        failed = [r for r in results if not r.get("passed")]
        reason = "; ".join(f"{r['name']}: {r.get('reason', '')}" for r in failed)

        def change(release: Release) -> Release:
            if failed:
                steps = _with_step(release.steps, "gates", "failed", reason)
                return replace(release, state=State.GATES_FAILED, steps=steps, gate_results=results, reason=reason)
            steps = _with_step(release.steps, "gates", "passed", f"{len(results)} gates passed")
            steps = _with_step(steps, "staging", "running")
            return replace(release, state=State.STAGING, steps=steps, gate_results=results)

        action = "gates failed" if failed else "gates passed"
        return self._transition(
            release_id, action, actor, (State.GATING,), change, reason=reason, details={"gates": results}
        )

    def mark_staging_ready(self, release_id: str, endpoints: Mapping[str, str], actor: str = PIPELINE) -> Release:
        """``staging`` -> ``awaiting_approval``: the staging endpoint answers at ``endpoints``."""
        endpoints = {str(k): str(v) for k, v in dict(endpoints).items()}

        def change(release: Release) -> Release:
            steps = _with_step(release.steps, "staging", "passed", ", ".join(endpoints.values()))
            steps = _with_step(steps, "approval", "running")
            return replace(
                release, state=State.AWAITING_APPROVAL, steps=steps, endpoints={**release.endpoints, **endpoints}
            )

        return self._transition(
            release_id, "staging ready", actor, (State.STAGING,), change, details={"endpoints": endpoints}
        )

    def approve(self, release_id: str, actor: str, comment: str) -> Release:
        """``awaiting_approval`` -> ``approved`` by a validator who is not the publisher (four eyes), saying why.

        Raises :class:`NotAllowed` when ``actor`` published the release, whatever
        its state and comment (so that the refusal is recorded), then
        :class:`InvalidRequest` for a missing comment.
        """
        actor = _actor(actor)
        said = comment.strip() if isinstance(comment, str) else ""  # written only once check() has accepted it

        def change(release: Release) -> Release:
            steps = _with_step(release.steps, "approval", "passed", f"approved by {actor}: {said}")
            steps = _with_step(steps, "production", "running")
            return replace(release, state=State.APPROVED, steps=steps, approver=actor, comment=said)

        def check(release: Release) -> None:
            if same_person(actor, release.publisher):
                raise NotAllowed(
                    f"'{actor}' cannot approve release '{release.id}': it was published by '{release.publisher}', "
                    "and a release needs a second person's approval; ask a model validator who did not publish it"
                )
            _comment(comment, "comment", required=True)

        # The approval names the exact bytes approved: what production may serve.
        return self._transition(
            release_id,
            "approved",
            actor,
            (State.AWAITING_APPROVAL,),
            change,
            reason=said,
            check=check,
            details=lambda release: {"model_digest": release.model_digest},
        )

    def record_model_digest(self, release_id: str, digest: str, actor: str = PIPELINE) -> Release:
        """Record the digest of a release's model copy, taken after registration (releases older than digests).

        The state does not change; refused when a digest is recorded already.
        """
        with self.database.transaction() as connection:
            release = self._load(connection, release_id)
            if release.model_digest is not None:
                raise Conflict(f"release '{release_id}' has a model digest already ({release.model_digest})")
            changed = replace(release, model_digest=digest, updated=utc_now())
            self._save(connection, changed)
            self._record(connection, actor, "model digest recorded", changed, details={"model_digest": digest})
        return changed

    def reject(self, release_id: str, actor: str, reason: str) -> Release:
        """``awaiting_approval`` -> ``rejected``, with the reason the publisher will read.

        Anyone the service lets call this may reject, the publisher included
        (withdrawing): stopping a release needs no second pair of eyes.
        """
        actor = _actor(actor)
        reason = _comment(reason, "reason", required=True)

        def change(release: Release) -> Release:
            steps = _with_step(release.steps, "approval", "failed", f"rejected by {actor}: {reason}")
            return replace(release, state=State.REJECTED, steps=steps, approver=actor, comment=reason, reason=reason)

        return self._transition(release_id, "rejected", actor, (State.AWAITING_APPROVAL,), change, reason=reason)

    def mark_production(
        self, release_id: str, actor: str = PIPELINE, endpoints: Mapping[str, str] | None = None
    ) -> Release:
        """``approved`` -> ``production``; the model's previous production release becomes ``superseded``."""
        endpoints = {str(k): str(v) for k, v in dict(endpoints or {}).items()}
        with self.database.transaction() as connection:
            release = self._load(connection, release_id)
            self._check(release, "mark_production", (State.APPROVED,))
            previous = self._latest(connection, release.model_name, State.PRODUCTION)
            if previous is not None:
                previous = replace(previous, state=State.SUPERSEDED, updated=utc_now(), interruptions=0)
                self._save(connection, previous)
                self._record(
                    connection, actor, "superseded", previous, details={"by_release": release.id, "by": release.version}
                )
            now = utc_now()
            release = replace(
                release,
                state=State.PRODUCTION,
                steps=_with_step(release.steps, "production", "passed", ", ".join(endpoints.values())),
                endpoints={**release.endpoints, **endpoints},
                promoted=now,
                updated=now,
                interruptions=0,
            )
            self._save(connection, release)
            self._record(
                connection,
                actor,
                "production",
                release,
                details={"endpoints": endpoints, "replaces": previous.version if previous else None},
            )
        return release

    def mark_failed(self, release_id: str, reason: str, actor: str = PIPELINE) -> Release:
        """Any in-flight state -> ``failed``: a step crashed; ``reason`` says which and why."""
        reason = _comment(reason, "reason", required=True)

        def change(release: Release) -> Release:
            running = [s["name"] for s in release.steps if s["status"] == "running"]
            steps = _with_step(release.steps, running[0], "failed", reason) if running else release.steps
            return replace(release, state=State.FAILED, steps=steps, reason=reason)

        return self._transition(release_id, "failed", actor, IN_FLIGHT, change, reason=reason)

    def rollback(self, model_name: str, actor: str, reason: str) -> tuple[Release, Release]:
        """Put the previous production version of ``model_name`` back: returns (rolled back, restored).

        The service switches the alias and endpoint to ``restored`` first
        (:meth:`previous_production` says which), then records it here.
        """
        actor = _actor(actor)
        reason = _comment(reason, "reason", required=True)
        with self.database.transaction() as connection:
            current = self._latest(connection, model_name, State.PRODUCTION)
            if current is None:
                raise Conflict(f"model '{model_name}' has no release in production; there is nothing to roll back")
            previous = self._latest(connection, model_name, State.SUPERSEDED)
            if previous is None:
                raise Conflict(
                    f"model '{model_name}' has no earlier production version to roll back to "
                    f"(version {current.version} is the first); publish a fixed version instead"
                )
            now = utc_now()
            current = replace(current, state=State.ROLLED_BACK, reason=reason, updated=now)
            # A new promotion time keeps "the latest superseded" meaning "in production just before".
            previous = replace(previous, state=State.PRODUCTION, promoted=now, updated=now, reason="")
            self._save(connection, current)
            self._save(connection, previous)
            self._record(connection, actor, "rolled back", current, reason=reason, details={"to": previous.version})
            self._record(connection, actor, "restored", previous, reason=reason, details={"from": current.version})
        return current, previous

    def resume_or_fail_on_restart(self, max_interruptions: int = 1) -> Recovery:
        """At service start: decide for each release caught mid-step (the module's restart rule).

        Returns the releases the service must carry on with (re-run gates for
        ``registered``/``gating``, redo the deploy for ``staging``/``approved``)
        and those failed.
        """
        resume: list[Release] = []
        failed: list[Release] = []
        with self.database.transaction() as connection:
            states = (State.REGISTERED, State.GATING, State.STAGING, State.APPROVED)
            rows = connection.execute(
                f"SELECT body FROM releases WHERE state IN ({', '.join('?' * len(states))}) ORDER BY created",
                [str(s) for s in states],
            ).fetchall()
            for row in rows:
                release = _release(row["body"])
                interruptions = release.interruptions + 1
                gates_only = release.state in (State.REGISTERED, State.GATING)
                if gates_only and interruptions > max_interruptions:
                    running = [s["name"] for s in release.steps if s["status"] == "running"] or ["gates"]
                    release = replace(
                        release,
                        state=State.FAILED,
                        steps=_with_step(release.steps, running[0], "failed", RESTART_REASON),
                        reason=RESTART_REASON,
                        interruptions=interruptions,
                        updated=utc_now(),
                    )
                    self._save(connection, release)
                    self._record(
                        connection,
                        PIPELINE,
                        "failed",
                        release,
                        reason=RESTART_REASON,
                        details={"interruptions": interruptions},
                    )
                    failed.append(release)
                else:
                    release = replace(release, interruptions=interruptions, updated=utc_now())
                    self._save(connection, release)
                    self._record(
                        connection,
                        PIPELINE,
                        "resumed after restart",
                        release,
                        details={"state": str(release.state), "interruptions": interruptions},
                    )
                    resume.append(release)
        return Recovery(resume=resume, failed=failed)

    # --- inside a transaction ---

    def _transition(
        self,
        release_id: str,
        action: str,
        actor: str,
        allowed: Sequence[str],
        change: Callable[[Release], Release],
        *,
        reason: str = "",
        details: Mapping[str, Any] | Callable[[Release], Mapping[str, Any]] | None = None,
        check: Callable[[Release], None] | None = None,
    ) -> Release:
        with self.database.transaction() as connection:
            release = self._load(connection, release_id)
            if check is not None:
                check(release)
            self._check(release, action, allowed)
            changed = replace(change(release), updated=utc_now(), interruptions=0)
            self._save(connection, changed)
            recorded = details(changed) if callable(details) else details
            self._record(connection, actor, action, changed, reason=reason, details=recorded)
        return changed

    @staticmethod
    def _check(release: Release, action: str, allowed: Sequence[str]) -> None:
        if release.state not in allowed:
            raise InvalidTransition(release.id, release.state, action, [str(s) for s in allowed])

    @staticmethod
    def _load(connection: sqlite3.Connection, release_id: str) -> Release:
        row = connection.execute("SELECT body FROM releases WHERE id = ?", (release_id,)).fetchone()
        if row is None:
            raise ReleaseNotFound(release_id)
        return _release(row["body"])

    @staticmethod
    def _latest(connection: sqlite3.Connection, model_name: str, state: str) -> Release | None:
        row = connection.execute(
            "SELECT body FROM releases WHERE model_name = ? AND state = ? ORDER BY promoted DESC, created DESC LIMIT 1",
            (model_name, str(state)),
        ).fetchone()
        return _release(row["body"]) if row else None

    @classmethod
    def _check_can_publish(cls, connection: sqlite3.Connection, model_name: str, team: str) -> None:
        owner = cls._owner(connection, model_name)
        if owner is not None and owner != team:
            raise NotAllowed(
                f"the model name '{model_name}' belongs to team '{owner}' (endpoints are named after models); "
                "choose another name"
            )
        busy = cls._in_flight(connection, model_name)
        if busy is not None:
            raise Conflict(
                f"release '{busy.id}' of model '{model_name}' (version {busy.version}) is still "
                f"'{busy.state}'; wait until it is done, or reject it, before publishing another version"
            )

    @staticmethod
    def _owner(connection: sqlite3.Connection, model_name: str) -> str | None:
        row = connection.execute(
            "SELECT team FROM releases WHERE model_name = ? ORDER BY created LIMIT 1", (model_name,)
        ).fetchone()
        return str(row["team"]) if row else None

    @staticmethod
    def _in_flight(connection: sqlite3.Connection, model_name: str) -> Release | None:
        row = connection.execute(
            f"SELECT body FROM releases WHERE model_name = ? AND state IN ({', '.join('?' * len(IN_FLIGHT))}) "
            "ORDER BY created DESC LIMIT 1",
            (model_name, *map(str, IN_FLIGHT)),
        ).fetchone()
        return _release(row["body"]) if row else None

    @staticmethod
    def _save(connection: sqlite3.Connection, release: Release, *, insert: bool = False) -> None:
        values = (
            release.id,
            release.model_name,
            release.team,
            str(release.state),
            release.created,
            release.updated,
            release.promoted,
            json.dumps(release.to_dict()),
        )
        if insert:
            try:
                connection.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
            except sqlite3.IntegrityError:
                raise Conflict(f"a release with id '{release.id}' already exists; choose another id") from None
            return
        connection.execute(
            "UPDATE releases SET model_name = ?, team = ?, state = ?, created = ?, updated = ?, promoted = ?, "
            "body = ? WHERE id = ?",
            (*values[1:], values[0]),
        )

    def _record(
        self,
        connection: sqlite3.Connection,
        actor: str,
        action: str,
        release: Release,
        *,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.audit.append(
            connection,
            actor,
            action,
            release_id=release.id,
            model=release.model_name,
            version=release.version,
            reason=reason,
            details={"state": str(release.state), **dict(details or {})},
        )


def _release(body: str) -> Release:
    data = json.loads(body)
    return Release(**data)
