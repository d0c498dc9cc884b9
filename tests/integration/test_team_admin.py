"""Teams made by a platform admin at runtime, on the real platform: from nothing to a first logged run, no YAML,
no restart; every bad input named, nothing half-made; every change in the audit log; archived teams start nothing.
"""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.integration

TEAM = "fraud-ops"


class Api:
    def __init__(self, platform, token: str):
        self.platform, self.token = platform, token

    def __call__(self, method: str, path: str, body=None) -> requests.Response:
        return requests.request(
            method,
            f"{self.platform.url}/services/pipeline/api/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )


@pytest.fixture(scope="module")
def admin_api(platform):
    platform.add_user("tess-admin", "platform-admins")
    return Api(platform, platform.token_for("tess-admin"))


@pytest.fixture(scope="module")
def member(platform):
    platform.add_user("finn", None)
    return "finn"


@pytest.fixture(scope="module")
def created(platform, admin_api, member):
    body = {
        "name": TEAM,
        "display_name": "Fraud operations",
        "members": [member],
        "profiles": ["python-cpu"],
        "quotas": {"max_servers": 3, "cpu": 8, "memory": "16G", "servers_per_user": 1},
        "release": {"thresholds": {"auc": {"min": 0.7}}, "holdout": {"path": "data/holdout.csv", "target": "y"}},
    }
    answer = admin_api("POST", "teams", body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def mlflow(platform, token: str, team: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": team}
    url = f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}"
    return requests.request(method, url, headers=headers, timeout=60, **kwargs)


def test_a_new_team_goes_from_nothing_to_a_first_logged_run_without_a_restart(platform, created, member):
    assert created["members"] == [member] and created["profiles"] == ["python-cpu"]
    assert created["models"] == [] and created["use"]["servers"] == 0
    assert created["quotas"] == {"max_servers": 3, "servers_per_user": 1, "cpu": 8, "memory": "16G"}
    group = platform.api("GET", f"groups/{TEAM}").json()
    assert group["properties"]["mlopshub.team"] is True and group["users"] == [member]
    # Its DVC remote is there at once, shared by the team's members only.
    remote = platform.data_dir / "dvc-remotes" / TEAM
    assert remote.is_dir() and oct(remote.stat().st_mode & 0o7777) == "0o2770"
    # The member sees exactly the team's profiles, and starts one.
    response = platform.spawn(member, "r-cpu")
    assert response.status_code == 403, response.text
    platform.start(member, "python-cpu")
    try:
        token = platform.token_for(member)
        made = mlflow(platform, token, TEAM, "POST", "experiments/create", json={"name": "fraud-first"})
        assert made.status_code == 200, made.text
        experiment = made.json()["experiment_id"]
        run = mlflow(platform, token, TEAM, "POST", "runs/create", json={"experiment_id": experiment})
        assert run.status_code == 200, run.text
        # Nobody of another team sees it.
        platform.add_user("otto-other", "retail-scoring")
        other = mlflow(platform, platform.token_for("otto-other"), TEAM, "POST", "experiments/search", json={})
        assert other.status_code in (403, 404) or other.json().get("experiments", []) == [], other.text
        # One server per user: a second (named servers are off: the quota's words come with any spawn) is refused.
    finally:
        platform.stop(member)


def test_usage_shows_what_runs_now_and_the_hours_per_team_and_user_as_csv(platform, admin_api, created, member):
    platform.start(member, "python-cpu")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = admin_api("GET", "usage").json()["running"]
            if any(r["user"] == member and r["team"] == TEAM for r in running):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"{member}'s server never showed in the usage's running list")
        time.sleep(3)
    finally:
        platform.stop(member)
    report = admin_api("GET", "usage?by=user")
    assert report.status_code == 200, report.text
    row = next(r for r in report.json()["rows"] if r["team"] == TEAM and r["user"] == member)
    assert row["sessions"] >= 1 and row["server_hours"] > 0
    assert row["cpu_hours"] == pytest.approx(row["server_hours"] * 2, rel=0.01)  # python-cpu small: 2 CPUs
    csv = admin_api("GET", "usage?by=user&format=csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == "team,user,sessions,server_hours,cpu_hours,memory_gib_hours,gpu_hours"
    assert any(line.startswith(f"{TEAM},{member},") for line in lines)
    bad = admin_api("GET", "usage?since=yesterday")
    assert bad.status_code == 422 and "since" in bad.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "sme-credit", "profiles": ["python-cpu"]}, "name", "sme-credit"),
        ({"name": "Bad_Name", "profiles": ["python-cpu"]}, "name", "Bad_Name"),
        ({"name": "no-profiles-here", "profiles": ["julia-cpu"]}, "profiles", "julia-cpu"),
        ({"name": "negative-q", "profiles": ["python-cpu"], "quotas": {"cpu": -1}}, "quotas.cpu", ""),
        ({"name": "text-q", "profiles": ["python-cpu"], "quotas": {"max_servers": "lots"}}, "quotas.max_servers", ""),
        ({"name": "ghost-team", "profiles": ["python-cpu"], "members": ["nobody-by-that-name"]}, "members", "nobody"),
    ],
)
def test_bad_input_is_named_by_field_and_nothing_is_half_made(platform, admin_api, body, field, words):
    answer = admin_api("POST", "teams", body)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert field in errors and words in errors[field], errors
    if body["name"] != "sme-credit":
        assert platform.api("GET", f"groups/{body['name']}").status_code == 404


