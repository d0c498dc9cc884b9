"""Who may use what: groups -> teams -> profiles, and the platform's roles and scopes.

Teams are JupyterHub groups. A team's entitlements live in the group's
properties (``profiles``, ``quotas.<name>``), seeded from the catalog at start and
editable by hub admins afterwards; the spawner reads them from the hub at
spawn time, so an admin's change applies to the next spawn. Every property is
a plain value (text, number, list of text): JupyterHub's group editor shows a
value as text, and a nested object as ``[object Object]``.
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
        if PROFILES_PROPERTY in (properties or {}):
            wanted.update(_as_list(properties[PROFILES_PROPERTY]))
        elif name in catalog.teams:
            # Not seeded (groups managed by the IdP): the catalog's entitlement applies.
            wanted.update(catalog.teams[name].profiles)
        elif name in catalog.role_groups:
            wanted.update(catalog.role_groups[name].profiles)
    return [slug for slug in catalog.profiles if slug in wanted]


def user_teams(catalog: Catalog, group_names: Iterable[str]) -> list[str]:
    """The catalog teams among a user's groups, sorted."""
    return sorted(name for name in group_names if name in catalog.teams)


def roles(catalog: Catalog, services: Iterable[str]) -> list[dict[str, Any]]:
    """``JupyterHub.load_roles``: one role per team, plus the role groups' roles.

    Every team member may reach the platform's services and publish the
    team's models; validators may read every release and approve; platform
    admins are hub admins.
    """
    service_access = [f"access:services!service={name}" for name in services]
    loaded: list[dict[str, Any]] = [
        {
            "name": f"team-{name}",
            "description": f"Members of team {name}: use its profiles, experiments and models",
            "scopes": [*service_access, "self", f"custom:mlopshub:publish!group={name}", f"read:groups!group={name}"],
            "groups": [name],
        }
        for name in catalog.teams
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
            ],
            "groups": admins,
        }
    )
    return loaded
