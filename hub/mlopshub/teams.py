"""Teams as the hub holds them: read from group properties, written back, checked, exported.

A team is a JupyterHub group (:mod:`mlopshub.access`). Once the hub has
started, the group's properties are the truth; the catalog only seeds what
the hub lacks. This module turns a group into a :class:`catalog.Team`
(:func:`team_from_group`) and a team into group properties
(:func:`group_properties`), checks a request to create or edit a team
against the catalog's own schema (:func:`validate_spec`), so the Teams page
and ``profiles/`` refuse the same things, and writes the hub's teams back as
catalog YAML (:func:`export_yaml`, ``mlopshub teams export``) for an admin
to keep in git.

Properties of a team's group (the contract with the Teams API and the spawner)::

    mlopshub.team: true                  marks the group as a team
    display_name: SME credit risk
    profiles: [python-cpu, python-gpu]   ("a, b" as typed in the hub's group editor reads too)
    quotas.max_servers: 20               also quotas.servers_per_user, quotas.cpu (a number),
    quotas.memory: 64G                   quotas.gpus; a quota absent or null does not limit
    release: {thresholds: {...}, holdout: {...}}   as the catalog's team ``release``
    mlopshub.archived: 2026-12-02T13:00:00Z        (ISO 8601, UTC) while archived
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import jsonschema
import requests
import yaml

from . import access, catalog

log = logging.getLogger(__name__)

#: A team's name is its hub group's, its MLflow workspace's and part of Kubernetes object names
#: (a DNS label), so it takes the strictest of the three, and stays short enough to prefix.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_MIN, NAME_MAX = 2, 30
NAME_EXPECTED = (
    f"{NAME_MIN} to {NAME_MAX} characters: lower-case letters, digits and '-', starting with a letter and not "
    "ending with '-' (it names the hub group, the MLflow workspace and Kubernetes objects)"
)
#: Fields of a create or edit request besides the catalog's team keys.
REQUEST_FIELDS = ("name", "members")
RELEASE_PROPERTY = "release"
DISPLAY_NAME_PROPERTY = "display_name"
#: The hub's paginated answer (JupyterHub >= 2.0); without it, a hub answers a plain list.
PAGINATION = "application/jupyterhub-pagination+json"


class TeamSpecError(ValueError):
    """A create or edit request that cannot be applied; ``errors`` maps each field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors.items()))


class HubError(ValueError):
    """The hub's REST API could not be read: names the URL, the answer and what to do."""


# --- the catalog's schema, one source for the catalog and the Teams API -----


@functools.cache
def _schema() -> dict[str, Any]:
    return catalog.load_schema()


def _team_schema() -> dict[str, Any]:
    return _schema()["$defs"]["team"]


def quota_names() -> tuple[str, ...]:
    """The quotas a team may set, in the catalog schema's order."""
    return tuple(_team_schema()["properties"]["quotas"]["properties"])


@functools.cache
def _validator(*where: str, partial: bool = False) -> jsonschema.Draft202012Validator:
    """A validator for the part of a team at ``where`` (keys below ``#/$defs/team``)."""
    schema = _team_schema()
    for key in where:
        schema = schema["properties"][key]
    schema = copy.deepcopy(schema)
    if partial:
        schema.pop("required", None)
    return jsonschema.Draft202012Validator({"$defs": _schema()["$defs"], **schema})