def test_every_teams_call_needs_the_manage_teams_scope(platform, admin_api, created, member):
    api = Api(platform, platform.token_for(member))
    for method, path in [
        ("GET", "teams"),
        ("POST", "teams"),
        ("GET", f"teams/{TEAM}"),
        ("PATCH", f"teams/{TEAM}"),
        ("POST", f"teams/{TEAM}/archive"),
        ("PUT", f"teams/{TEAM}/members/{member}"),
        ("DELETE", f"teams/{TEAM}/members/{member}"),
    ]:
        answer = api(method, path, {} if method in ("POST", "PATCH") else None)
        assert answer.status_code == 403, (method, path, answer.text)
        assert "custom:mlopshub:manage-teams" in answer.json()["message"]


def test_changes_are_audited_quotas_lowered_below_use_warn_and_archived_teams_start_nothing(
    platform, admin_api, created, member
):
    platform.add_user("fay", None)
    assert admin_api("PUT", f"teams/{TEAM}/members/fay").json()["members"] == ["fay", member]
    platform.start("fay", "python-cpu")
    try:
        lowered = admin_api("PATCH", f"teams/{TEAM}", {"quotas": {"max_servers": 0}})
        assert lowered.status_code == 200, lowered.text
        assert any("quotas.max_servers" in warning for warning in lowered.json()["warnings"])
        refused = platform.spawn(member, "python-cpu")
        assert refused.status_code == 429 and "quota of 0" in refused.json()["message"]
        archived = admin_api("POST", f"teams/{TEAM}/archive")
        assert archived.status_code == 200, archived.text
        assert archived.json()["archived"] and [s["user"] for s in archived.json()["running_servers"]] == ["fay"]
        assert platform.api("GET", "users/fay").json()["servers"], "archiving stops nothing"
    finally:
        platform.stop("fay")
    assert admin_api("PATCH", f"teams/{TEAM}", {"quotas": {"max_servers": None}}).status_code == 200
    refused = platform.spawn(member, "python-cpu")
    assert refused.status_code == 403 and f"team {TEAM} is archived" in refused.json()["message"]
    # ... and it makes no new releases.
    publish = Api(platform, platform.token_for(member))("POST", "releases", {"model_uri": "runs:/0/model", "name": "x"})
    assert publish.status_code == 403 and f"team {TEAM} is archived" in publish.json()["message"]
    entries = admin_api("GET", "audit").json()
    actions = [(e["actor"], e["action"]) for e in entries if (e.get("details") or {}).get("team") == TEAM]
    assert ("tess-admin", "team created") in actions and actions.count(("tess-admin", "team changed")) >= 3
    change = next(e for e in entries if e["action"] == "team changed" and "max_servers" in str(e["details"]))
    assert change["details"]["before"]["quotas"]["max_servers"] == 3
