"""Who may use what: entitlements from group properties, seeding, roles."""

from pathlib import Path

import pytest

from mlopshub import access, catalog

SAMPLE = Path(__file__).resolve().parents[2] / "profiles"


@pytest.fixture(scope="module")
def sample() -> catalog.Catalog:
    return catalog.load(SAMPLE)


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ({}, []),
        ({"sme-credit": {"profiles": ["python-cpu", "python-gpu"]}}, ["python-cpu", "python-gpu"]),
        (
            {"sme-credit": {"profiles": ["python-cpu"]}, "retail-scoring": {"profiles": ["r-cpu"]}},
            ["python-cpu", "r-cpu"],
        ),
        # typed by an admin in the admin UI as a comma-separated string
        ({"sme-credit": {"profiles": "r-cpu, python-cpu"}}, ["python-cpu", "r-cpu"]),
        # validators review releases in a workspace of the catalog's profile for them
        ({"model-validators": {}}, ["python-cpu"]),
        ({"model-validators": {"profiles": []}}, []),
        ({"platform-admins": {}}, ["python-cpu", "python-gpu", "r-cpu", "r-gpu"]),
        ({"sme-credit": {"profiles": ["no-such-profile"]}}, []),
        # groups managed by the IdP carry no properties: the catalog's entitlement applies
        ({"retail-scoring": {}}, ["python-cpu", "r-cpu", "r-gpu"]),
        ({"sme-credit": {"profiles": []}}, []),
    ],
)
def test_entitled_profiles_follow_group_properties(sample, groups, expected):
    assert access.entitled_profiles(sample, groups) == expected


def test_seed_keeps_what_an_admin_changed_in_the_hub(sample):
    seeded = access.seed_groups(sample, {"sme-credit": {"profiles": ["python-cpu"]}})
    assert seeded["sme-credit"]["properties"]["profiles"] == ["python-cpu"]
    assert seeded["retail-scoring"]["properties"]["profiles"] == ["python-cpu", "r-cpu", "r-gpu"]
    assert seeded["sme-credit"]["properties"]["quotas.max_servers"] == 20
    assert seeded["model-validators"] == {"properties": {"profiles": ["python-cpu"]}}
    assert seeded["platform-admins"] == {"properties": {}}


def test_group_properties_are_plain_values_the_admin_page_can_show(sample):
    # JupyterHub's group editor shows each value as text: an object became "[object Object]".
    for group in access.seed_groups(sample, {}).values():
        for key, value in group["properties"].items():
            assert isinstance(value, (str, int, bool)) or (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ), (key, value)
    assert access.seed_groups(sample, {})["retail-scoring"]["properties"]["quotas.gpus"] == 2


def test_quotas_of_a_hub_seeded_before_move_to_plain_keys_keeping_the_admins_values(sample):
    existing = {"sme-credit": {"profiles": ["python-cpu"], "quotas": {"max_servers": 3, "gpus": 0}}}
    properties = access.seed_groups(sample, existing)["sme-credit"]["properties"]
    assert "quotas" not in properties
    assert (properties["quotas.max_servers"], properties["quotas.gpus"]) == (3, 0)
    assert properties["profiles"] == ["python-cpu"]
    # A plain key already there is the newer value; one typed in the admin page arrives as text.
    newer = {"sme-credit": {"quotas": {"gpus": 0}, "quotas.gpus": "1"}}
    assert access.seed_groups(sample, newer)["sme-credit"]["properties"]["quotas.gpus"] == "1"


def test_every_user_reaches_the_services_and_teams_need_no_role_of_their_own(sample):
    # Authority over a team's models is membership of its group (the services check it): a team made at
    # runtime works without a hub restart, because no role names it.
    roles = {role["name"]: role for role in access.roles(sample, services=["mlflow"])}
    assert not [name for name in roles if name.startswith("team-")]
    user = roles["user"]
    assert "groups" not in user and "users" not in user  # JupyterHub's default role: every user holds it
    assert {"self", "access:services!service=mlflow", "custom:mlopshub:publish"} == set(user["scopes"])
    assert roles["model-validator"]["groups"] == ["model-validators"]
    assert "custom:mlopshub:approve" in roles["model-validator"]["scopes"]
    assert "custom:mlopshub:approve" not in user["scopes"]
    assert roles["platform-admin"]["groups"] == ["platform-admins"]


def test_a_group_is_a_team_when_marked_or_named_by_the_catalog_and_archived_teams_entitle_nobody(sample):
    groups = {
        "fraud": {"mlopshub.team": True, "profiles": ["python-cpu"]},
        "sme-credit": {},  # managed by the IdP: the catalog says it is a team
        "book-club": {"profiles": ["python-cpu"]},  # a group, not a team
        "model-validators": {"mlopshub.team": True},  # a role group is never a team
        "old-team": {"mlopshub.team": True, "mlopshub.archived": "2026-11-30T10:00:00Z", "profiles": ["r-cpu"]},
    }
    assert access.teams_of(sample, groups) == ["fraud", "sme-credit"]
    assert access.teams_of(sample, groups, archived=True) == ["fraud", "old-team", "sme-credit"]
    assert "r-cpu" not in access.entitled_profiles(sample, {"old-team": groups["old-team"]})


def test_every_custom_scope_used_by_a_role_is_defined(sample):
    used = {
        scope.split("!")[0]
        for role in access.roles(sample, services=["mlflow"])
        for scope in role["scopes"]
        if scope.startswith("custom:")
    }
    assert used <= set(access.CUSTOM_SCOPES)


def test_the_mlflow_ui_cookie_has_one_name_in_the_hub_mlflow_and_the_lab_extension():
    # Three packages name it (the Lab extension installs without the hub package): they must agree.
    from mlopshub_lab.experiments import TOKEN_COOKIE as lab

    from mlopshub.auth import MLFLOW_TOKEN_COOKIE as hub
    from mlopshub.services.mlflow_auth import TOKEN_COOKIE as mlflow_service

    assert hub == mlflow_service == lab
