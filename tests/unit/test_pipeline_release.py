"""Releases: publish validation, the state machine, four eyes, rollback, the restart rule, audit entries."""

import threading
from dataclasses import replace

import pytest

from mlopshub.pipeline import (
    Conflict,
    InvalidRequest,
    InvalidTransition,
    NotAllowed,
    ReleaseNotFound,
    ReleaseStore,
    State,
    validate_publish,
)
from mlopshub.pipeline.gates import GateResult
from mlopshub.pipeline.release import RESTART_REASON, PublishRequest

RUN = "0123456789abcdef0123456789abcdef"
RUNS = {RUN: "sme-credit", "f" * 32: "retail-scoring"}
PASSED = [GateResult("model_loads", True, "the model loads"), GateResult("lineage", True, "clean")]
FAILED = [
    GateResult("model_loads", True, "the model loads"),
    GateResult("signature_and_example", False, "the model has no signature", "log it with input_example=..."),
]


def body(**changes):
    return {"model_uri": f"runs:/{RUN}/model", "name": "credit-default", "kind": "online", **changes}


def request(name: str = "credit-default") -> PublishRequest:
    return validate_publish(body(name=name, description="gradient boosting, 2024 data"), RUNS.get)


@pytest.fixture
def store(tmp_path) -> ReleaseStore:
    return ReleaseStore(tmp_path / "pipeline.db")


def to_awaiting_approval(store: ReleaseStore, name: str = "credit-default", version: int = 1, publisher="pat"):
    release = store.create(request(name), version=version, publisher=publisher)
    store.start_gating(release.id)
    store.record_gate_results(release.id, PASSED)
    return store.mark_staging_ready(release.id, {"staging": f"/services/models/{name}/staging/invocations"})


def to_production(store: ReleaseStore, version: int, name: str = "credit-default"):
    release = to_awaiting_approval(store, name, version)
    store.approve(release.id, "val", "checked")
    return store.mark_production(release.id, endpoints={"production": f"/services/models/{name}/production"})


# --- validation -----------------------------------------------------------------------------------------------


def test_valid_publish_request_names_the_run_path_and_team():
    valid = validate_publish(body(description="first model"), RUNS.get)
    assert (valid.run_id, valid.artifact_path, valid.team, valid.kind) == (RUN, "model", "sme-credit", "online")


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"model_uri": None}, "model_uri", "is required"),
        ({"name": 3}, "name", "expected a string, got int"),
        ({"kind": "streaming"}, "kind", "online, batch"),
        ({"kind": None}, "kind", "is required"),
        ({"description": "x" * 2001}, "description", "at most 2000"),
        ({"description": ["a"]}, "description", "expected a string"),
        ({"name": "-leading-dash"}, "name", "expected a model name: 1 to 63"),
        ({"name": "a" * 64}, "name", "expected a model name: 1 to 63"),
        ({"name": "has space"}, "name", "expected a model name: 1 to 63"),
        ({"model_uri": "s3://bucket/model"}, "model_uri", "runs:/<run_id>/<path> or models:/<name>/<version>"),
        ({"model_uri": f"runs:/{RUN}/../other"}, "model_uri", "'..'"),
        ({"model_uri": "models:/m-0123abcd"}, "model_uri", "logged-model id"),
        ({"model_uri": "models:/credit/2"}, "model_uri", "use runs:/"),
        ({"model_uri": "runs:/" + "e" * 32 + "/model"}, "model_uri", "no run 'eeee"),
        ({"descripton": "typo"}, "descripton", "unknown field"),
    ],
)
def test_malformed_publish_request_names_the_field(bad, field, words):
    with pytest.raises(InvalidRequest) as raised:
        validate_publish(body(**bad), RUNS.get)
    assert raised.value.field == field
    assert words in raised.value.message
    assert raised.value.http_status == 422


def test_publish_body_must_be_an_object():
    with pytest.raises(InvalidRequest, match="expected a JSON object") as raised:
        validate_publish(["runs:/x/m"], RUNS.get)
    assert raised.value.field == "(body)"


