"""The hub-managed service ``membership``: a member removed from a team stops holding the team's files.

A workspace gets its teams' Unix groups (one machine) or volumes (Kubernetes)
when it starts, and a running process's groups cannot be taken away. So when
a member leaves a team, their running workspaces that started with that team
are stopped, through the hub's REST API, within about a second: the user
sees the usual "server stopped" and starts again without the team.

Each second the service reads ``GET /hub/api/users?state=active`` (scopes:
``list:users``, ``read:users:groups``, ``read:servers``,
``admin:server_state``, ``delete:servers``, nothing else). A running
server's teams at start are those its spawner recorded in its state
(``mlopshub_teams``, see :data:`mlopshub.spawners.TEAMS_STATE`); for a
spawner that records none (KubeSpawner), those the service saw when it first
found the server running. Each stop is logged (the hub's log) and, when
``MLOPSHUB_MEMBERSHIP_LOG`` names a file, written there as one JSON line for
the admin.

Environment: ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN`` (set by the
hub), ``MLOPSHUB_CATALOG`` (which groups are teams), ``MLOPSHUB_MEMBERSHIP_LOG``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from mlopshub import access, catalog
from mlopshub.logs import bound_handlers
from mlopshub.spawners import TEAMS_STATE

log = logging.getLogger("mlopshub.membership")

#: Seconds between two looks at the hub: with the time a stop takes to begin, a removed member's workspace is
#: stopped within the revocation bound the services keep (mlopshub.settings.TRUST_SECONDS plus a request).
POLL_SECONDS = 1.0
#: Users per page of ``GET /hub/api/users``.
PAGE = 200
PAGINATION = "application/jupyterhub-pagination+json"


@dataclass(frozen=True)
class Stop:
    """A running server whose user left teams it started with."""

    user: str
    server: str
    lost: frozenset[str]

    def describe(self) -> str:
        server = f"server '{self.server}'" if self.server else "server"
        teams = ", ".join(sorted(self.lost))
        return (
            f"stopping {self.user}'s {server}: no longer in team {teams}, whose Unix group (or volume) a running "
            "workspace keeps until it stops"
        )


class Watch:
    """What the service decides from one look at the active users, and remembers until the next."""

    def __init__(self, cat: catalog.Catalog):
        self.catalog = cat
        #: (user, server, started) -> the teams seen when the server was first found running (spawner said none).
        self.first_seen: dict[tuple[str, str, str], frozenset[str]] = {}

    def stops(self, users: list[dict[str, Any]]) -> list[Stop]:
        """The servers to stop now: running, and started with a team their user is no longer in."""
        stops, seen = [], set()
        for user in users:
            # A server's teams at start are teams by definition (those made at runtime too): leaving one is
            # leaving its group.
            groups = frozenset(user.get("groups") or ())
            for name, server in (user.get("servers") or {}).items():
                if server.get("pending"):  # starting (its state comes when it is up) or already stopping
                    continue
                key = (user["name"], name, str(server.get("started") or ""))
                seen.add(key)
                state = server.get("state") or {}
                if TEAMS_STATE in state:
                    started = frozenset(state[TEAMS_STATE])
                else:
                    started = self.first_seen.setdefault(key, frozenset(access.user_teams(self.catalog, groups)))
                lost = started - groups
                if lost:
                    stops.append(Stop(user["name"], name, lost))
        self.first_seen = {key: teams for key, teams in self.first_seen.items() if key in seen}
        return stops


class Hub:
    """The few hub REST calls the service makes, with its own token."""

    def __init__(self, api_url: str, token: str, session: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def active_users(self) -> list[dict[str, Any]]:
        """Every user with a running or pending server, page after page."""
        return list(self._pages())

    def _pages(self) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            response = self.session.get(
                f"{self.api_url}/users",
                params={"state": "active", "offset": offset, "limit": PAGE},
                headers={"Accept": PAGINATION},
                timeout=10,
            )
            response.raise_for_status()
            page = response.json()
            yield from page["items"]
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return
            offset = int(following["offset"])

    def stop(self, user: str, server: str) -> int:
        """Ask the hub to stop ``user``'s ``server`` (202: stopping, 204: stopped); return the status."""
        path = f"users/{quote(user, safe='')}/" + (f"servers/{quote(server, safe='')}" if server else "server")
        response = self.session.delete(f"{self.api_url}/{path}", timeout=30)
        if response.status_code not in (202, 204, 404):
            log.error("could not stop %s's server %r: %s %s", user, server, response.status_code, response.text[:300])
        return response.status_code


def record(stop: Stop, path: Path | None) -> None:
    """Say so: the hub's log, and one JSON line in ``path`` for the admin."""
    log.warning(stop.describe())
    if path is None:
        return
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": "workspace stopped",
        "user": stop.user,
        "server": stop.server,
        "teams_left": sorted(stop.lost),
        "why": "a running workspace keeps the Unix groups (or volumes) of the teams it started with",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def run(hub: Hub, watch: Watch, log_path: Path | None, poll: float = POLL_SECONDS) -> None:
    """Look at the hub every ``poll`` seconds and stop what must stop, until killed."""
    while True:
        started = time.monotonic()
        try:
            for stop in watch.stops(hub.active_users()):
                record(stop, log_path)
                hub.stop(stop.user, stop.server)
        except requests.RequestException as error:
            log.error("the hub did not answer: %s", error)
        time.sleep(max(0.0, poll - (time.monotonic() - started)))


def main() -> None:
    """``python -m mlopshub.services.membership`` (run by the hub)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Request paths and bodies are attacker-controlled: no log line carries one whole.
    bound_handlers()
    env = os.environ
    cat = catalog.load(env["MLOPSHUB_CATALOG"])
    log_path = Path(env["MLOPSHUB_MEMBERSHIP_LOG"]) if env.get("MLOPSHUB_MEMBERSHIP_LOG") else None
    log.info("watching team membership of running workspaces (teams: %s)", ", ".join(sorted(cat.teams)))
    run(Hub(env["JUPYTERHUB_API_URL"], env["JUPYTERHUB_API_TOKEN"]), Watch(cat), log_path)


if __name__ == "__main__":
    main()
