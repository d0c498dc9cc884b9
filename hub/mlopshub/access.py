"""Who may use what: groups -> teams -> profiles, and the platform's roles and scopes.

Teams are JupyterHub groups. A team's entitlements live in the group's
properties (``profiles``, ``quotas.<name>``), seeded from the catalog at start and
editable by platform admins afterwards (the Teams page, or the hub's group
editor); the spawner reads them from the hub at spawn time, so a change
applies to the next spawn. A group is a team when its properties say so
(``mlopshub.team``, which the catalog's seeding and the Teams page set) or
the catalog names it (groups an IdP manages carry no properties). An
archived team (``mlopshub.archived``) keeps its members, data and models but
entitles nobody to start anything.

Authority over a team's models is membership of its group, read from the
hub with each token: every signed-in user holds the platform's service
access and ``custom:mlopshub:publish`` through JupyterHub's default ``user``
role, and the services grant what it allows only for the teams the caller is
a member of (:class:`mlopshub.services.pipeline.auth.Caller`; MLflow's
workspaces likewise). So a team made at runtime needs no role of its own and
no hub restart. Role groups (validators, admins) keep their roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .catalog import Catalog

#: Custom JupyterHub scopes for the platform's own actions. Services check
#: these (filtered by group where a team is meant) and nothing else.
CUSTOM_SCOPES: dict[str, dict[str, str]] = {
    "custom:mlopshub:publish": {
        "description": "Publish a team's models into the release pipeline (filter by group=<team>).",
    },
    "custom:mlopshub:read-releases": {
        "description": "Read releases, their gate results and the audit log.",
    },
    "custom:mlopshub:approve": {
        "description": "Approve or reject a release to production (never one you published).",
    },
    "custom:mlopshub:manage-teams": {
        "description": "Manage teams: members, profiles and quotas.",
    },
}

#: Group property names the platform reads.
PROFILES_PROPERTY = "profiles"
#: A quota is the property ``quotas.<name>`` (``quotas.gpus: 2``); hubs seeded before kept them all in one
#: object under ``quotas``, which the admin page cannot show.
QUOTAS_PROPERTY = "quotas"
CATALOG_TEAM_PROPERTY = "mlopshub.team"
#: Set (to the ISO time of archiving) on an archived team's group.
ARCHIVED_PROPERTY = "mlopshub.archived"


def is_team(catalog: Catalog, name: str, properties: Mapping[str, Any] | None) -> bool:
    """Whether the group ``name`` (with ``properties``) is a team: marked so, or named by the catalog."""
    if name in catalog.role_groups:
        return False
    return bool((properties or {}).get(CATALOG_TEAM_PROPERTY)) or name in catalog.teams


def is_archived(properties: Mapping[str, Any] | None) -> bool:
    """Whether a team's group is archived (no new workspaces or releases)."""
    return bool((properties or {}).get(ARCHIVED_PROPERTY))


def teams_of(catalog: Catalog, groups: Mapping[str, Mapping[str, Any]], *, archived: bool = False) -> list[str]:
    """The teams among ``groups`` (name -> properties), sorted; archived ones only if ``archived``."""
    return sorted(
        name
        for name, properties in groups.items()
        if is_team(catalog, name, properties) and (archived or not is_archived(properties))
    )


def quota_property(name: str) -> str:
    """The group property holding quota ``name``."""
    return f"{QUOTAS_PROPERTY}.{name}"