def test_registered_model_uri_is_resolved_to_its_run():
    valid = validate_publish(
        body(model_uri="models:/credit/2"),
        RUNS.get,
        run_of_version=lambda name, version: RUN if version == "2" else None,
    )
    assert (valid.run_id, valid.source_model, valid.source_version, valid.team) == (RUN, "credit", "2", "sme-credit")


def test_model_of_another_team_is_not_allowed():
    with pytest.raises(
        NotAllowed, match="belongs to team 'retail-scoring'.*your teams only \\(sme-credit\\)"
    ) as raised:
        validate_publish(body(model_uri="runs:/" + "f" * 32 + "/model"), RUNS.get, allowed_teams={"sme-credit"})
    assert raised.value.http_status == 403


# --- the happy path -------------------------------------------------------------------------------------------


def test_release_goes_from_registered_to_production_recording_every_step(store):
    release = store.create(request(), version=1, publisher="pat")
    assert release.state == State.REGISTERED and release.team == "sme-credit"
    assert [s["status"] for s in release.steps] == ["passed", "pending", "pending", "pending", "pending"]
    assert store.start_gating(release.id).step("gates")["status"] == "running"
    staging = store.record_gate_results(release.id, PASSED)
    assert staging.state == State.STAGING
    assert [g["name"] for g in staging.gate_results] == ["model_loads", "lineage"]
    waiting = store.mark_staging_ready(release.id, {"staging": "/services/models/credit-default/staging/invocations"})
    assert waiting.state == State.AWAITING_APPROVAL and waiting.endpoints["staging"].endswith("/invocations")
    approved = store.approve(release.id, "val", "metrics and lineage reviewed")
    assert (approved.state, approved.approver, approved.comment) == (
        State.APPROVED,
        "val",
        "metrics and lineage reviewed",
    )
    done = store.mark_production(release.id, endpoints={"production": "/services/models/credit-default/production"})
    assert done.state == State.PRODUCTION and done.promoted
    assert all(s["status"] == "passed" and s["finished"] for s in done.steps)

    audit = store.audit.entries(release_id=release.id)
    assert [(e.actor, e.action) for e in audit] == [
        ("pat", "registered"),
        ("pipeline", "gating started"),
        ("pipeline", "gates passed"),
        ("pipeline", "staging ready"),
        ("val", "approved"),
        ("pipeline", "production"),
    ]
    assert audit[4].reason == "metrics and lineage reviewed"
    assert store.audit.verify() == []


def test_releases_survive_reopening_the_store(tmp_path):
    release = to_awaiting_approval(ReleaseStore(tmp_path / "pipeline.db"))
    reopened = ReleaseStore(tmp_path / "pipeline.db")
    assert reopened.get(release.id) == release
    assert [r.id for r in reopened.releases(state=State.AWAITING_APPROVAL, team="sme-credit")] == [release.id]
    assert reopened.releases(model_name="other") == []


# --- four eyes and the state checks ------------------------------------------------------------------------


def test_validator_cannot_approve_own_release(store):
    release = to_awaiting_approval(store, publisher="pat")
    for same in ("pat", " PAT "):
        with pytest.raises(NotAllowed) as raised:
            store.approve(release.id, same, "fine by me")
        assert "'pat'" in str(raised.value).casefold() and "published by 'pat'" in str(raised.value)
        assert raised.value.http_status == 403
    assert store.get(release.id).state == State.AWAITING_APPROVAL
    assert [e.action for e in store.audit.entries(release_id=release.id)][-1] == "staging ready"


def test_approval_needs_a_comment_but_a_self_approval_is_refused_as_such_first(store):
    release = to_awaiting_approval(store, publisher="pat")
    for said in (None, "", "   \n", 7, "x" * 2001):
        with pytest.raises(InvalidRequest) as raised:
            store.approve(release.id, "val", said)
        assert (raised.value.field, raised.value.http_status) == ("comment", 422), said
    with pytest.raises(InvalidRequest, match="comment: is required: say why"):
        store.approve(release.id, "val", "")
    with pytest.raises(NotAllowed, match="published by 'pat'"):
        store.approve(release.id, "pat", "")
    assert store.get(release.id).state == State.AWAITING_APPROVAL
    approved = store.approve(release.id, "val", "  " + "y" * 2000 + "\n")
    assert approved.comment == "y" * 2000, "2000 characters once stripped"
    assert store.audit.entries(release_id=release.id)[-1].reason == "y" * 2000