def _innermost(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The deepest of an ``anyOf``'s reasons, as the catalog reports it."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


# --- reading a group --------------------------------------------------------


def teams_from_groups(groups: Mapping[str, Mapping[str, Any] | None], cat: catalog.Catalog) -> dict[str, catalog.Team]:
    """The teams among the hub's ``groups`` (name -> properties), by name."""
    found = {name: team_from_group(name, properties, cat) for name, properties in sorted(groups.items())}
    return {name: team for name, team in found.items() if team is not None}


def team_from_group(name: str, properties: Mapping[str, Any] | None, cat: catalog.Catalog) -> catalog.Team | None:
    """The team the hub group ``name`` describes, or None when the group is not a team.

    A key the group lacks comes from the catalog's team of the same name (as
    seeding would put it there). A stored value that is not one (typed by an
    admin in JupyterHub's group editor) is left out with a warning, as if it
    were missing; the rest of the team still reads.
    """
    if not access.is_team(cat, name, properties):
        return None
    props = access.flat_properties(properties)
    base = cat.teams.get(name)

    def stored(key: str, read: Callable[[Any], Any], fallback: Any) -> Any:
        if key not in props:
            return fallback
        try:
            return read(props[key])
        except ValueError as error:
            log.warning("team %s: ignoring group property %s = %r: %s", name, key, props[key], error)
            return fallback

    _warn_unknown_quotas(name, props)
    quotas = {}
    for quota in quota_names():
        fallback = base.quotas.get(quota) if base else None
        value = stored(access.quota_property(quota), functools.partial(_read_quota, quota), fallback)
        if value is not None:
            quotas[quota] = value
    return catalog.Team(
        name=name,
        display_name=stored(DISPLAY_NAME_PROPERTY, _read_display_name, base.display_name if base else name),
        profiles=stored(
            access.PROFILES_PROPERTY, functools.partial(_read_profiles, name, cat), base.profiles if base else ()
        ),
        quotas=quotas,
        release=stored(RELEASE_PROPERTY, _read_release, dict(base.release) if base else {}),
        archived=stored(access.ARCHIVED_PROPERTY, _read_archived, base.archived if base else None),
    )


def _warn_unknown_quotas(name: str, props: Mapping[str, Any]) -> None:
    known = {access.quota_property(quota) for quota in quota_names()}
    prefix = access.quota_property("")
    for key in props:
        if (key.startswith(prefix) and key not in known) or key == access.QUOTAS_PROPERTY:
            log.warning(
                "team %s: ignoring group property %s: not a quota; expected one of: %s",
                name,
                key,
                ", ".join(sorted(known)),
            )


def _read_display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a display name (non-empty text)")
    return value.strip()


def _read_profiles(team: str, cat: catalog.Catalog, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple)):
        raise ValueError("expected a list of profile slugs, or slugs separated by ','")
    slugs = access._as_list(value)
    unknown = [slug for slug in slugs if slug not in cat.profiles]
    if unknown:
        log.warning(
            "team %s: ignoring unknown profile(s) %s in its group's profiles; the catalog has: %s",
            team,
            ", ".join(unknown),
            ", ".join(cat.profiles),
        )
    return tuple(dict.fromkeys(slug for slug in slugs if slug in cat.profiles))


