"""Team quotas on the real platform: spawns racing for the last places, a lowered quota, the refusal's words.

A team made at runtime (a hub group marked ``mlopshub.team``, no catalog entry, no hub restart) with
``quotas.max_servers: 5``: fifty of its members ask the hub's REST API for a server at the same moment. Exactly
five start; the other 45 are refused before anything starts, with a message that names the quota and who uses it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration

TEAM = "quota-race"
MEMBERS = [f"racer{n:02d}" for n in range(50)]
PLACES = 5


@pytest.fixture(scope="module")
def race_team(platform):
    response = platform.api("POST", "users", json={"usernames": MEMBERS})
    assert response.status_code == 201, response.text
    assert platform.api("POST", f"groups/{TEAM}", json={"users": MEMBERS}).status_code == 201
    properties = {"mlopshub.team": True, "display_name": "Quota race", "profiles": ["python-cpu"]}
    properties["quotas.max_servers"] = PLACES
    assert platform.api("PUT", f"groups/{TEAM}/properties", json=properties).status_code == 200
    yield properties
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(platform.stop, MEMBERS))


def active_servers(platform) -> dict[str, dict]:
    users = platform.api("GET", "users", params={"state": "active"}).json()
    return {u["name"]: u["servers"][""] for u in users if u["name"] in MEMBERS and "" in u["servers"]}


def test_fifty_spawns_racing_for_five_places_start_exactly_five(platform, race_team):
    with ThreadPoolExecutor(len(MEMBERS)) as pool:
        answers = list(pool.map(lambda name: platform.spawn(name, "python-cpu"), MEMBERS))
    started = [name for name, answer in zip(MEMBERS, answers, strict=True) if answer.status_code in (201, 202)]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(started) == PLACES, [
        (a.status_code, a.text[:200]) for a in answers if a.status_code not in (201, 202, 429)
    ]
    assert len(refused) == len(MEMBERS) - PLACES
    message = refused[0].json()["message"]
    assert f"team {TEAM} has reached its quota of {PLACES} running server(s)" in message
    assert all(name in message for name in sorted(started)), message
    # Nothing of the refused started, and the five are the team's only servers.
    for name in started:
        platform.wait_ready(name)
    assert sorted(active_servers(platform)) == sorted(started)


def test_a_lowered_quota_refuses_the_next_spawn_and_stops_nothing(platform, race_team):
    running = sorted(active_servers(platform))
    assert len(running) == PLACES
    lowered = {**race_team, "quotas.max_servers": 2}
    assert platform.api("PUT", f"groups/{TEAM}/properties", json=lowered).status_code == 200
    waiting = next(name for name in MEMBERS if name not in running)
    answer = platform.spawn(waiting, "python-cpu")
    assert answer.status_code == 429, answer.text
    assert f"quota of 2 running server(s): {PLACES} run now" in answer.json()["message"]
    time.sleep(2)  # the membership service looks each second: it stops nothing for a quota
    assert sorted(active_servers(platform)) == running
    # Places free up as servers stop: with two left running, one more may not start; with one, it may.
    for name in running[2:]:
        platform.stop(name)
    assert platform.spawn(waiting, "python-cpu").status_code == 429
    platform.stop(running[1])
    assert platform.spawn(waiting, "python-cpu").status_code in (201, 202)
    platform.wait_ready(waiting)