def test_approval_only_from_awaiting_approval_and_names_the_state(store):
    release = store.create(request(), version=1, publisher="pat")
    store.start_gating(release.id)
    with pytest.raises(InvalidTransition, match="is 'gating'; approved needs it to be 'awaiting_approval'") as raised:
        store.approve(release.id, "val", "checked")
    assert raised.value.http_status == 409
    assert store.get(release.id).state == State.GATING


def test_failed_gate_stops_the_release_with_its_reasons(store):
    release = store.create(request(), version=1, publisher="pat")
    store.start_gating(release.id)
    stopped = store.record_gate_results(release.id, FAILED)
    assert stopped.state == State.GATES_FAILED
    assert stopped.reason == "signature_and_example: the model has no signature"
    assert stopped.step("gates")["status"] == "failed" and stopped.step("staging")["status"] == "pending"
    assert stopped.gate_results[1]["fix"] == "log it with input_example=..."
    with pytest.raises(InvalidTransition):
        store.mark_staging_ready(release.id, {"staging": "x"})
    assert store.audit.entries(release_id=release.id)[-1].action == "gates failed"


def test_reject_needs_a_reason_and_the_publisher_reads_it(store):
    release = to_awaiting_approval(store)
    with pytest.raises(InvalidRequest) as raised:
        store.reject(release.id, "val", "   ")
    assert raised.value.field == "reason"
    rejected = store.reject(release.id, "val", "hold-out set is from 2019")
    assert (rejected.state, rejected.reason, rejected.approver) == (State.REJECTED, "hold-out set is from 2019", "val")
    assert rejected.step("approval")["detail"] == "rejected by val: hold-out set is from 2019"


