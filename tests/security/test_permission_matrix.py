"""The permission matrix: every role × every action of the hub, MLflow, the pipeline and the endpoints.

The expected answer of each cell is *derived*, not written by hand: a role's
scopes come from ``mlopshub.access.roles`` (and JupyterHub's own ``self``
expansion), and :data:`RULES` says what each action needs, in the words of
DESIGN.md's roles table. The running platform must answer exactly that.

Outcomes: ``allowed`` (the action happened, or got past authorization to a
check further on), ``empty`` (MLflow and the pipeline answer a search outside
one's teams with an empty list, not 403: the seed data make "allowed" mean
non-empty), ``denied`` (401, 403 or 404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from adversary import CREDIT, GRANTED_MODEL, RETAIL
from jupyterhub import scopes as hub_scopes
from release_flow import FORMATS

from mlopshub import access, catalog
from mlopshub.configure import MLFLOW_SERVICE, MODELS_SERVICE, PIPELINE_SERVICE, consumer_roles

pytestmark = pytest.mark.integration

CATALOG = catalog.load(Path(__file__).resolve().parents[2] / "profiles")
PUBLISH, APPROVE, READ_RELEASES = "custom:mlopshub:publish", "custom:mlopshub:approve", "custom:mlopshub:read-releases"
#: A user with no team and no server: the "someone else" of the hub's actions.
BYSTANDER = "tom"


@dataclass(frozen=True)
class Role:
    """Who calls: a hub user in ``groups``, a consumer system (a hub service), or nobody."""

    person: str  # the fixture that gives the caller
    groups: frozenset[str] = frozenset()
    service: str | None = None

    @property
    def is_user(self) -> bool:
        return self.person != "anonymous" and self.service is None


ROLES = {
    "team member": Role("alice", frozenset({CREDIT})),
    "other team's member": Role("bob", frozenset({RETAIL})),
    "model validator": Role("victor", frozenset({"model-validators"})),
    "platform admin": Role("paula", frozenset({"platform-admins"})),
    "consumer system": Role("consumer", service="loan-origination"),
    "anonymous": Role("anonymous"),
}


@dataclass(frozen=True)
class Rule:
    """What an action needs: the service's access scope, then any one of ``any_of`` and, for MLflow, team membership.

    ``when_denied`` is how a caller that reaches the service but lacks the rest is answered.
    """

    access: str | None = None
    any_of: tuple[str, ...] = ()
    member_of: str | None = None
    consumer_of: str | None = None
    when_denied: str = "denied"


def service(name: str) -> str:
    return f"access:services!service={name}"


TEAM_READERS = (READ_RELEASES, f"{PUBLISH}!group={CREDIT}")
#: The rule table (DESIGN.md, "Roles and scopes"): the one place the expectations come from.
RULES: dict[str, Rule] = {
    "hub: list users": Rule(any_of=("list:users",)),
    "hub: start someone else's server": Rule(any_of=(f"servers!user={BYSTANDER}",)),
    "hub: read someone else's server": Rule(any_of=(f"read:servers!user={BYSTANDER}",)),
    "mlflow: search the team's experiments": Rule(service(MLFLOW_SERVICE), member_of=CREDIT, when_denied="empty"),
    "mlflow: create a run in the team's workspace": Rule(service(MLFLOW_SERVICE), member_of=CREDIT),
    "mlflow: read the team's registered model": Rule(service(MLFLOW_SERVICE), member_of=CREDIT),
    "pipeline: list the team's releases": Rule(service(PIPELINE_SERVICE), TEAM_READERS, when_denied="empty"),
    "pipeline: publish the team's run": Rule(service(PIPELINE_SERVICE), (f"{PUBLISH}!group={CREDIT}",)),
    "pipeline: read the audit trail of the team's release": Rule(service(PIPELINE_SERVICE), TEAM_READERS),
    "pipeline: read the whole audit log": Rule(service(PIPELINE_SERVICE), (READ_RELEASES,)),
    "pipeline: approve a release": Rule(service(PIPELINE_SERVICE), (APPROVE,)),
    "pipeline: reject the team's release": Rule(service(PIPELINE_SERVICE), (APPROVE, f"{PUBLISH}!group={CREDIT}")),
    "pipeline: roll back the team's model": Rule(service(PIPELINE_SERVICE), (APPROVE, f"{PUBLISH}!group={CREDIT}")),
    "endpoint: staging invocations": Rule(service(MODELS_SERVICE), TEAM_READERS),
    "endpoint: production invocations": Rule(service(MODELS_SERVICE), TEAM_READERS, consumer_of=GRANTED_MODEL),
}


def held_scopes(role: Role, name: str) -> dict:
    """The scopes a token of ``role`` carries, expanded and parsed as the hub does."""
    hub_scopes.define_custom_scopes(access.CUSTOM_SCOPES)
    loaded = access.roles(CATALOG, services=[MLFLOW_SERVICE, PIPELINE_SERVICE, MODELS_SERVICE]) + consumer_roles(
        CATALOG
    )
    raw: set[str] = set()
    for loaded_role in loaded:
        default_role = loaded_role["name"] == "user" and role.is_user  # JupyterHub's: every user holds it
        if (
            default_role
            or role.groups & set(loaded_role.get("groups", ()))
            or role.service in loaded_role.get("services", ())
        ):
            raw |= set(loaded_role["scopes"])
    expanded = set(hub_scopes.expand_scopes(raw - {"self"}))
    if PUBLISH in expanded:
        # The services apply publish to the caller's teams only (membership of the team's group: mlopshub.access).
        expanded = (expanded - {PUBLISH}) | {f"{PUBLISH}!group={team}" for team in role.groups if team in CATALOG.teams}
    if role.is_user:  # JupyterHub's default "user" role
        expanded |= hub_scopes._expand_self_scope(name)
    return hub_scopes.parse_scopes(expanded)


def holds(parsed: dict, scope: str) -> bool:
    """Whether parsed scopes grant ``scope`` (``base`` or ``base!kind=value``), as JupyterHub's filters mean."""
    base, _, wanted = scope.partition("!")
    if base not in parsed:
        return False
    if parsed[base] == hub_scopes.Scope.ALL or not wanted:
        return parsed[base] == hub_scopes.Scope.ALL
    kind, _, value = wanted.partition("=")
    return value in parsed[base].get(kind, ())


