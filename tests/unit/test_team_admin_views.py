"""What the Teams API makes of the hub's answers: a team's view and use, the usage records, quota warnings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mlopshub import catalog, quotas
from mlopshub.services.pipeline.team_admin import lowered_below_use, running_charges, running_sessions, team_view

CATALOG = catalog.load(Path(__file__).resolve().parents[2] / "profiles")
GIB = 1024**3


def charge(user: str, team: str, server: str = "") -> dict:
    return quotas.Charge(user, server, team, "python-cpu", 2.0, 4 * GIB, 0).to_state()


ACTIVE = [
    {
        "name": "ann",
        "servers": {
            "": {
                "started": "2026-12-01T08:00:00.000000Z",
                "ready": True,
                "state": {quotas.CHARGE_STATE: charge("ann", "fraud")},
            },
            "gpu": {"started": "2026-12-01T09:00:00Z", "pending": "spawn", "state": {}},
        },
    },
    {
        "name": "bob",
        "servers": {"": {"started": "2026-12-01T10:00:00Z", "state": {quotas.CHARGE_STATE: charge("bob", "retail")}}},
    },
    # A server started before quotas: no charge in its state; usage still records it, with no team.
    {
        "name": "cy",
        "servers": {"": {"started": "2026-12-01T11:00:00+00:00", "user_options": {"profile": "r-cpu"}, "state": {}}},
    },
]


def test_a_teams_view_counts_only_the_servers_charged_to_it():
    group = {
        "users": ["bob", "ann"],
        "properties": {"mlopshub.team": True, "profiles": ["python-cpu", "python-gpu"], "quotas.max_servers": 3},
    }
    view = team_view("fraud", group, CATALOG, running_charges(ACTIVE))
    assert view["members"] == ["ann", "bob"]
    assert view["gpu_profiles"] == ["python-gpu"]
    assert view["quotas"] == {"max_servers": 3}
    assert view["use"] == {
        "servers": 1,
        "cpu": 2.0,
        "memory_bytes": 4 * GIB,
        "gpus": 0,
        "running": [{"user": "ann", "server": "", "profile": "python-cpu"}],
    }


def test_usage_records_running_servers_with_their_charge_and_skips_those_still_starting():
    sessions = {(s.user, s.server): s for s in running_sessions(ACTIVE)}
    assert set(sessions) == {("ann", ""), ("bob", ""), ("cy", "")}
    assert sessions[("ann", "")].started == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert (sessions[("ann", "")].team, sessions[("ann", "")].cpu) == ("fraud", 2.0)
    assert (sessions[("cy", "")].team, sessions[("cy", "")].profile, sessions[("cy", "")].cpu) == ("", "r-cpu", 0.0)


def test_a_quota_lowered_below_what_runs_is_a_warning_naming_it():
    view = {"use": {"servers": 3, "cpu": 6.0, "memory_bytes": 12 * GIB, "gpus": 0}}
    warnings = lowered_below_use(view, {"max_servers": 2, "cpu": 8, "memory": "8G", "gpus": None})
    assert [w.split(" ")[0] for w in warnings] == ["quotas.max_servers", "quotas.memory"]
    assert "nothing running is stopped" in warnings[0]
    assert lowered_below_use(view, {"max_servers": 3}) == []