def test_two_validators_approving_at_once_approve_once(store):
    release = to_awaiting_approval(store)
    outcomes: list[str] = []

    def approve(actor: str) -> None:
        try:
            store.approve(release.id, actor, "ok")
            outcomes.append("approved")
        except InvalidTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=approve, args=(f"val-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "refused", "refused", "refused"]
    assert [e.action for e in store.audit.entries(release_id=release.id)].count("approved") == 1


def test_publishing_while_a_release_of_the_model_is_in_flight_is_refused(store):
    first = to_awaiting_approval(store)
    with pytest.raises(Conflict, match=f"release '{first.id}' of model 'credit-default' .* 'awaiting_approval'"):
        store.create(request(), version=2, publisher="pat")
    assert store.in_flight("credit-default").id == first.id
    store.create(request("another-model"), version=1, publisher="pat")
    store.reject(first.id, "pat", "withdrawn: wrong features")
    assert store.create(request(), version=2, publisher="pat").version == "2"


def test_a_model_name_belongs_to_the_team_that_first_released_it(store):
    first = to_awaiting_approval(store)
    store.reject(first.id, "pat", "withdrawn")
    other = replace(request(), team="retail-scoring")
    with pytest.raises(NotAllowed, match="'credit-default' belongs to team 'sme-credit'"):
        store.check_can_publish(other.name, other.team)
    with pytest.raises(NotAllowed, match="belongs to team 'sme-credit'"):
        store.create(other, version=2, publisher="bob")
    store.check_can_publish("credit-default", "sme-credit")  # its own team may


def test_unknown_release_is_not_found(store):
    with pytest.raises(ReleaseNotFound, match="no release 'rel-nope'") as raised:
        store.start_gating("rel-nope")
    assert raised.value.http_status == 404


def test_mark_failed_fails_the_running_step_with_the_reason(store):
    release = store.create(request(), version=1, publisher="pat")
    store.start_gating(release.id)
    failed = store.mark_failed(release.id, "model server did not become healthy in 60 s")
    assert failed.state == State.FAILED
    assert failed.step("gates") | {"started": None, "finished": None} == {
        "name": "gates",
        "status": "failed",
        "started": None,
        "finished": None,
        "detail": "model server did not become healthy in 60 s",
    }
    with pytest.raises(InvalidTransition):
        store.mark_failed(release.id, "again")


# --- production and rollback ---------------------------------------------------------------------------------


def test_new_production_version_supersedes_the_old_and_rollback_restores_it(store):
    first = to_production(store, 1)
    second = to_production(store, 2)
    assert store.get(first.id).state == State.SUPERSEDED
    assert store.production("credit-default").id == second.id
    assert store.previous_production("credit-default").id == first.id

    rolled_back, restored = store.rollback("credit-default", "val", "p99 latency doubled")
    assert (rolled_back.id, rolled_back.state, rolled_back.reason) == (
        second.id,
        State.ROLLED_BACK,
        "p99 latency doubled",
    )
    assert (restored.id, restored.state) == (first.id, State.PRODUCTION)
    assert store.production("credit-default").id == first.id
    actions = [(e.action, e.version) for e in store.audit.entries() if e.action in ("rolled back", "restored")]
    assert actions == [("rolled back", "2"), ("restored", "1")]


def test_rollback_goes_back_one_version_at_a_time(store):
    versions = {n: to_production(store, n) for n in (1, 2, 3)}
    store.rollback("credit-default", "val", "bad")
    assert store.production("credit-default").id == versions[2].id
    store.rollback("credit-default", "val", "also bad")
    assert store.production("credit-default").id == versions[1].id
    with pytest.raises(Conflict, match="no earlier production version to roll back to \\(version 1 is the first\\)"):
        store.rollback("credit-default", "val", "bad")


def test_rollback_of_a_model_never_in_production_is_refused(store):
    with pytest.raises(Conflict, match="model 'credit-default' has no release in production"):
        store.rollback("credit-default", "val", "why not")


# --- restart rule ---------------------------------------------------------------------------------------------


def test_restart_resumes_idempotent_steps_and_leaves_waiting_releases_alone(tmp_path):
    store = ReleaseStore(tmp_path / "pipeline.db")
    gating = store.create(request("gating-model"), version=1, publisher="pat")
    store.start_gating(gating.id)
    staging = store.create(request("staging-model"), version=1, publisher="pat")
    store.start_gating(staging.id)
    store.record_gate_results(staging.id, PASSED)
    approved = to_awaiting_approval(store, "approved-model")
    store.approve(approved.id, "val", "checked")
    waiting = to_awaiting_approval(store, "waiting-model")

    recovery = ReleaseStore(tmp_path / "pipeline.db").resume_or_fail_on_restart()
    assert [r.id for r in recovery.resume] == [gating.id, staging.id, approved.id]
    assert recovery.failed == []
    assert store.get(waiting.id).interruptions == 0
    assert [e.action for e in store.audit.entries(release_id=gating.id)][-1] == "resumed after restart"
    # Resuming means carrying on from the same state with the usual transitions.
    assert store.record_gate_results(gating.id, PASSED).state == State.STAGING


def test_release_interrupted_twice_while_gated_is_failed_with_nothing_deployed(store):
    release = store.create(request(), version=1, publisher="pat")
    store.start_gating(release.id)
    assert [r.id for r in store.resume_or_fail_on_restart().resume] == [release.id]
    second = store.resume_or_fail_on_restart()
    assert second.resume == [] and [r.id for r in second.failed] == [release.id]
    failed = store.get(release.id)
    assert (failed.state, failed.reason) == (State.FAILED, RESTART_REASON)
    assert failed.step("gates")["status"] == "failed"
    entry = store.audit.entries(release_id=release.id)[-1]
    assert (entry.action, entry.reason) == ("failed", "interrupted by a restart; nothing was deployed")
    # The model is free to be published again.
    assert store.in_flight("credit-default") is None


def test_a_deploy_interrupted_again_and_again_is_still_resumed(store):
    release = to_awaiting_approval(store)
    store.approve(release.id, "val", "checked")
    for _ in range(3):
        assert [r.id for r in store.resume_or_fail_on_restart().resume] == [release.id]
    assert store.get(release.id).state == State.APPROVED
