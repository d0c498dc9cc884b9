"""The catalog: workspace profiles and team entitlements, read from ``profiles/``.

Every ``*.yaml`` file in the catalog folder contributes top-level keys
(``profiles``, ``teams``, ``role_groups``). Together they must match
``profiles/schema.json``; then the cross-references are checked (a team names
only known profiles, a limit is not below its guarantee). A catalog is loaded
whole or not at all: the first problem raises :class:`CatalogError` naming the
file, the key path and what was expected.

Resolution (:func:`resolve`) is pure and follows KubeSpawner's override order:
profile defaults, then the profile, then each chosen option; dicts merge.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jupyterhub.traitlets import ByteSpecification
from traitlets import TraitError

SCHEMA_PATH = Path(__file__).resolve().parent / "catalog.schema.json"
TOP_LEVEL_KEYS = ("profiles", "teams", "role_groups", "consumers")
#: Hub services of the platform itself: a consumer system may not take their names.
RESERVED_SERVICE_NAMES = ("mlflow", "pipeline", "models", "idle-culler", "mlopshub-admin", "jupyterhub-idle-culler")

#: Settings every profile starts from before its own keys apply.
PROFILE_DEFAULTS: dict[str, Any] = {
    "default_kernel": None,
    "default": False,
    "description": "",
    "cpu": {},
    "memory": {},
    "gpu": 0,
    "node_selector": {},
    "tolerations": [],
    "environment": {},
    "options": {},
}

#: JupyterHub's reader of ``mem_limit``/``mem_guarantee`` (KubeSpawner's too): K, M, G, T are powers of 1024.
_BYTES = ByteSpecification()


class CatalogError(ValueError):
    """A catalog that cannot be used: names the file, the key path and what was expected."""

    def __init__(self, file: str, key: str, message: str):
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}")


class ProfileNotAllowed(PermissionError):
    """A user asked for a profile their groups do not allow (or that does not exist)."""

    def __init__(self, slug: str, reason: str):
        self.slug = slug
        self.reason = reason
        super().__init__(f"profile '{slug}' {reason}")


def parse_quantity(value: str) -> int:
    """Bytes in a size such as ``'4G'`` or ``'512M'``, read by JupyterHub's own ``ByteSpecification``.

    A size without a unit (``'100'``) is that many bytes: JupyterHub reads a number so, but refuses
    it as text, so it is handed over as the number it is. A negative size is refused here (the
    catalog schema's quantity pattern already refuses one in ``profiles/``).
    """
    text = str(value)
    try:
        size = _BYTES.validate(None, float(text) if text[-1:].isdigit() else text)
    except (TraitError, ValueError, OverflowError):  # ValueError/OverflowError: 'nanG', 'infG'
        raise ValueError(f"not a size: {value!r}") from None
    if size < 0:
        raise ValueError(f"not a size: {value!r}")
    return size


@dataclass(frozen=True)
class Profile:
    """One workspace profile, as written in the catalog (before options apply)."""

    slug: str
    display_name: str
    image: str
    kernels: tuple[str, ...]
    settings: Mapping[str, Any] = field(repr=False)

    @property
    def gpu(self) -> int:
        return int(self.settings.get("gpu") or 0)

    @property
    def description(self) -> str:
        return str(self.settings.get("description") or "")

    @property
    def options(self) -> Mapping[str, Any]:
        return self.settings.get("options") or {}

    def default_choices(self) -> dict[str, str]:
        """The choice each option starts with: the one marked default, else the first."""
        chosen = {}
        for name, option in self.options.items():
            choices = option["choices"]
            chosen[name] = next(
                (slug for slug, choice in choices.items() if choice.get("default")),
                next(iter(choices)),
            )
        return chosen


@dataclass(frozen=True)
class Team:
    """A team: a JupyterHub group entitled to some profiles, with quotas."""

    name: str
    display_name: str
    profiles: tuple[str, ...]
    #: ``max_servers``, ``servers_per_user``, ``gpus`` (whole numbers), ``cpu`` (a number), ``memory`` (a size).
    quotas: Mapping[str, int | float | str]
    #: Release settings: metric ``thresholds`` and the versioned ``holdout`` set they are measured on.
    release: Mapping[str, Any] = field(default_factory=dict)
    #: When the team was archived (ISO 8601, UTC); None while it is active.
    archived: str | None = None


@dataclass(frozen=True)
class RoleGroup:
    """A group that carries a platform role (model validators, platform admins)."""

    name: str
    display_name: str
    role: str
    #: Profiles the group's members may start (validators review releases in their own workspace).
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Consumer:
    """A consumer system (a hub service) and the models whose production endpoints it may call."""

    name: str
    display_name: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """A whole, valid catalog."""

    profiles: Mapping[str, Profile]
    teams: Mapping[str, Team]
    role_groups: Mapping[str, RoleGroup]
    source: str = ""
    consumers: Mapping[str, Consumer] = field(default_factory=dict)

    def profile(self, slug: str) -> Profile:
        """The profile named ``slug``; :class:`ProfileNotAllowed` if there is none."""
        try:
            return self.profiles[slug]
        except KeyError:
            raise ProfileNotAllowed(slug, "does not exist in the catalog") from None


@dataclass(frozen=True)
class SpawnSettings:
    """What a workspace gets once a profile and its option choices are resolved."""

    profile: str
    display_name: str
    image: str
    kernels: tuple[str, ...]
    default_kernel: str
    cpu_guarantee: float | None
    cpu_limit: float | None
    mem_guarantee: str | None
    mem_limit: str | None
    gpu: int
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    environment: Mapping[str, str]
    choices: Mapping[str, str]


# --- loading ---------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    """The catalog's JSON Schema (shipped in the package, the same as ``profiles/schema.json``)."""
    return json.loads(SCHEMA_PATH.read_text())


def load(folder: str | Path) -> Catalog:
    """Read, validate and build the catalog in ``folder``, or raise :class:`CatalogError`."""
    folder = Path(folder)
    document, origin = _read_documents(folder)
    _validate_schema(document, origin)
    catalog = _build(document, origin, source=str(folder))
    return catalog


def _read_documents(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge the top-level keys of every YAML file; remember which file gave each key."""
    if not folder.is_dir():
        raise CatalogError(str(folder), "(folder)", "expected a folder of catalog YAML files")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        raise CatalogError(str(folder), "(folder)", "expected at least one .yaml file")
    document: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in files:
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
            problem = getattr(error, "problem", None) or str(error)
            raise CatalogError(str(path), where, f"YAML syntax error: {problem}") from None
        if content is None:
            continue
        if not isinstance(content, dict):
            raise CatalogError(str(path), "(top)", "expected a mapping with keys " + ", ".join(TOP_LEVEL_KEYS))
        for key, value in content.items():
            if key in document:
                raise CatalogError(
                    str(path), str(key), f"already defined in {origin[key]}; define each key in one file"
                )
            document[key] = value
            origin[key] = str(path)
    return document, origin


def key_path(parts: Iterable[Any]) -> str:
    """A schema error's path as the catalog writes keys: ``teams.a.quotas.cpu``, ``profiles[0].slug``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def describe_error(error: jsonschema.ValidationError) -> str:
    """Say what was expected, in words, for one schema violation."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if allowed:
            return f"unknown key {', '.join(map(repr, extra))}; expected one of: {', '.join(allowed)}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    expected = error.schema.get("expected")
    if not expected and error.validator == "enum":
        expected = "one of: " + ", ".join(map(str, error.validator_value))
    if expected:
        return f"expected {expected}, got {error.instance!r}"
    return error.message


def _validate_schema(document: dict[str, Any], origin: dict[str, str]) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(
        validator.iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if not errors:
        return
    error = errors[0]
    # Descend into "anyOf"-like wrappers so the message names the innermost key.
    while error.context:
        error = min(error.context, key=lambda e: -len(e.absolute_path))
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and not path:
        extra = sorted(set(document) - set(TOP_LEVEL_KEYS))
        file = origin.get(extra[0], next(iter(origin.values()), "(catalog)"))
        raise CatalogError(file, extra[0], f"unknown key; expected one of: {', '.join(TOP_LEVEL_KEYS)}")
    file = (
        origin.get(path[0], next(iter(origin.values()), "(catalog)"))
        if path
        else next(iter(origin.values()), "(catalog)")
    )
    raise CatalogError(file, key_path(path), describe_error(error))


def _check_slugs(slugs: list[str], profiles: Mapping[str, Any], file: str, where: str) -> None:
    """Every one of ``slugs`` names a profile; else the error names the first that does not."""
    for index, slug in enumerate(slugs):
        if slug not in profiles:
            raise CatalogError(
                file, f"{where}[{index}]", f"unknown profile slug {slug!r}; expected one of: {', '.join(profiles)}"
            )


def _check_resources(settings: Mapping[str, Any], file: str, where: str) -> None:
    cpu = settings.get("cpu") or {}
    if "guarantee" in cpu and "limit" in cpu and cpu["limit"] < cpu["guarantee"]:
        raise CatalogError(
            file, f"{where}.cpu.limit", f"expected at least the guarantee ({cpu['guarantee']}), got {cpu['limit']}"
        )
    memory = settings.get("memory") or {}
    if (
        "guarantee" in memory
        and "limit" in memory
        and parse_quantity(memory["limit"]) < parse_quantity(memory["guarantee"])
    ):
        raise CatalogError(
            file,
            f"{where}.memory.limit",
            f"expected at least the guarantee ({memory['guarantee']}), got {memory['limit']!r}",
        )


def _build(document: dict[str, Any], origin: dict[str, str], source: str) -> Catalog:
    profiles_file = origin.get("profiles", source)
    profiles: dict[str, Profile] = {}
    for index, raw in enumerate(document["profiles"]):
        where = f"profiles[{index}]"
        slug = raw["slug"]
        if slug in profiles:
            raise CatalogError(profiles_file, f"{where}.slug", f"expected a unique slug, got {slug!r} twice")
        settings = _merge(PROFILE_DEFAULTS, raw)
        if settings["default_kernel"] is None:
            settings["default_kernel"] = raw["kernels"][0]
        if settings["default_kernel"] not in raw["kernels"]:
            raise CatalogError(
                profiles_file,
                f"{where}.default_kernel",
                f"expected one of the profile's kernels {raw['kernels']}, got {settings['default_kernel']!r}",
            )
        _check_resources(settings, profiles_file, where)
        for option_name, option in settings["options"].items():
            for choice_name, choice in option["choices"].items():
                merged = _merge(settings, choice.get("override", {}))
                _check_resources(merged, profiles_file, f"{where}.options.{option_name}.choices.{choice_name}.override")
        profiles[slug] = Profile(slug, raw["display_name"], raw["image"], tuple(raw["kernels"]), settings)

    teams_file = origin.get("teams", source)
    teams: dict[str, Team] = {}
    for name, raw in document["teams"].items():
        _check_slugs(raw["profiles"], profiles, teams_file, f"teams.{name}.profiles")
        teams[name] = Team(
            name,
            raw.get("display_name", name),
            tuple(raw["profiles"]),
            dict(raw.get("quotas", {})),
            dict(raw.get("release", {})),
            raw.get("archived") or None,
        )

    role_file = origin.get("role_groups", source)
    role_groups: dict[str, RoleGroup] = {}
    for name, raw in (document.get("role_groups") or {}).items():
        if name in teams:
            raise CatalogError(role_file, f"role_groups.{name}", "expected a name that is not also a team")
        _check_slugs(raw.get("profiles") or [], profiles, role_file, f"role_groups.{name}.profiles")
        role_groups[name] = RoleGroup(
            name, raw.get("display_name", name), raw["role"], tuple(raw.get("profiles") or ())
        )
    for name in document.get("consumers") or {}:
        if name in RESERVED_SERVICE_NAMES:
            raise CatalogError(
                origin.get("consumers", source),
                f"consumers.{name}",
                f"expected a name other than the platform's own services ({', '.join(RESERVED_SERVICE_NAMES)})",
            )
    consumers = {
        name: Consumer(name, raw.get("display_name", name), tuple(raw["models"]))
        for name, raw in (document.get("consumers") or {}).items()
    }
    return Catalog(profiles, teams, role_groups, source=source, consumers=consumers)


# --- resolution ------------------------------------------------------------


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: dicts merge key by key, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def allowed_profiles(catalog: Catalog, entitlements: Iterable[str], gpu_available: bool) -> list[Profile]:
    """The profiles, in catalog order, among ``entitlements`` that this machine can run."""
    wanted = set(entitlements)
    return [p for slug, p in catalog.profiles.items() if slug in wanted and (gpu_available or p.gpu == 0)]


def choose_choices(profile: Profile, choices: Mapping[str, str] | None) -> dict[str, str]:
    """Validate option choices against the profile; missing ones take their default."""
    chosen = profile.default_choices()
    for name, value in (choices or {}).items():
        if name not in profile.options:
            raise ValueError(f"profile '{profile.slug}' has no option '{name}'")
        if value not in profile.options[name]["choices"]:
            known = ", ".join(profile.options[name]["choices"])
            raise ValueError(
                f"option '{name}' of profile '{profile.slug}' has no choice '{value}'; expected one of: {known}"
            )
        chosen[name] = value
    return chosen


def resolve(
    catalog: Catalog,
    entitlements: Iterable[str],
    slug: str,
    choices: Mapping[str, str] | None = None,
    gpu_available: bool = True,
) -> SpawnSettings:
    """Spawn settings for ``slug`` if ``entitlements`` (the user's allowed slugs) include it.

    Raises :class:`ProfileNotAllowed` for an unknown, forbidden or unrunnable
    profile and :class:`ValueError` for an unknown option or choice.
    """
    profile = catalog.profile(slug)
    if slug not in set(entitlements):
        raise ProfileNotAllowed(slug, "is not allowed for your teams")
    if profile.gpu and not gpu_available:
        raise ProfileNotAllowed(slug, "needs a GPU and this platform has none")
    chosen = choose_choices(profile, choices)
    settings = dict(profile.settings)
    for name, value in chosen.items():
        settings = _merge(settings, profile.options[name]["choices"][value].get("override", {}))
    cpu, memory = settings["cpu"], settings["memory"]
    return SpawnSettings(
        profile=slug,
        display_name=profile.display_name,
        image=settings["image"],
        kernels=tuple(settings["kernels"]),
        default_kernel=settings["default_kernel"],
        cpu_guarantee=cpu.get("guarantee"),
        cpu_limit=cpu.get("limit"),
        mem_guarantee=memory.get("guarantee"),
        mem_limit=memory.get("limit"),
        gpu=int(settings["gpu"]),
        node_selector=dict(settings["node_selector"]),
        tolerations=tuple(settings["tolerations"]),
        environment=dict(settings["environment"]),
        choices=chosen,
    )