def expected(role: Role, name: str, rule: Rule) -> str:
    """The answer the rule table gives ``role`` for an action with ``rule``."""
    parsed = held_scopes(role, name)
    if rule.access and not holds(parsed, rule.access):
        return "denied"
    if rule.consumer_of and role.service and rule.consumer_of in CATALOG.consumers[role.service].models:
        return "allowed"
    if role.service:  # a consumer system reaches only the production endpoints of its models
        return rule.when_denied if rule.access != service(MODELS_SERVICE) else "denied"
    member = rule.member_of is None or rule.member_of in role.groups
    scoped = not rule.any_of or any(holds(parsed, scope) for scope in rule.any_of)
    return "allowed" if member and scoped else rule.when_denied


# --- the running platform ------------------------------------------------------------------------


@dataclass
class Seed:
    """What the matrix acts on: the team's model in production, a withdrawn release, an experiment, a run."""

    run_id: str
    experiment_id: str
    withdrawn: str
    published: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def seed(platform, alice, in_production) -> Seed:
    platform.add_user(BYSTANDER, None)
    pipeline = alice.pipeline(platform)
    withdrawn = pipeline.wait(pipeline.publish(alice.runs[1], "credit-withdrawn")["id"])
    answer = pipeline.call("POST", f"releases/{withdrawn['id']}/reject", {"reason": "withdrawn by the team"})
    assert answer.status_code == 200, answer.text
    experiment = mlflow(
        platform, alice.token, "GET", "experiments/get-by-name", params={"experiment_name": "credit-default"}
    )
    assert experiment.status_code == 200, experiment.text
    return Seed(alice.runs[0], experiment.json()["experiment"]["experiment_id"], withdrawn["id"])


def mlflow(platform, token: str | None, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"X-MLFLOW-WORKSPACE": CREDIT, **({"Authorization": f"Bearer {token}"} if token else {})}
    url = f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}"
    return requests.request(method, url, headers=headers, timeout=60, **kwargs)


def outcome(answer: requests.Response, allowed: Callable[[requests.Response], bool], empty=None) -> str:
    """``allowed``/``empty``/``denied`` for an answer, or what was unexpected about it."""
    if answer.status_code in (401, 403, 404) and not allowed(answer):
        return "denied"
    if allowed(answer):
        return "allowed"
    if empty is not None and empty(answer):
        return "empty"
    return f"unexpected {answer.status_code}: {answer.text[:200]}"