def _read_quota(quota: str, value: Any) -> int | float | str | None:
    """A stored quota; text from the hub's group editor reads as the number it spells. None/'': not limited."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    kind = _team_schema()["properties"]["quotas"]["properties"][quota].get("type")
    if isinstance(value, str) and kind in ("integer", "number"):
        text = value.strip()
        try:
            value = int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else float(text)
        except ValueError:
            pass  # the schema says what was expected
    elif isinstance(value, float) and kind == "integer" and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        value = value.strip()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    errors = list(_validator("quotas").iter_errors({quota: value}))
    if errors:
        raise ValueError(catalog.describe_error(_innermost(errors[0])))
    return value


def _read_release(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("expected an object {thresholds, holdout}")
    errors = sorted(_validator(RELEASE_PROPERTY).iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        error = _innermost(errors[0])
        raise ValueError(f"{catalog.key_path(['release', *error.absolute_path])}: {catalog.describe_error(error)}")
    return copy.deepcopy(dict(value))


def _read_archived(value: Any) -> str | None:
    if value in (None, False, ""):
        return None
    errors = list(_validator().iter_errors({"profiles": [], "archived": value}))
    if errors:
        raise ValueError(catalog.describe_error(_innermost(errors[0])))
    return str(value)


# --- writing a group --------------------------------------------------------


def group_properties(team: catalog.Team) -> dict[str, Any]:
    """The group properties that describe ``team`` (what the Teams API writes to the hub).

    The keys :func:`mlopshub.access.team_properties` seeds, plus ``release``
    and ``mlopshub.archived`` when the team has them.
    """
    properties: dict[str, Any] = {
        access.CATALOG_TEAM_PROPERTY: True,
        DISPLAY_NAME_PROPERTY: team.display_name,
        access.PROFILES_PROPERTY: list(team.profiles),
        **{access.quota_property(quota): value for quota, value in team.quotas.items()},
    }
    if team.release:
        properties[RELEASE_PROPERTY] = copy.deepcopy(dict(team.release))
    if team.archived:
        properties[access.ARCHIVED_PROPERTY] = team.archived
    return properties


# --- checking a create or edit request ---------------------------------------


def validate_spec(
    body: Any,
    cat: catalog.Catalog,
    *,
    existing_teams: Collection[str],
    existing_groups: Collection[str],
    partial: bool = False,
) -> dict[str, Any]:
    """The normalized team of a create (``partial=False``) or edit (``partial=True``) request, or
    :class:`TeamSpecError` naming every field that is wrong (``name``, ``quotas.cpu``, ``release.thresholds.auc``).

    ``body`` holds the catalog's team keys (``display_name``, ``profiles``,
    ``quotas``, ``release``, ``archived``) plus ``name`` and ``members`` (user
    names; whether they exist is the caller's to check). A create needs
    ``name`` and ``profiles`` and gets defaults for the rest; an edit holds only
    the fields it changes and no ``name``. A quota given as null is not limited
    (the caller writes it as null, so that seeding does not bring the catalog's back);
    ``release`` is replaced whole; ``archived: false`` unarchives.
    """
    if not isinstance(body, Mapping):
        fields = ", ".join([*REQUEST_FIELDS, *_team_schema()["properties"]])
        raise TeamSpecError({"(body)": f"expected a JSON object with the team's fields ({fields}), got {body!r}"})
    errors: dict[str, str] = {}
    team_keys = {key: value for key, value in body.items() if key not in REQUEST_FIELDS}
    unlimited: list[str] = []
    if isinstance(team_keys.get("quotas"), Mapping):
        unlimited = [quota for quota, value in team_keys["quotas"].items() if value is None]
        team_keys["quotas"] = {quota: value for quota, value in team_keys["quotas"].items() if value is not None}
    for field, message in _schema_errors(team_keys, partial):
        errors.setdefault(field, message)

    name = _check_name(body, cat, existing_teams, existing_groups, partial, errors)
    _check_profiles(body, cat, errors)
    _check_finite_quotas(body, errors)
    _check_thresholds(body, errors)
    members = _check_members(body, errors)
    if "display_name" in body and "display_name" not in errors and not str(body["display_name"]).strip():
        errors["display_name"] = "expected a display name (non-empty text), or leave it out to use the team's name"
    if errors:
        raise TeamSpecError(errors)
    return _normalized(body, name, members, unlimited, partial)


def _schema_errors(team_keys: Mapping[str, Any], partial: bool) -> Iterator[tuple[str, str]]:
    """(field, message) for each violation of ``#/$defs/team``, fields as key paths of the request."""
    allowed = [*REQUEST_FIELDS, *_team_schema()["properties"]]
    for error in _validator(partial=partial).iter_errors(team_keys):
        error = _innermost(error)
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            known = allowed if not path else sorted(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - set(known)):
                yield catalog.key_path([*path, extra]), f"unknown field; expected one of: {', '.join(known)}"
        elif error.validator == "required" and isinstance(error.instance, Mapping):
            for missing in error.validator_value:
                if missing not in error.instance:
                    expected = error.schema.get("properties", {}).get(missing, {}).get("expected") or error.schema.get(
                        "expected"
                    )
                    yield (
                        catalog.key_path([*path, missing]),
                        "required" + (f": expected {expected}" if expected else ""),
                    )
        elif "propertyNames" in error.schema_path:
            yield catalog.key_path([*path, str(error.instance)]), f"unknown name; {catalog.describe_error(error)}"
        else:
            yield catalog.key_path(path), catalog.describe_error(error)


def _check_name(
    body: Mapping[str, Any],
    cat: catalog.Catalog,
    existing_teams: Collection[str],
    existing_groups: Collection[str],
    partial: bool,
    errors: dict[str, str],
) -> str | None:
    if partial:
        if "name" in body:
            errors["name"] = (
                "a team cannot be renamed (its name is its hub group's, MLflow workspace's and volumes'); "
                "leave name out of an edit, or create a new team"
            )
        return None
    name = body.get("name")
    if name is None:
        errors["name"] = f"required: expected the team's name, {NAME_EXPECTED}"
    elif not isinstance(name, str) or not NAME_PATTERN.match(name) or not NAME_MIN <= len(name) <= NAME_MAX:
        errors["name"] = f"expected {NAME_EXPECTED}, got {name!r}"
    elif name in cat.role_groups:
        errors["name"] = f"{name!r} is one of the catalog's role groups ({', '.join(cat.role_groups)}); choose another"
    elif name in catalog.RESERVED_SERVICE_NAMES:
        errors["name"] = (
            f"{name!r} is the name of one of the platform's services "
            f"({', '.join(catalog.RESERVED_SERVICE_NAMES)}); choose another"
        )
    elif name in existing_teams:
        errors["name"] = f"a team named {name!r} already exists; choose another name, or edit that team"
    elif name in existing_groups:
        errors["name"] = f"a hub group named {name!r} already exists and is not a team; choose another name"
    else:
        return name
    return None


def _check_profiles(body: Mapping[str, Any], cat: catalog.Catalog, errors: dict[str, str]) -> None:
    profiles = body.get("profiles")
    if "profiles" in errors or not isinstance(profiles, list):
        return
    unknown = [slug for slug in profiles if slug not in cat.profiles]
    if unknown:
        errors["profiles"] = (
            f"unknown profile(s) {', '.join(map(repr, unknown))}; expected profiles of the catalog: "
            f"{', '.join(cat.profiles)}"
        )


def _check_finite_quotas(body: Mapping[str, Any], errors: dict[str, str]) -> None:
    """NaN and Infinity pass the schema's ``minimum`` (Python's JSON reads them): no quota is either."""
    quotas = body.get("quotas")
    for quota, value in quotas.items() if isinstance(quotas, Mapping) else ():
        if isinstance(value, float) and not math.isfinite(value):
            errors.setdefault(f"quotas.{quota}", f"expected a finite number, got {value!r}")


def _check_thresholds(body: Mapping[str, Any], errors: dict[str, str]) -> None:
    release = body.get("release")
    thresholds = release.get("thresholds") if isinstance(release, Mapping) else None
    if not isinstance(thresholds, Mapping):
        return
    for metric, bounds in thresholds.items():
        field = f"release.thresholds.{metric}"
        if any(key.startswith(field) for key in errors) or not isinstance(bounds, Mapping):
            continue
        low, high = bounds.get("min"), bounds.get("max")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            errors[field] = f"expected min ({low}) at most max ({high}): no model could meet both"


def _check_members(body: Mapping[str, Any], errors: dict[str, str]) -> list[str]:
    members = body.get("members", [])
    if not isinstance(members, list):
        errors["members"] = f"expected a list of user names, got {members!r}"
        return []
    bad = [member for member in members if not isinstance(member, str) or not member.strip()]
    if bad:
        errors["members"] = f"expected user names (non-empty text), got {', '.join(map(repr, bad))}"
    return list(dict.fromkeys(member.strip() for member in members if member not in bad))


def _normalized(
    body: Mapping[str, Any], name: str | None, members: list[str], unlimited: list[str], partial: bool
) -> dict[str, Any]:
    """The checked request: an edit's fields as given (None: remove), a create's complete with defaults."""
    spec: dict[str, Any] = {}
    if not partial:
        spec["name"] = name
    if "display_name" in body or not partial:
        spec["display_name"] = str(body.get("display_name") or name).strip()
    if "profiles" in body:
        spec["profiles"] = list(body["profiles"])
    if "quotas" in body or not partial:
        order = quota_names()
        quotas = {quota: value for quota, value in (body.get("quotas") or {}).items() if value is not None}
        if partial:
            quotas.update(dict.fromkeys(unlimited))
        spec["quotas"] = dict(sorted(quotas.items(), key=lambda item: order.index(item[0])))
    if "release" in body or not partial:
        spec["release"] = copy.deepcopy(dict(body.get("release") or {}))
    if "members" in body or not partial:
        spec["members"] = members
    if body.get("archived") or (partial and "archived" in body):
        spec["archived"] = body["archived"] or None
    return spec


# --- export -----------------------------------------------------------------


def export_yaml(
    teams: Mapping[str, catalog.Team],
    *,
    role_groups: Mapping[str, catalog.RoleGroup] | None = None,
    consumers: Mapping[str, catalog.Consumer] | None = None,
    source: str = "the hub",
    now: datetime | None = None,
) -> str:
    """``teams`` as a catalog file (``teams.yaml`` beside ``profiles.yaml``), with a header saying whence and when.

    Role groups and consumers live in the same file in the catalog; pass the
    catalog's so the file can replace ``profiles/teams.yaml`` whole.
    """
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document: dict[str, Any] = {"teams": {name: _team_document(teams[name]) for name in sorted(teams)}}
    if role_groups:
        document["role_groups"] = {name: _role_group_document(group) for name, group in role_groups.items()}
    if consumers:
        document["consumers"] = {
            name: {"display_name": consumer.display_name, "models": list(consumer.models)}
            for name, consumer in consumers.items()
        }
    header = (
        f"# Teams exported from {source} by `mlopshub teams export` at {when}.\n"
        "# The hub's group properties are the truth; this is a copy for git. As the catalog's teams.yaml\n"
        "# (beside profiles.yaml) it seeds a hub that lacks these teams; keys a hub already has win.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)


def _team_document(team: catalog.Team) -> dict[str, Any]:
    document: dict[str, Any] = {"display_name": team.display_name, "profiles": list(team.profiles)}
    if team.quotas:
        document["quotas"] = {quota: team.quotas[quota] for quota in quota_names() if quota in team.quotas}
    if team.release:
        document["release"] = copy.deepcopy(dict(team.release))
    if team.archived:
        document["archived"] = team.archived
    return document


def _role_group_document(group: catalog.RoleGroup) -> dict[str, Any]:
    document: dict[str, Any] = {"display_name": group.display_name, "role": group.role}
    if group.profiles:
        document["profiles"] = list(group.profiles)
    return document


# --- the hub's groups ----------------------------------------------------------


def fetch_groups(
    api_url: str, token: str, *, session: requests.Session | None = None, page_size: int = 200
) -> dict[str, dict[str, Any]]:
    """Every group of the hub at ``api_url`` (``.../hub/api``) and its properties, page after page.

    ``token`` needs ``read:groups`` (the platform's ``mlopshub-admin`` service token has it).
    """
    session = session or requests.Session()
    url = f"{api_url.rstrip('/')}/groups"
    groups: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = _get_page(session, url, token, offset, page_size)
        items = page["items"] if isinstance(page, dict) else page
        for group in items:
            groups[group["name"]] = dict(group.get("properties") or {})
        following = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
        if not following:
            return groups
        offset = int(following["offset"])


def _get_page(session: requests.Session, url: str, token: str, offset: int, limit: int) -> Any:
    try:
        response = session.get(
            url,
            params={"offset": offset, "limit": limit},
            headers={"Authorization": f"token {token}", "Accept": PAGINATION},
            timeout=30,
        )
    except requests.RequestException as error:
        raise HubError(f"{url}: the hub does not answer ({error}); is it running, and is the URL its API?") from None
    if response.status_code in (401, 403):
        raise HubError(
            f"{url}: the hub refused the token ({response.status_code}); give a token that may read groups "
            "(read:groups), such as the mlopshub-admin service's"
        )
    if response.status_code != 200:
        raise HubError(f"{url}: the hub answered {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise HubError(f"{url}: the answer is not JSON; is the URL the hub's API (ending in /hub/api)?") from None
