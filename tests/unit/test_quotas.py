"""Team quotas: what a server counts, which team it is charged to, and the message of a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlopshub import access, catalog, quotas

CATALOG = catalog.load(Path(__file__).resolve().parents[2] / "profiles")
GIB = 1024**3


def settings(slug: str = "python-cpu", **choices: str) -> catalog.SpawnSettings:
    return catalog.resolve(CATALOG, list(CATALOG.profiles), slug, choices)


def profiles_of(team: str, properties: dict) -> list[str]:
    return access.entitled_profiles(CATALOG, {team: properties})


def running(user: str, team: str, slug: str = "python-cpu", server: str = "") -> quotas.Charge:
    return quotas.charge_of(user, server, team, settings(slug))


def test_a_server_counts_its_profiles_limits():
    small, large = settings(), settings(size="large")
    assert quotas.charge_of("ann", "", "fraud", small) == quotas.Charge(
        "ann", "", "fraud", "python-cpu", 2.0, 4 * GIB, 0
    )
    assert (quotas.charge_of("ann", "", "fraud", large).cpu, quotas.charge_of("ann", "", "fraud", large).memory) == (
        4.0,
        16 * GIB,
    )
    assert quotas.charge_of("ann", "gpu", "fraud", settings("python-gpu")).gpus == 1


def test_quotas_are_read_from_group_properties_and_a_value_that_is_not_one_does_not_limit():
    read = quotas.quotas_of(
        {
            "quotas.max_servers": 5,
            "quotas.cpu": "8",
            "quotas.memory": "64G",
            "quotas.gpus": "x",
            "quotas.servers_per_user": -1,
        }
    )
    assert read == quotas.Quotas(max_servers=5, servers_per_user=None, cpu=8.0, memory=64 * GIB, gpus=None)
    assert quotas.quotas_of({}) == quotas.Quotas()
    assert quotas.quotas_of({"quotas.memory": "lots"}).memory is None


def test_the_server_that_would_pass_max_servers_is_refused_naming_the_quota_and_who_runs():
    team = {"mlopshub.team": True, "profiles": ["python-cpu"], "quotas.max_servers": 2}
    others = [running("ann", "fraud"), running("bob", "fraud")]
    with pytest.raises(quotas.QuotaExceeded) as refused:
        quotas.choose_team("cai", "", settings(), {"fraud": team}, others, profiles_of)
    message = str(refused.value)
    assert "team fraud has reached its quota of 2 running server(s)" in message
    assert "2 run now, by ann, bob" in message and "Ask a platform admin" in message
    # Servers of another team do not count.
    elsewhere = [running("ann", "retail"), running("bob", "retail")]
    assert quotas.choose_team("cai", "", settings(), {"fraud": team}, elsewhere, profiles_of).team == "fraud"


@pytest.mark.parametrize(
    ("quota", "words"),
    [
        ({"quotas.cpu": 5}, "quota of 5 CPUs: 4 are in use by ann, bob, and profile python-cpu needs 2"),
        ({"quotas.memory": "10G"}, "memory quota of 10G: 8G are in use by ann, bob, and profile python-cpu needs 4G"),
        ({"quotas.servers_per_user": 1}, "allows 1 server(s) per user and ann already runs 1"),
    ],
)
def test_cpu_memory_and_per_user_quotas_name_what_is_used(quota, words):
    team = {"mlopshub.team": True, "profiles": ["python-cpu"], **quota}
    others = [running("ann", "fraud"), running("bob", "fraud")]
    with pytest.raises(quotas.QuotaExceeded, match=words.replace("(", r"\(").replace(")", r"\)")):
        quotas.choose_team("ann", "second", settings(), {"fraud": team}, others, profiles_of)


def test_gpus_count_only_gpu_servers():
    team = {"mlopshub.team": True, "profiles": ["python-cpu", "python-gpu"], "quotas.gpus": 1}
    cpu_servers = [running("ann", "fraud"), running("bob", "fraud")]
    assert quotas.choose_team("cai", "", settings("python-gpu"), {"fraud": team}, cpu_servers, profiles_of).gpus == 1
    with pytest.raises(quotas.QuotaExceeded, match="quota of 1 GPU"):
        quotas.choose_team(
            "cai", "", settings("python-gpu"), {"fraud": team}, [running("bob", "fraud", "python-gpu")], profiles_of
        )
    # A CPU server needs no GPU: a full GPU quota does not stop it.
    assert quotas.choose_team(
        "cai", "", settings(), {"fraud": team}, [running("bob", "fraud", "python-gpu")], profiles_of
    )


def test_a_member_of_two_teams_is_charged_to_the_first_with_room_that_gives_the_profile():
    full = {"mlopshub.team": True, "profiles": ["python-cpu"], "quotas.max_servers": 0}
    roomy = {"mlopshub.team": True, "profiles": ["python-cpu"], "quotas.max_servers": 3}
    r_only = {"mlopshub.team": True, "profiles": ["r-cpu"]}
    teams = {"alpha": full, "beta": roomy, "aardvark": r_only}
    assert quotas.choose_team("ann", "", settings(), teams, [], profiles_of).team == "beta"
    with pytest.raises(quotas.QuotaExceeded, match="and 1 other team"):
        quotas.choose_team("ann", "", settings(), {"alpha": full, "beta": full}, [], profiles_of)


def test_archived_teams_and_profiles_no_team_gives_charge_nobody():
    archived = {"mlopshub.team": True, "profiles": ["python-cpu"], "mlopshub.archived": "2026-12-01T00:00:00Z"}
    charge = quotas.choose_team("paula", "", settings(), {"old": archived}, [], profiles_of)
    assert charge.team == ""  # a platform admin's server: no team's quota applies


def test_a_charge_survives_the_spawner_state_and_garbage_is_no_charge():
    charge = running("ann", "fraud", server="gpu")
    assert quotas.Charge.from_state(charge.to_state()) == charge
    assert quotas.Charge.from_state({"user": "ann"}) is None
    assert quotas.Charge.from_state("nonsense") is None
