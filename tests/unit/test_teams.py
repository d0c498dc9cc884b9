"""Teams in the hub: read from group properties, written back, checked, exported as catalog YAML."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from mlopshub import access, catalog, cli, teams

SAMPLE = Path(__file__).resolve().parents[2] / "profiles"


@pytest.fixture(scope="module")
def sample() -> catalog.Catalog:
    return catalog.load(SAMPLE)


def catalog_with_teams_file(folder: Path, text: str) -> catalog.Catalog:
    """The repo's profiles with ``text`` as the catalog's teams.yaml."""
    shutil.copy(SAMPLE / "profiles.yaml", folder / "profiles.yaml")
    (folder / "teams.yaml").write_text(text)
    return catalog.load(folder)


# --- the schema --------------------------------------------------------------


def test_catalog_accepts_every_quota_and_an_archived_team(tmp_path):
    loaded = catalog_with_teams_file(
        tmp_path,
        "teams:\n"
        "  fraud:\n"
        "    profiles: [python-cpu]\n"
        "    quotas: {max_servers: 4, servers_per_user: 1, cpu: 12.5, memory: 64G, gpus: 0}\n"
        "    archived: '2026-12-01T09:30:00Z'\n",
    )
    team = loaded.teams["fraud"]
    assert team.quotas == {"max_servers": 4, "servers_per_user": 1, "cpu": 12.5, "memory": "64G", "gpus": 0}
    assert team.archived == "2026-12-01T09:30:00Z"
    assert loaded.teams["fraud"].display_name == "fraud"


def test_catalog_team_is_active_unless_archived(sample, tmp_path):
    assert sample.teams["sme-credit"].archived is None
    loaded = catalog_with_teams_file(tmp_path, "teams:\n  fraud: {profiles: [python-cpu], archived: false}\n")
    assert loaded.teams["fraud"].archived is None


@pytest.mark.parametrize(
    ("team", "key", "message"),
    [
        ("{profiles: [], quotas: {cpu: -1}}", "quotas.cpu", "expected a number of CPUs"),
        ("{profiles: [], quotas: {servers_per_user: 1.5}}", "quotas.servers_per_user", "expected a whole number"),
        ("{profiles: [], quotas: {memory: lots}}", "quotas.memory", "expected a positive size"),
        ("{profiles: [], archived: yesterday}", "archived", "expected an ISO 8601 UTC time"),
        # unquoted, YAML reads a timestamp: the message says to quote it
        ("{profiles: [], archived: 2026-12-01T09:30:00Z}", "archived", "in quotes"),
    ],
)
def test_catalog_refuses_bad_quota_or_archived_naming_the_key(tmp_path, team, key, message):
    with pytest.raises(catalog.CatalogError) as raised:
        catalog_with_teams_file(tmp_path, f"teams:\n  fraud: {team}\n")
    assert raised.value.key == f"teams.fraud.{key}"
    assert message in raised.value.message


# --- reading a group -----------------------------------------------------------


def test_group_without_team_marker_or_catalog_entry_is_not_a_team(sample):
    assert teams.team_from_group("reading-club", {"profiles": ["python-cpu"]}, sample) is None
    assert teams.team_from_group("model-validators", {"mlopshub.team": True}, sample) is None


def test_idp_managed_catalog_group_without_properties_is_the_catalog_team(sample):
    assert teams.team_from_group("sme-credit", None, sample) == sample.teams["sme-credit"]


def test_hub_values_win_and_missing_keys_come_from_the_catalog(sample):
    team = teams.team_from_group(
        "sme-credit", {"profiles": ["python-cpu"], "quotas.cpu": 8, "display_name": "SME credit"}, sample
    )
    assert team is not None
    assert team.display_name == "SME credit"
    assert team.profiles == ("python-cpu",)
    assert team.quotas == {"max_servers": 20, "cpu": 8, "gpus": 2}  # catalog's max_servers and gpus stay
    assert team.release == sample.teams["sme-credit"].release


def test_team_made_at_runtime_reads_from_its_properties_alone(sample):
    properties = {
        "mlopshub.team": True,
        "display_name": "Fraud detection",
        "profiles": ["python-cpu", "r-cpu"],
        "quotas.memory": "64G",
        "release": {"thresholds": {"auc": {"min": 0.8}}, "holdout": {"path": "h.csv", "target": "fraud"}},
        "mlopshub.archived": "2026-12-01T09:30:00Z",
    }
    team = teams.team_from_group("fraud", properties, sample)
    assert team == catalog.Team(
        "fraud",
        "Fraud detection",
        ("python-cpu", "r-cpu"),
        {"memory": "64G"},
        properties["release"],
        "2026-12-01T09:30:00Z",
    )


def test_values_typed_as_text_in_the_hub_group_editor_read_as_numbers_and_lists(sample):
    properties = {
        "mlopshub.team": True,
        "profiles": "python-cpu, r-cpu",
        "quotas.max_servers": "5",
        "quotas.cpu": " 2.5 ",
        "quotas.gpus": "0",
    }
    team = teams.team_from_group("fraud", properties, sample)
    assert team is not None
    assert team.profiles == ("python-cpu", "r-cpu")
    assert team.quotas == {"max_servers": 5, "cpu": 2.5, "gpus": 0}


def test_quota_set_to_null_or_cleared_is_unlimited_not_the_catalogs(sample):
    team = teams.team_from_group("sme-credit", {"quotas.max_servers": None, "quotas.gpus": ""}, sample)
    assert team is not None
    assert team.quotas == {}


def test_old_nested_quotas_object_is_read(sample):
    team = teams.team_from_group("sme-credit", {"quotas": {"max_servers": 3}}, sample)
    assert team is not None
    assert team.quotas == {"max_servers": 3, "gpus": 2}


def test_garbage_in_one_property_is_ignored_with_a_warning_and_the_rest_kept(sample, caplog):
    properties = {
        "quotas.cpu": "abc",
        "quotas.max_servers": -1,
        "quotas.memory": "lots",
        "quotas.gpus": "1",
        "quotas.disk": 10,
        "display_name": "",
        "profiles": "python-cpu, no-such-profile",
        "release": "[object Object]",
        "mlopshub.archived": "yes",
    }
    with caplog.at_level(logging.WARNING, logger="mlopshub.teams"):
        team = teams.team_from_group("sme-credit", properties, sample)
    assert team is not None
    catalog_team = sample.teams["sme-credit"]
    assert team.quotas == {"max_servers": 20, "gpus": 1}  # catalog's max_servers; the valid gpus kept
    assert team.display_name == catalog_team.display_name
    assert team.profiles == ("python-cpu",)
    assert team.release == catalog_team.release
    assert team.archived is None
    warned = caplog.text
    for named in ("quotas.cpu", "quotas.max_servers", "quotas.memory", "quotas.disk", "display_name"):
        assert f"team sme-credit: ignoring group property {named}" in warned
    assert "no-such-profile" in warned
    assert "group property release" in warned
    assert "group property mlopshub.archived" in warned


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_cpu_quota_typed_as_nan_or_inf_is_ignored(sample, text):
    team = teams.team_from_group("fraud", {"mlopshub.team": True, "quotas.cpu": text}, sample)
    assert team is not None
    assert team.quotas == {}


def test_release_with_a_bad_threshold_is_ignored_naming_the_key(sample, caplog):
    with caplog.at_level(logging.WARNING, logger="mlopshub.teams"):
        team = teams.team_from_group("sme-credit", {"release": {"thresholds": {"auc": {"min": "high"}}}}, sample)
    assert team is not None
    assert team.release == sample.teams["sme-credit"].release
    assert "release.thresholds.auc.min" in caplog.text


def test_teams_from_groups_keeps_only_teams(sample):
    groups = {"sme-credit": {}, "reading-club": {}, "platform-admins": {}, "fraud": {"mlopshub.team": True}}
    assert list(teams.teams_from_groups(groups, sample)) == ["fraud", "sme-credit"]


# --- writing a group -------------------------------------------------------------


def test_group_properties_are_what_seeding_writes_plus_release_and_archived(sample):
    seeded = access.team_properties(sample)
    for name, team in sample.teams.items():
        written = teams.group_properties(team)
        assert {key: value for key, value in written.items() if key != "release"} == seeded[name]
        assert written["release"] == team.release
    archived = catalog.Team("fraud", "Fraud", ("python-cpu",), {"cpu": 4}, {}, "2026-12-01T09:30:00Z")
    assert teams.group_properties(archived) == {
        "mlopshub.team": True,
        "display_name": "Fraud",
        "profiles": ["python-cpu"],
        "quotas.cpu": 4,
        "mlopshub.archived": "2026-12-01T09:30:00Z",
    }


def test_group_properties_read_back_as_the_same_team(sample):
    team = catalog.Team(
        "fraud",
        "Fraud",
        ("python-cpu",),
        {"max_servers": 3, "servers_per_user": 1, "cpu": 6.5, "memory": "32G", "gpus": 0},
        {"thresholds": {"rmse": {"max": 2.0}}, "holdout": {"path": "h.csv", "target": "y", "rev": "v1"}},
        "2026-12-01T09:30:00Z",
    )
    assert teams.team_from_group("fraud", teams.group_properties(team), sample) == team


# --- checking a create or edit request -------------------------------------------


def check(body: Any, cat: catalog.Catalog, *, partial: bool = False) -> dict[str, Any]:
    return teams.validate_spec(
        body, cat, existing_teams=["sme-credit", "retail-scoring"], existing_groups=["reading-club"], partial=partial
    )


def errors_of(body: Any, cat: catalog.Catalog, *, partial: bool = False) -> dict[str, str]:
    with pytest.raises(teams.TeamSpecError) as raised:
        check(body, cat, partial=partial)
    return raised.value.errors


def test_create_fills_in_defaults(sample):
    assert check({"name": "fraud", "profiles": ["python-cpu"]}, sample) == {
        "name": "fraud",
        "display_name": "fraud",
        "profiles": ["python-cpu"],
        "quotas": {},
        "release": {},
        "members": [],
    }


def test_create_normalizes_quotas_members_and_display_name(sample):
    spec = check(
        {
            "name": "fraud",
            "display_name": "  Fraud detection ",
            "profiles": ["python-gpu"],
            "quotas": {"gpus": 2, "cpu": 12.5, "memory": "64G", "max_servers": None},
            "members": ["ana", "bo", "ana"],
            "release": {"thresholds": {"auc": {"min": 0.8}}, "holdout": {"path": "h.csv", "target": "fraud"}},
        },
        sample,
    )
    assert spec["display_name"] == "Fraud detection"
    assert list(spec["quotas"].items()) == [("cpu", 12.5), ("memory", "64G"), ("gpus", 2)]  # schema order
    assert spec["members"] == ["ana", "bo"]
    assert spec["release"]["thresholds"] == {"auc": {"min": 0.8}}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "required: expected the team's name"),
        ("Fraud", "expected 2 to 30 characters"),
        ("fraud_team", "expected 2 to 30 characters"),
        ("fraud-", "not ending with '-'"),
        ("9fraud", "starting with a letter"),
        ("f", "expected 2 to 30 characters"),
        ("f" * 31, "expected 2 to 30 characters"),
        (7, "got 7"),
        ("platform-admins", "is one of the catalog's role groups"),
        ("mlflow", "one of the platform's services"),
        ("idle-culler", "one of the platform's services"),
        ("sme-credit", "a team named 'sme-credit' already exists"),
        ("reading-club", "a hub group named 'reading-club' already exists and is not a team"),
    ],
)
def test_bad_name_is_refused_with_what_is_expected(sample, name, message):
    body = {"profiles": ["python-cpu"], **({} if name is None else {"name": name})}
    errors = errors_of(body, sample)
    assert list(errors) == ["name"]
    assert message in errors["name"]


def test_longest_and_shortest_names_are_accepted(sample):
    for name in ("ab", "a" + "-b" * 14 + "c"):
        assert len(name) <= 30
        assert check({"name": name, "profiles": []}, sample)["name"] == name


@pytest.mark.parametrize(
    ("quotas", "field", "message"),
    [
        ({"cpu": "abc"}, "quotas.cpu", "expected a number of CPUs for the whole team, 0 or more"),
        ({"cpu": -1}, "quotas.cpu", "got -1"),
        ({"cpu": float("nan")}, "quotas.cpu", "expected a finite number"),
        ({"cpu": float("inf")}, "quotas.cpu", "expected a finite number"),
        ({"max_servers": -1}, "quotas.max_servers", "expected a whole number of running servers"),
        ({"max_servers": "20"}, "quotas.max_servers", "got '20'"),
        ({"servers_per_user": 1.5}, "quotas.servers_per_user", "expected a whole number of servers per member"),
        ({"gpus": True}, "quotas.gpus", "expected a whole number of GPUs"),
        ({"memory": 64}, "quotas.memory", "expected a positive size such as '512M' or '4G'"),
        ({"memory": "-4G"}, "quotas.memory", "got '-4G'"),
        ({"disk": 10}, "quotas.disk", "unknown field; expected one of: cpu, gpus, max_servers, memory"),
    ],
)
def test_bad_quota_is_refused_next_to_its_field(sample, quotas, field, message):
    errors = errors_of({"name": "fraud", "profiles": [], "quotas": quotas}, sample)
    assert list(errors) == [field]
    assert message in errors[field]


def test_unknown_profiles_are_named_with_the_known_ones(sample):
    errors = errors_of({"name": "fraud", "profiles": ["python-cpu", "spark", "julia"]}, sample)
    assert errors == {
        "profiles": "unknown profile(s) 'spark', 'julia'; expected profiles of the catalog: "
        "python-cpu, python-gpu, r-cpu, r-gpu"
    }


@pytest.mark.parametrize(
    ("release", "field", "message"),
    [
        ({"thresholds": {"auc": {"min": "high"}}}, "release.thresholds.auc.min", "expected a number"),
        ({"thresholds": {"f1": {"min": 0.5}}}, "release.thresholds.f1", "expected one of: accuracy, auc"),
        ({"thresholds": {"auc": {}}}, "release.thresholds.auc", "expected {min: <number>} and/or {max: <number>}"),
        ({"thresholds": {"auc": {"min": 0.9, "max": 0.8}}}, "release.thresholds.auc", "expected min (0.9) at most"),
        ({"holdout": {"path": "h.csv"}}, "release.holdout.target", "required: expected {path:"),
        ({"gates": []}, "release.gates", "unknown field; expected one of: drift, holdout, thresholds"),
        ({"drift": {"psi": -0.1}}, "release.drift.psi", "a number above 0"),
        ({"drift": {"p_value": 1.5}}, "release.drift.p_value", "a number between 0 and 1"),
        ({"drift": {"ks": 0.1}}, "release.drift.ks", "unknown field; expected one of: p_value, psi"),
    ],
)
def test_bad_release_is_refused_next_to_its_field(sample, release, field, message):
    errors = errors_of({"name": "fraud", "profiles": [], "release": release}, sample)
    assert list(errors) == [field]
    assert message in errors[field]


def test_every_bad_field_is_reported_at_once(sample):
    errors = errors_of(
        {"name": "Bad", "profiles": ["spark"], "quotas": {"cpu": "abc"}, "members": "ana", "colour": "red"}, sample
    )
    assert set(errors) == {"name", "profiles", "quotas.cpu", "members", "colour"}
    assert errors["members"] == "expected a list of user names, got 'ana'"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "fraud"}, "profiles", "required: expected a list of profile slugs"),
        ({"name": "fraud", "profiles": "python-cpu"}, "profiles", "expected a list of profile slugs"),
        ({"name": "fraud", "profiles": [], "members": ["ana", ""]}, "members", "expected user names"),
        ({"name": "fraud", "profiles": [], "display_name": " "}, "display_name", "expected a display name"),
        ({"name": "fraud", "profiles": [], "archived": "last week"}, "archived", "expected an ISO 8601 UTC time"),
    ],
)
def test_other_bad_fields_are_refused(sample, body, field, message):
    errors = errors_of(body, sample)
    assert list(errors) == [field]
    assert message in errors[field]


def test_body_that_is_not_an_object_is_refused(sample):
    assert "expected a JSON object" in errors_of(["fraud"], sample)["(body)"]


def test_edit_holds_only_the_fields_given(sample):
    assert check({"quotas": {"cpu": 4}}, sample, partial=True) == {"quotas": {"cpu": 4}}
    assert check({"members": []}, sample, partial=True) == {"members": []}


def test_edit_sets_a_quota_to_null_to_lift_it_and_unarchives_with_false(sample):
    spec = check({"quotas": {"gpus": None, "cpu": 2}, "archived": False}, sample, partial=True)
    assert spec == {"quotas": {"cpu": 2, "gpus": None}, "archived": None}


def test_edit_cannot_rename_and_still_checks_values(sample):
    errors = errors_of({"name": "fraud2", "profiles": ["spark"], "quotas": {"max_servers": -1}}, sample, partial=True)
    assert set(errors) == {"name", "profiles", "quotas.max_servers"}
    assert "cannot be renamed" in errors["name"]


# --- export and the round trip ------------------------------------------------------


def test_export_header_says_where_and_when(sample):
    text = teams.export_yaml({}, source="http://hub:8081/hub/api", now=datetime(2026, 12, 2, 14, 5, tzinfo=UTC))
    assert text.startswith(
        "# Teams exported from http://hub:8081/hub/api by `mlopshub teams export` at 2026-12-02T14:05:00Z.\n"
    )
    assert yaml.safe_load(text) == {"teams": {}}


def assert_same_teams(left: dict[str, catalog.Team], right: dict[str, catalog.Team]) -> None:
    assert sorted(left) == sorted(right)
    for name in left:
        a, b = left[name], right[name]
        assert (a.display_name, a.profiles, dict(a.quotas), dict(a.release), a.archived) == (
            b.display_name,
            b.profiles,
            dict(b.quotas),
            dict(b.release),
            b.archived,
        ), name


def test_catalog_seeded_into_the_hub_exports_back_as_the_same_catalog(sample, tmp_path):
    groups = {name: group["properties"] for name, group in access.seed_groups(sample, {}).items()}
    exported = teams.export_yaml(
        teams.teams_from_groups(groups, sample), role_groups=sample.role_groups, consumers=sample.consumers
    )
    reloaded = catalog_with_teams_file(tmp_path, exported)
    assert_same_teams(dict(reloaded.teams), dict(sample.teams))
    assert reloaded.role_groups == sample.role_groups
    assert reloaded.consumers == sample.consumers


def test_teams_written_by_the_teams_api_export_and_reload_unchanged(sample, tmp_path):
    made = {
        **sample.teams,
        "fraud": catalog.Team(
            "fraud",
            "Fraud detection: cards",
            ("python-cpu", "r-gpu"),
            {"max_servers": 3, "servers_per_user": 1, "cpu": 6.5, "memory": "32G", "gpus": 1},
            {"thresholds": {"accuracy": {"min": 0.9}}, "holdout": {"path": "h.csv", "target": "y"}},
            "2026-12-01T09:30:00Z",
        ),
    }
    groups = {name: teams.group_properties(team) for name, team in made.items()}
    read = teams.teams_from_groups(groups, sample)
    reloaded = catalog_with_teams_file(tmp_path, teams.export_yaml(read))
    assert_same_teams(dict(reloaded.teams), made)


# --- the hub's REST API, on loopback --------------------------------------------------


class FakeHub:
    """Answers ``GET /hub/api/groups`` as JupyterHub does: token check, offset/limit, a capped page size."""

    TOKEN = "admin-secret"
    MAX_LIMIT = 2

    def __init__(self, groups: dict[str, dict[str, Any]]):
        self.groups = groups
        self.requests: list[dict[str, Any]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                hub.requests.append(query)
                if url.path != "/hub/api/groups":
                    return self.answer(404, {"status": 404, "message": "Not Found"})
                if self.headers.get("Authorization") != f"token {hub.TOKEN}":
                    return self.answer(403, {"status": 403, "message": "Action is not authorized"})
                offset = int(query.get("offset", 0))
                limit = min(int(query.get("limit", hub.MAX_LIMIT)), hub.MAX_LIMIT)
                names = sorted(hub.groups)
                items = [
                    {"kind": "group", "name": name, "users": [], "roles": [], "properties": hub.groups[name]}
                    for name in names[offset : offset + limit]
                ]
                if "application/jupyterhub-pagination+json" not in (self.headers.get("Accept") or ""):
                    return self.answer(200, items)
                following = None
                if offset + limit < len(names):
                    following = {"offset": offset + limit, "limit": limit, "url": "ignored"}
                pagination = {"offset": offset, "limit": limit, "total": len(names), "next": following}
                return self.answer(200, {"items": items, "_pagination": pagination})

            def answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"


@pytest.fixture
def hub(sample) -> Iterator[FakeHub]:
    groups = {name: group["properties"] for name, group in access.seed_groups(sample, {}).items()}
    groups["sme-credit"]["quotas.cpu"] = "16"  # typed in the hub's group editor
    groups["fraud"] = {"mlopshub.team": True, "display_name": "Fraud", "profiles": ["python-cpu"]}
    groups["reading-club"] = {}
    running = FakeHub(groups)
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()
    thread.join()


def test_fetch_groups_reads_every_page(hub):
    groups = teams.fetch_groups(hub.api_url, FakeHub.TOKEN)
    assert sorted(groups) == [
        "fraud",
        "model-validators",
        "platform-admins",
        "reading-club",
        "retail-scoring",
        "sme-credit",
    ]
    assert groups["sme-credit"]["quotas.cpu"] == "16"
    assert [int(r["offset"]) for r in hub.requests] == [0, 2, 4]


def test_fetch_groups_with_a_refused_token_says_which_token_is_needed(hub):
    with pytest.raises(teams.HubError, match="refused the token \\(403\\).*read:groups"):
        teams.fetch_groups(hub.api_url, "wrong")


def test_fetch_groups_from_no_hub_names_the_url():
    with pytest.raises(teams.HubError, match="http://127.0.0.1:9/hub/api/groups: the hub does not answer"):
        teams.fetch_groups("http://127.0.0.1:9/hub/api", "t")


def test_cli_export_from_a_hub_api_writes_a_catalog_teams_file(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", FakeHub.TOKEN)
    output = tmp_path / "catalog" / "teams.yaml"
    output.parent.mkdir()
    status = cli.main(["teams", "export", "--hub-api", hub.api_url, "--dir", str(SAMPLE), "--output", str(output)])
    assert status == 0, capsys.readouterr().err
    assert f"wrote 3 teams from {hub.api_url}" in capsys.readouterr().err
    assert output.read_text().startswith(f"# Teams exported from {hub.api_url} by `mlopshub teams export` at ")
    shutil.copy(SAMPLE / "profiles.yaml", output.parent / "profiles.yaml")
    reloaded = catalog.load(output.parent)
    assert sorted(reloaded.teams) == ["fraud", "retail-scoring", "sme-credit"]
    assert reloaded.teams["sme-credit"].quotas == {"max_servers": 20, "cpu": 16, "gpus": 2}
    assert reloaded.teams["fraud"].profiles == ("python-cpu",)
    assert list(reloaded.role_groups) == ["model-validators", "platform-admins"]


def test_cli_export_reaches_the_local_platform_with_its_admin_token(hub, tmp_path, monkeypatch, capsys):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin-token").write_text(FakeHub.TOKEN + "\n")
    monkeypatch.setenv("MLOPSHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPSHUB_PUBLIC_URL", hub.api_url.removesuffix("/hub/api"))
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert cli.main(["teams", "export", "--dir", str(SAMPLE)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert sorted(printed["teams"]) == ["fraud", "retail-scoring", "sme-credit"]


def test_cli_export_without_a_token_says_where_to_put_one(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert cli.main(["teams", "export", "--hub-api", "http://hub:8081/hub/api", "--dir", str(SAMPLE)]) == 1
    assert "JUPYTERHUB_API_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("MLOPSHUB_DATA_DIR", str(tmp_path))
    assert cli.main(["teams", "export", "--dir", str(SAMPLE)]) == 1
    assert f"no admin token in {tmp_path / 'secrets'}" in capsys.readouterr().err