def call(platform, person, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{platform.url}/{path}", json=body, headers=person.headers(), timeout=120)


def probe(action: str, platform, person, seed: Seed, role_name: str) -> str:
    """Do ``action`` as ``person``; its outcome."""
    ok = lambda status: lambda a: a.status_code == status  # noqa: E731
    if action == "hub: list users":
        answer = call(platform, person, "GET", "hub/api/users")
        return outcome(answer, lambda a: a.status_code == 200 and any(u["name"] == "alice" for u in a.json()))
    if action == "hub: start someone else's server":
        # An unknown profile: authorized callers get past the scope check to the profile check (400 naming it).
        answer = call(platform, person, "POST", f"hub/api/users/{BYSTANDER}/server", {"profile": "no-such-profile"})
        return outcome(answer, lambda a: a.status_code == 400 and "no-such-profile" in a.text)
    if action == "hub: read someone else's server":
        answer = call(platform, person, "GET", f"hub/api/users/{BYSTANDER}")
        return outcome(answer, lambda a: a.status_code == 200 and "servers" in a.json())
    if action == "mlflow: search the team's experiments":
        answer = mlflow(
            platform,
            person.token,
            "POST",
            "experiments/search",
            json={"filter": "name = 'credit-default'", "max_results": 10},
        )
        return outcome(
            answer,
            lambda a: a.status_code == 200 and bool(a.json().get("experiments")),
            lambda a: a.status_code == 200 and not a.json().get("experiments"),
        )
    if action == "mlflow: create a run in the team's workspace":
        answer = mlflow(platform, person.token, "POST", "runs/create", json={"experiment_id": seed.experiment_id})
        return outcome(answer, ok(200))
    if action == "mlflow: read the team's registered model":
        answer = mlflow(platform, person.token, "GET", "registered-models/get", params={"name": GRANTED_MODEL})
        return outcome(answer, ok(200))
    if action == "pipeline: list the team's releases":
        answer = call(platform, person, "GET", f"services/pipeline/api/releases?model={GRANTED_MODEL}")
        return outcome(
            answer,
            lambda a: a.status_code == 200 and bool(a.json()["releases"]),
            lambda a: a.status_code == 200 and a.json()["releases"] == [],
        )
    if action == "pipeline: read the audit trail of the team's release":
        answer = call(platform, person, "GET", f"services/pipeline/api/audit?release_id={seed.withdrawn}")
        return outcome(
            answer,
            lambda a: (
                a.status_code == 200 and bool(a.json()) and {e["release_id"] for e in a.json()} == {seed.withdrawn}
            ),
        )
    if action == "pipeline: read the whole audit log":
        answer = call(platform, person, "GET", "services/pipeline/api/audit")
        return outcome(answer, lambda a: a.status_code == 200 and len({e["release_id"] for e in a.json()}) > 1)
    if action == "pipeline: publish the team's run":
        name = "matrix-" + role_name.replace(" ", "-").replace("'", "")
        body = {"model_uri": f"runs:/{seed.run_id}/model", "name": name, "kind": "online"}
        answer = call(platform, person, "POST", "services/pipeline/api/releases", body)
        if answer.status_code == 201:
            seed.published.append(answer.json()["id"])
        return outcome(answer, ok(201))
    # Past authorization, these meet a state check: a withdrawn release cannot be approved or rejected again,
    # and a model with one production version has nothing to roll back to (409 Conflict).
    if action == "pipeline: approve a release":
        answer = call(
            platform, person, "POST", f"services/pipeline/api/releases/{seed.withdrawn}/approve", {"comment": "x"}
        )
        return outcome(answer, ok(409))
    if action == "pipeline: reject the team's release":
        answer = call(
            platform, person, "POST", f"services/pipeline/api/releases/{seed.withdrawn}/reject", {"reason": "x"}
        )
        return outcome(answer, ok(409))
    if action == "pipeline: roll back the team's model":
        path = f"services/pipeline/api/models/{GRANTED_MODEL}/rollback"
        return outcome(call(platform, person, "POST", path, {"reason": "x"}), ok(409))
    if action in ("endpoint: staging invocations", "endpoint: production invocations"):
        stage = action.split()[1]
        path = f"services/models/{GRANTED_MODEL}/{stage}/invocations"
        answer = call(platform, person, "POST", path, FORMATS["dataframe_split"])
        return outcome(
            answer,
            lambda a: (
                a.status_code == 200
                and len(a.json()["predictions"]) == len(FORMATS["dataframe_split"]["dataframe_split"]["data"])
            ),
        )
    raise AssertionError(f"no probe for {action}")


@pytest.mark.parametrize("role_name", list(ROLES))
def test_each_role_gets_what_the_roles_and_scopes_say(request, platform, seed, role_name):
    role = ROLES[role_name]
    person = request.getfixturevalue(role.person)
    want = {action: expected(role, person.name, rule) for action, rule in RULES.items()}
    got = {action: probe(action, platform, person, seed, role_name) for action in RULES}
    wrong = {action: f"expected {want[action]}, got {got[action]}" for action in RULES if got[action] != want[action]}
    assert not wrong, f"{role_name}:\n" + "\n".join(f"  {a}: {w}" for a, w in wrong.items())


def test_the_matrix_has_an_allowed_and_a_denied_cell_in_every_action():
    # A rule nobody passes (or everybody passes) would make its row prove nothing.
    for action, rule in RULES.items():
        answers = {expected(role, role.person, rule) for role in ROLES.values()}
        assert "allowed" in answers and answers - {"allowed"}, (action, answers)


def test_another_teams_release_trail_answers_as_a_missing_release(platform, bob, seed):
    # bob (retail) asks for the trail of sme-credit's release: the answer must not tell him it exists.
    unknown = "rel-" + "0" * 12
    foreign = call(platform, bob, "GET", f"services/pipeline/api/audit?release_id={seed.withdrawn}")
    missing = call(platform, bob, "GET", f"services/pipeline/api/audit?release_id={unknown}")
    assert foreign.status_code == missing.status_code == 404, (foreign.text, missing.text)
    assert foreign.text.replace(seed.withdrawn, "<id>") == missing.text.replace(unknown, "<id>")
    csv = call(platform, bob, "GET", f"services/pipeline/api/audit?release_id={seed.withdrawn}&format=csv")
    assert (csv.status_code, csv.text) == (404, foreign.text)