def team_properties(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """The group properties the catalog seeds, per team."""
    return {
        name: {
            CATALOG_TEAM_PROPERTY: True,
            "display_name": team.display_name,
            PROFILES_PROPERTY: list(team.profiles),
            **{quota_property(quota): value for quota, value in team.quotas.items()},
        }
        for name, team in catalog.teams.items()
    }


def flat_properties(properties: Mapping[str, Any] | None) -> dict[str, Any]:
    """A group's properties with an old nested ``quotas`` object spread into ``quotas.<name>`` keys.

    A flat key already there wins: it is the newer value.
    """
    flat = dict(properties or {})
    nested = flat.pop(QUOTAS_PROPERTY, None)
    if not isinstance(nested, Mapping):
        if nested is not None:
            flat[QUOTAS_PROPERTY] = nested  # not ours to read: keep what an admin typed
        return flat
    return {**{quota_property(str(quota)): value for quota, value in nested.items()}, **flat}


def seed_groups(catalog: Catalog, existing: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``JupyterHub.load_groups`` for the catalog: catalog defaults under what the hub already has.

    ``existing`` is each group's properties as stored in the hub now; a key an
    admin set there wins over the catalog, so a restart never undoes an
    admin's change (quotas kept in the old nested form are carried over as
    ``quotas.<name>``). Role groups get their ``profiles``, if the catalog gives them any.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name, seeded in team_properties(catalog).items():
        groups[name] = {"properties": {**seeded, **flat_properties(existing.get(name))}}
    for name, group in catalog.role_groups.items():
        seeded = {PROFILES_PROPERTY: list(group.profiles)} if group.profiles else {}
        groups[name] = {"properties": {**seeded, **flat_properties(existing.get(name))}}
    return groups


def _as_list(value: Any) -> list[str]:
    """A profiles property as a list; admins may type it as "a, b" in the admin UI."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable):
        return [str(part) for part in value]
    return []


def entitled_profiles(catalog: Catalog, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Profile slugs a user in ``groups`` (name -> properties) may use, in catalog order.

    Platform admins may use every profile; everyone else gets the union of
    their teams' ``profiles`` properties, or of the catalog's entitlement for
    a team whose group has no such property (as when the IdP manages groups).
    """
    if any(catalog.role_groups.get(name) and catalog.role_groups[name].role == "platform-admin" for name in groups):
        return list(catalog.profiles)
    wanted: set[str] = set()
    for name, properties in groups.items():
        if is_archived(properties):
            continue
        if PROFILES_PROPERTY in (properties or {}):
            wanted.update(_as_list(properties[PROFILES_PROPERTY]))
        elif name in catalog.teams:
            # Not seeded (groups managed by the IdP): the catalog's entitlement applies.
            wanted.update(catalog.teams[name].profiles)
        elif name in catalog.role_groups:
            wanted.update(catalog.role_groups[name].profiles)
    return [slug for slug in catalog.profiles if slug in wanted]


def user_teams(catalog: Catalog, group_names: Iterable[str]) -> list[str]:
    """The catalog teams among a user's groups, sorted (where only names are known: see :func:`teams_of`)."""
    return sorted(name for name in group_names if name in catalog.teams)


#: Every custom scope a signed-in user holds (JupyterHub's default ``user`` role): the services read the
#: team it applies to from the caller's group membership.
MEMBER_SCOPES = ("custom:mlopshub:publish",)


def roles(catalog: Catalog, services: Iterable[str]) -> list[dict[str, Any]]:
    """``JupyterHub.load_roles``: the default ``user`` role, plus the role groups' roles.

    Every user may reach the platform's services and publish, as JupyterHub's
    ``user`` role; what they reach is their teams' (module docstring).
    Validators may read every release and approve; platform admins are hub
    admins and manage teams.
    """
    service_access = [f"access:services!service={name}" for name in services]
    loaded: list[dict[str, Any]] = [
        {
            "name": "user",
            "description": "Every signed-in user: the platform's services, for the teams they are a member of",
            "scopes": ["self", *service_access, *MEMBER_SCOPES],
        }
    ]
    validators = [name for name, group in catalog.role_groups.items() if group.role == "model-validator"]
    admins = [name for name, group in catalog.role_groups.items() if group.role == "platform-admin"]
    loaded.append(
        {
            "name": "model-validator",
            "description": "Model validators: read every release, approve or reject it",
            "scopes": [*service_access, "self", "custom:mlopshub:read-releases", "custom:mlopshub:approve"],
            "groups": validators,
        }
    )
    loaded.append(
        {
            "name": "platform-admin",
            "description": "Platform admins: manage teams, profiles and quotas",
            "scopes": [
                "admin:users",
                "admin:groups",
                "admin:servers",
                *service_access,
                "custom:mlopshub:manage-teams",
                "custom:mlopshub:read-releases",
                # The hub's, the pipeline's and the models service's /metrics (a token for Prometheus).
                "read:metrics",
            ],
            "groups": admins,
        }
    )
    return loaded
