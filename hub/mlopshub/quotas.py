"""Team and user quotas, checked in the hub before anything starts.

A team's quotas are properties of its group (``quotas.<name>``, see
:mod:`mlopshub.access`): ``max_servers`` (running servers of its members),
``cpu`` and ``memory`` (the sum of the limits of those servers), ``gpus``,
and ``servers_per_user`` (named servers count). A quota that is not set does
not limit. Each running server is *charged* to one team: the first of its
user's teams (by name) whose profiles include the server's profile and
whose quotas leave room for it. A user whose teams give the profile but all
are full is refused with a message that names the quota, the team's use and
who uses it. A platform admin or validator starting a profile that no team
of theirs gives is charged to no team, and no quota applies (role groups
carry none).

The check runs in JupyterHub's ``apply_user_options`` hook, in the hub's
event loop, without awaiting between counting and charging: spawns racing
for the last places of a quota are decided one after the other, so exactly
as many start as there are places. What is counted is every active server
(starting, running or stopping) the hub holds in memory, with the charge
the hook gave it (:data:`CHARGE_STATE` in the spawner's state keeps it over
a hub restart). The same code runs on one machine and on Kubernetes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .access import is_archived
from .catalog import SpawnSettings, parse_quantity

#: Key of the spawner's state that keeps a running server's charge (team and resources).
CHARGE_STATE = "mlopshub_charge"
#: The quotas a team's group may set, and what each counts.
QUOTA_NAMES = {
    "max_servers": "running servers",
    "servers_per_user": "servers per user",
    "cpu": "CPUs",
    "memory": "memory",
    "gpus": "GPUs",
}
GIB = 1024**3


@dataclass(frozen=True)
class Charge:
    """What one server counts against its team's quotas: its limits, and whose it is."""

    user: str
    server: str
    team: str
    profile: str
    cpu: float
    memory: int
    gpus: int

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> Charge | None:
        """The charge kept in a spawner's state, None when there is none or it is not one."""
        if not isinstance(state, Mapping):
            return None
        try:
            return cls(
                user=str(state["user"]),
                server=str(state["server"]),
                team=str(state["team"]),
                profile=str(state["profile"]),
                cpu=float(state["cpu"]),
                memory=int(state["memory"]),
                gpus=int(state["gpus"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def charge_of(user: str, server: str, team: str, settings: SpawnSettings) -> Charge:
    """The charge of a server started with ``settings`` (its limits; its guarantee where no limit is set)."""
    cpu = settings.cpu_limit if settings.cpu_limit is not None else settings.cpu_guarantee
    memory = settings.mem_limit or settings.mem_guarantee
    return Charge(
        user=user,
        server=server,
        team=team,
        profile=settings.profile,
        cpu=float(cpu or 0.0),
        memory=parse_quantity(memory) if memory else 0,
        gpus=int(settings.gpu or 0),
    )


@dataclass(frozen=True)
class Quotas:
    """A team's quotas; None: not limited."""

    max_servers: int | None = None
    servers_per_user: int | None = None
    cpu: float | None = None
    memory: int | None = None
    gpus: int | None = None


def _number(value: Any, kind: type) -> float | int | None:
    """A quota value as the group holds it (typed in the hub's editor it is text); None when not a number >= 0."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = kind(str(value).strip()) if isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return number if number >= 0 else None


def quotas_of(properties: Mapping[str, Any] | None) -> Quotas:
    """A team's quotas from its group properties (``quotas.<name>``); a value that is not one does not limit.

    Stored values are checked where they are written (the Teams API); one an admin typed as text in the hub's
    group editor is read as a number when it is one.
    """
    props = properties or {}
    memory = props.get("quotas.memory")
    try:
        memory_bytes = parse_quantity(str(memory).strip()) if memory not in (None, "") else None
    except ValueError:
        memory_bytes = None
    return Quotas(
        max_servers=_number(props.get("quotas.max_servers"), int),  # type: ignore[arg-type]
        servers_per_user=_number(props.get("quotas.servers_per_user"), int),  # type: ignore[arg-type]
        cpu=_number(props.get("quotas.cpu"), float),
        memory=memory_bytes,
        gpus=_number(props.get("quotas.gpus"), int),  # type: ignore[arg-type]
    )


def _size(n: float) -> str:
    return f"{n / GIB:g}G"


def _who(charges: list[Charge]) -> str:
    names = sorted({c.user + (f" ({c.server})" if c.server else "") for c in charges})
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return shown or "nobody"


def over_quota(new: Charge, team_charges: list[Charge], user_charges: list[Charge], quotas: Quotas) -> str | None:
    """Why ``new`` would pass one of ``quotas`` (a message naming the quota, the use and who uses it), or None.

    ``team_charges``: the servers charged to the team now; ``user_charges``: the user's servers charged to it.
    """
    team = new.team
    if quotas.servers_per_user is not None and len(user_charges) + 1 > quotas.servers_per_user:
        return (
            f"team {team} allows {quotas.servers_per_user} server(s) per user and {new.user} already runs "
            f"{len(user_charges)}: {_who(user_charges)}; stop one first"
        )
    if quotas.max_servers is not None and len(team_charges) + 1 > quotas.max_servers:
        return (
            f"team {team} has reached its quota of {quotas.max_servers} running server(s): "
            f"{len(team_charges)} run now, by {_who(team_charges)}"
        )
    used_cpu = sum(c.cpu for c in team_charges)
    if quotas.cpu is not None and used_cpu + new.cpu > quotas.cpu + 1e-9:
        return (
            f"team {team} has a quota of {quotas.cpu:g} CPUs: {used_cpu:g} are in use by {_who(team_charges)}, "
            f"and profile {new.profile} needs {new.cpu:g}"
        )
    used_memory = sum(c.memory for c in team_charges)
    if quotas.memory is not None and used_memory + new.memory > quotas.memory:
        return (
            f"team {team} has a memory quota of {_size(quotas.memory)}: {_size(used_memory)} are in use by "
            f"{_who(team_charges)}, and profile {new.profile} needs {_size(new.memory)}"
        )
    used_gpus = sum(c.gpus for c in team_charges)
    if quotas.gpus is not None and new.gpus and used_gpus + new.gpus > quotas.gpus:
        return (
            f"team {team} has a quota of {quotas.gpus} GPU(s): {used_gpus} are in use by "
            f"{_who([c for c in team_charges if c.gpus])}, and profile {new.profile} needs {new.gpus}"
        )
    return None


class QuotaExceeded(Exception):
    """A spawn refused by a quota; ``str()`` is the message for the user."""


def choose_team(
    user: str,
    server: str,
    settings: SpawnSettings,
    teams: Mapping[str, Mapping[str, Any]],
    running: Iterable[Charge],
    profiles_of: Any,
) -> Charge:
    """The charge of a new server: charged to the first of ``teams`` (name -> group properties) that gives
    ``settings.profile`` (``profiles_of(properties) -> list``) and has room; :class:`QuotaExceeded` (the first
    team's reason) when every such team is full; charged to no team when none gives the profile.
    """
    running = list(running)
    reasons = []
    for team in sorted(teams):
        properties = teams[team]
        if is_archived(properties) or settings.profile not in profiles_of(team, properties):
            continue
        new = charge_of(user, server, team, settings)
        charged = [c for c in running if c.team == team]
        reason = over_quota(new, charged, [c for c in charged if c.user == user], quotas_of(properties))
        if reason is None:
            return new
        reasons.append(reason)
    if reasons:
        others = f" (and {len(reasons) - 1} other team(s) of yours are full too)" if len(reasons) > 1 else ""
        raise QuotaExceeded(
            f"cannot start {settings.profile}: {reasons[0]}{others}. Ask a platform admin to raise the quota, or "
            "wait until a server stops"
        )
    return charge_of(user, server, "", settings)
