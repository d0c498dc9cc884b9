"""Do the manifest, the images, the catalog and the Helm values agree?

Workspace images are built from ``environment.yml`` and tagged from
``hub/mlopshub/image_tags.yaml``; the catalog (``profiles/``) names images by key and the
Helm values (``helm-values/``) name them by reference. Nothing here builds or
pulls an image: these functions read the files and return one line per
disagreement, naming the file, the thing and the fix.
``python -m mlopshub.imagecheck [--fix] [repo]`` prints them (``images/build.sh``
runs it before building); ``--fix`` first rewrites the Dockerfiles' tag and
manifest-sha256 build-argument defaults, the one mechanical fix.

Known incompatible pins are a table, :data:`CONFLICTS`: a new rule is one line.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import images
from .settings import require_checkout

#: Build arguments that carry hub/mlopshub/image_tags.yaml's ``tag`` (workspace images use
#: the first, the hub image the second).
TAG_ARGS = ("MLOPSHUB_TAG",)
#: Build argument that carries the sha256 of environment.yml.
ENVIRONMENT_ARG = "MLOPSHUB_ENVIRONMENT_SHA256"
#: Build argument that says whether an image installs the manifest's R part.
WITH_R_ARG = "WITH_R"
VERSION_LABEL = "org.opencontainers.image.version"
ENVIRONMENT_LABEL = "io.mlopshub.environment.sha256"
#: The kernel that only an image with the manifest's R part has.
R_KERNEL = "ir"


@dataclass(frozen=True)
class Conflict:
    """``package`` at ``versions`` does not work when the manifest forces ``with_package`` into ``with_versions``."""

    package: str
    versions: str
    with_package: str
    with_versions: str
    advice: str


#: Known incompatible pins. A rule fires when every version of ``with_package``
#: that the manifest allows is in ``with_versions`` and some allowed version of
#: ``package`` is in ``versions`` (an unpinned package allows every version).
CONFLICTS: tuple[Conflict, ...] = (
    Conflict("rpy2", ">=3.6", "r-base", "<4.3", "rpy2 3.6 needs R >= 4.3; pin rpy2<3.6 for r-base=4.2"),
    Conflict("mlflow", ">=3.17", "python", "<3.10", "mlflow 3.17 needs Python >= 3.10; pin python=3.11"),
)


# --- Dockerfiles ---------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction: continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        result.append((keyword.upper(), arguments.strip()))
    return result


def dockerfile_args(path: Path) -> dict[str, str | None]:
    """Each build argument of a Dockerfile and its default (None when it has none)."""
    args: dict[str, str | None] = {}
    for keyword, arguments in dockerfile_instructions(path.read_text()):
        if keyword == "ARG":
            name, sep, default = arguments.partition("=")
            args[name.strip()] = default.strip().strip("\"'") if sep else None
    return args


def _substitute(value: str, values: dict[str, str | None]) -> str:
    def replace(match: re.Match[str]) -> str:
        found = values.get(match.group(1) or match.group(2))
        return match.group(0) if found is None else found

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, value)


def _label_pairs(arguments: str) -> Iterator[tuple[str, str]]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:  # the old one-pair form: LABEL key value
        yield words[0], " ".join(words[1:])
        return
    for word in words:
        key, _, value = word.partition("=")
        yield key, value


def dockerfile_labels(path: Path) -> dict[str, str]:
    """The labels a Dockerfile sets, with ``${ARG}`` replaced by the argument's default.

    A label whose argument has no default keeps the ``${ARG}`` text; a later
    LABEL with the same key wins, as in Docker.
    """
    defaults = dockerfile_args(path)
    labels: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(path.read_text()):
        if keyword == "LABEL":
            for key, value in _label_pairs(arguments):
                labels[key] = _substitute(value, defaults)
    return labels


def copies_manifest(path: Path) -> bool:
    """Whether a Dockerfile COPYs (or ADDs) environment.yml, i.e. is a workspace image."""
    for keyword, arguments in dockerfile_instructions(path.read_text()):
        words = [word for word in arguments.split() if not word.startswith("--")]
        if keyword in ("COPY", "ADD") and any(Path(word).name == "environment.yml" for word in words[:-1]):
            return True
    return False


def final_user(path: Path) -> str | None:
    """The last USER of a Dockerfile's final stage (None when that stage sets none)."""
    user = None
    for keyword, arguments in dockerfile_instructions(path.read_text()):
        if keyword == "FROM":
            user = None
        elif keyword == "USER":
            user = arguments
    return user


# --- the manifest --------------------------------------------------------------


def manifest_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as ``sha256sum`` prints it: what an image's label records."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _conda_specifier(spec: str) -> SpecifierSet | None:
    """A conda version spec as PEP 440 (``=4.2`` means 4.2.*); None when it has no such form."""
    spec = spec.strip().replace(" ", "")
    if not spec:
        return SpecifierSet()
    if spec[0].isdigit():  # "name 4.2.*" (space form): fuzzy, like "=4.2"
        spec = "=" + spec
    if spec.startswith("=") and not spec.startswith("=="):
        version = spec[1:].split("=", 1)[0]  # drop a build string: =4.2.3=h1234
        spec = f"=={version}" if version.endswith(".*") else f"=={version}.*"
    try:
        return SpecifierSet(spec)
    except InvalidSpecifier:
        return None


def _conda_entry(entry: str) -> tuple[str, SpecifierSet | None]:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", entry)
    if not match:
        return "", None
    return canonicalize_name(match.group(1)), _conda_specifier(match.group(2))


def _pip_entry(line: str) -> tuple[str, SpecifierSet | None]:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:  # options, paths and URLs pin nothing we can compare
        return "", None
    return canonicalize_name(requirement.name), requirement.specifier


def manifest_specifiers(path: Path) -> dict[str, SpecifierSet]:
    """Package name -> the versions environment.yml allows (conda and pip entries, conda's ``=`` as ``.*``)."""
    manifest = yaml.safe_load(path.read_text()) or {}
    entries: list[tuple[str, SpecifierSet | None]] = []
    for entry in manifest.get("dependencies", []):
        if isinstance(entry, dict):
            entries += [_pip_entry(str(line)) for line in entry.get("pip", [])]
        else:
            entries.append(_conda_entry(str(entry)))
    specifiers: dict[str, SpecifierSet] = {}
    for name, specifier in entries:
        if name and specifier is not None:
            specifiers[name] = specifiers.get(name, SpecifierSet()) & specifier
    return specifiers


def _boundaries(*specifier_sets: SpecifierSet) -> list[Version]:
    """Versions either side of every bound: enough to tell whether version ranges meet."""
    points = {Version("0"), Version("999999")}
    for specifier_set in specifier_sets:
        for specifier in specifier_set:
            try:
                bound = Version(specifier.version.removesuffix(".*"))
            except InvalidVersion:
                continue
            release = list(bound.release)
            while len(release) > 1 and release[-1] == 0:
                release.pop()
            points.add(bound)
            points.add(Version(".".join(map(str, [*bound.release, 0, 0, 1]))))
            if release[-1] > 0:
                points.add(Version(".".join(map(str, [*release[:-1], release[-1] - 1, 999999]))))
    return sorted(points)


def _conflict_applies(rule: Conflict, specifiers: dict[str, SpecifierSet]) -> bool:
    package, other = canonicalize_name(rule.package), canonicalize_name(rule.with_package)
    if package not in specifiers or other not in specifiers:
        return False
    bad, bad_other = SpecifierSet(rule.versions), SpecifierSet(rule.with_versions)
    points = _boundaries(specifiers[package], specifiers[other], bad, bad_other)
    allowed_other = [v for v in points if specifiers[other].contains(v, prereleases=True)]
    other_forced = bool(allowed_other) and all(bad_other.contains(v, prereleases=True) for v in allowed_other)
    package_may_be_bad = any(
        specifiers[package].contains(v, prereleases=True) and bad.contains(v, prereleases=True) for v in points
    )
    return other_forced and package_may_be_bad


def _shown(specifier: SpecifierSet) -> str:
    return str(specifier) or "(unpinned)"


def manifest_conflicts(environment_yml: Path) -> list[str]:
    """One line per :data:`CONFLICTS` rule that environment.yml's pins break, naming the package."""
    specifiers = manifest_specifiers(environment_yml)
    problems = []
    for rule in CONFLICTS:
        if _conflict_applies(rule, specifiers):
            package, other = canonicalize_name(rule.package), canonicalize_name(rule.with_package)
            problems.append(
                f"{environment_yml.name}: {rule.package} {_shown(specifiers[package])} with "
                f"{rule.with_package} {_shown(specifiers[other])}: {rule.advice}"
            )
    return problems


# --- consistency across files ----------------------------------------------------


def _relative(path: Path, repo: Path) -> str:
    try:
        return str(path.relative_to(repo))
    except ValueError:
        return str(path)


def _arg_problems(where: str, args: dict[str, str | None], names: Sequence[str], expected: str, what: str) -> list[str]:
    declared = [name for name in names if name in args]
    if not declared:
        return [f"{where}: no build argument {names[0]} ({what}); add ARG {names[0]}={expected}"]
    default = args[declared[0]]
    if default != expected:
        name = declared[0]
        return [f"{where}: ARG {name} defaults to {default!r}, but {what} is {expected!r}; set ARG {name}={expected}"]
    return []


def _label_problems(where: str, labels: dict[str, str], label: str, arg: str, expected: str) -> list[str]:
    if label not in labels:
        return [f'{where}: no label {label}; add LABEL {label}="${{{arg}}}"']
    if labels[label] != expected:
        found = labels[label]
        return [f'{where}: label {label} is {found!r}, not the build argument {arg}; set LABEL {label}="${{{arg}}}"']
    return []


def _dockerfile_problems(repo: Path, key: str, dockerfile: Path, tag: str, sha: str) -> list[str]:
    """What disagrees between one image's Dockerfile and hub/mlopshub/image_tags.yaml / environment.yml."""
    where = _relative(dockerfile, repo)
    if not dockerfile.is_file():
        return [
            f"hub/mlopshub/image_tags.yaml: image {key!r} names {where}, which does not exist; "
            "create it or fix `dockerfile`"
        ]
    args, labels = dockerfile_args(dockerfile), dockerfile_labels(dockerfile)
    problems = _arg_problems(where, args, TAG_ARGS, tag, "hub/mlopshub/image_tags.yaml's tag")
    if not problems:
        tag_arg = next(name for name in TAG_ARGS if name in args)
        problems += _label_problems(where, labels, VERSION_LABEL, tag_arg, tag)
    if copies_manifest(dockerfile):
        env_problems = _arg_problems(where, args, [ENVIRONMENT_ARG], sha, "the sha256 of environment.yml")
        if not env_problems:
            env_problems = _label_problems(where, labels, ENVIRONMENT_LABEL, ENVIRONMENT_ARG, sha)
        problems += env_problems
    return problems


def _profile_image_keys(profile: dict[str, Any]) -> list[str]:
    """The image keys a profile can start: its own and any an option's choice overrides it with."""
    keys = [profile["image"]] if "image" in profile else []
    for option in (profile.get("options") or {}).values():
        for choice in (option.get("choices") or {}).values():
            image = (choice.get("override") or {}).get("image")
            if image:
                keys.append(image)
    return keys


def _load_profiles(repo: Path) -> list[dict[str, Any]]:
    path = repo / "profiles" / "profiles.yaml"
    if not path.is_file():
        return []
    return list((yaml.safe_load(path.read_text()) or {}).get("profiles") or [])


def _catalog_problems(profiles: list[dict[str, Any]], tags: dict[str, Any], repo: Path) -> list[str]:
    """Profiles whose image key hub/mlopshub/image_tags.yaml lacks, or whose kernels their image cannot have."""
    known = tags.get("images") or {}
    problems = []
    for profile in profiles:
        slug = profile.get("slug", "?")
        for key in _profile_image_keys(profile):
            if key not in known:
                problems.append(
                    f"profiles/profiles.yaml: profile {slug!r} uses image {key!r}, which hub/mlopshub/image_tags.yaml "
                    "does not "
                    f"define (known: {', '.join(known)}); add it under `images:` or use a known key"
                )
                continue
            dockerfile = repo / known[key]["dockerfile"]
            if R_KERNEL in (profile.get("kernels") or []) and dockerfile.is_file():
                with_r = dockerfile_args(dockerfile).get(WITH_R_ARG)
                if with_r is not None and with_r.lower() != "true":
                    problems.append(
                        f"profiles/profiles.yaml: profile {slug!r} offers kernel {R_KERNEL!r}, but "
                        f"{_relative(dockerfile, repo)} installs no R (ARG {WITH_R_ARG}={with_r}); set it to true"
                    )
    return problems


def _image_references(node: Any, registry: str, where: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, reference)`` for every image of ``registry`` in a YAML document.

    An image is either a string ``<registry>/<name>:<tag>`` or a mapping with
    ``name`` or ``repository`` under the registry and a ``tag`` beside it.
    """
    prefix = registry.rstrip("/") + "/"
    if isinstance(node, dict):
        repository = node.get("name", node.get("repository"))
        if isinstance(repository, str) and repository.startswith(prefix) and "tag" in node:
            yield where, f"{repository}:{node['tag']}"
            return
        for key, value in node.items():
            yield from _image_references(value, registry, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _image_references(value, registry, f"{where}[{index}]")
    elif isinstance(node, str) and node.startswith(prefix):
        yield where, node


def _expected_ref(ref: str, refs: dict[str, str]) -> str | None:
    repository = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    return next((r for r in refs.values() if r.rsplit(":", 1)[0] == repository), None)


def _helm_file_problems(path: Path, repo: Path, registry: str, refs: dict[str, str]) -> list[str]:
    """Every image of our registry in one values or manifest file must be a reference from image_tags.yaml."""
    where = _relative(path, repo)
    problems = []
    for document in yaml.safe_load_all(path.read_text()):
        for key_path, ref in _image_references(document, registry):
            if ref in refs.values():
                continue
            expected = _expected_ref(ref, refs)
            fix = f"make it {expected!r}" if expected else "use an image from hub/mlopshub/image_tags.yaml"
            if "generated" in path.relative_to(repo).parts:
                fix += " (run `mlopshub helm generate`)"
            problems.append(f"{where}: {key_path} is {ref!r}, which hub/mlopshub/image_tags.yaml does not give; {fix}")
    return problems


def _hub_image_problems(values_file: Path, registry: str, hub_ref: str) -> list[str]:
    """helm-values/jupyterhub.yaml must run the hub image from hub/mlopshub/image_tags.yaml."""
    image = ((yaml.safe_load(values_file.read_text()) or {}).get("hub") or {}).get("image") or {}
    name, tag = image.get("name"), image.get("tag")
    if f"{name}:{tag}" == hub_ref or str(name).startswith(registry.rstrip("/") + "/"):
        return []  # a stale reference into our registry is reported with every other one
    name_now, tag_now = hub_ref.rsplit(":", 1)
    shown = f"{name}:{tag}" if image else "not set"
    return [f"helm-values/jupyterhub.yaml: hub.image is {shown}; set name {name_now!r} and tag {tag_now!r}"]


def _prepull_problems(generated: Path, refs: dict[str, str], profiles: list[dict[str, Any]]) -> list[str]:
    """Every image a profile can start must be in the generated prePuller.extraImages."""
    extra = ((yaml.safe_load(generated.read_text()) or {}).get("prePuller") or {}).get("extraImages") or {}
    pulled = {f"{image.get('name')}:{image.get('tag')}" for image in extra.values() if isinstance(image, dict)}
    problems = []
    for profile in profiles:
        for key in _profile_image_keys(profile):
            if key in refs and refs[key] not in pulled:
                problems.append(
                    f"helm-values/generated/catalog.yaml: {refs[key]!r} (profile {profile.get('slug')!r}) is not "
                    "in prePuller.extraImages; run `mlopshub helm generate`"
                )
    return problems


def _helm_problems(repo: Path, registry: str, refs: dict[str, str], profiles: list[dict[str, Any]]) -> list[str]:
    """helm-values/ against hub/mlopshub/image_tags.yaml: stale references, the hub image, images not pre-pulled."""
    values_dir = repo / "helm-values"
    if not values_dir.is_dir():
        return []
    problems = []
    for path in sorted([*values_dir.rglob("*.yaml"), *values_dir.rglob("*.yml")]):
        problems += _helm_file_problems(path, repo, registry, refs)
    if (values_dir / "jupyterhub.yaml").is_file() and "hub" in refs:
        problems += _hub_image_problems(values_dir / "jupyterhub.yaml", registry, refs["hub"])
    if (values_dir / "generated" / "catalog.yaml").is_file():
        problems += _prepull_problems(values_dir / "generated" / "catalog.yaml", refs, profiles)
    return problems


def consistency_problems(repo_root: Path) -> list[str]:
    """One line per disagreement between the manifest, the Dockerfiles, the catalog and the Helm values.

    Checks: environment.yml's pins against :data:`CONFLICTS`; each image's
    Dockerfile build-argument defaults and labels against hub/mlopshub/image_tags.yaml's
    ``tag`` and environment.yml's sha256; every profile's image key against
    hub/mlopshub/image_tags.yaml (and an ``ir`` kernel against an image with R); every
    image of the registry in ``helm-values/`` against the references
    hub/mlopshub/image_tags.yaml gives, the hub image set in helm-values/jupyterhub.yaml,
    and every profile's image pre-pulled. Files that do not exist yet
    (profiles, Helm values) are skipped.
    """
    repo = Path(repo_root)
    tags_file, manifest = repo / images.TAGS_IN_CHECKOUT, repo / "environment.yml"
    if not tags_file.is_file():
        return ["hub/mlopshub/image_tags.yaml is missing: it names every image and the tag; restore it"]
    if not manifest.is_file():
        return ["environment.yml is missing: every workspace image installs it; restore it"]
    tags = images.load(tags_file)
    refs = images.all_refs(tags_file)
    tag, sha = str(tags["tag"]), manifest_sha256(manifest)

    problems = manifest_conflicts(manifest)
    for key, image in (tags.get("images") or {}).items():
        problems += _dockerfile_problems(repo, key, repo / image["dockerfile"], tag, sha)
    profiles = _load_profiles(repo)
    problems += _catalog_problems(profiles, tags, repo)
    problems += _helm_problems(repo, str(tags["registry"]), refs, profiles)
    return problems


def with_arg_defaults(text: str, defaults: dict[str, str]) -> str:
    """Dockerfile ``text`` with the default of each ``ARG name=...`` in ``defaults`` replaced; the rest kept."""

    def replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}{defaults[match.group(2)]}"

    names = "|".join(re.escape(name) for name in defaults)
    return re.sub(rf"^(\s*ARG\s+({names})=)\S*[ \t]*$", replace, text, flags=re.MULTILINE) if names else text


def synced_arg_defaults(repo_root: Path) -> dict[Path, str]:
    """Each Dockerfile in image_tags.yaml whose tag or manifest-sha default is stale, with its text fixed."""
    repo = Path(repo_root)
    tags_file = repo / images.TAGS_IN_CHECKOUT
    tag, sha = str(images.load(tags_file)["tag"]), manifest_sha256(repo / "environment.yml")
    changed = {}
    for image in images.load(tags_file)["images"].values():
        dockerfile = repo / image["dockerfile"]
        if not dockerfile.is_file():
            continue
        defaults = {name: tag for name in TAG_ARGS}
        if copies_manifest(dockerfile):
            defaults[ENVIRONMENT_ARG] = sha
        text = dockerfile.read_text()
        fixed = with_arg_defaults(text, defaults)
        if fixed != text:
            changed[dockerfile] = fixed
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Print the consistency problems of a repository (default: this one); exit 1 when there are any.

    ``--fix`` first rewrites the Dockerfiles' tag and manifest-sha256 build-argument
    defaults from hub/mlopshub/image_tags.yaml and environment.yml (the one mechanical fix).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    fix = "--fix" in args
    args = [arg for arg in args if arg != "--fix"]
    repo = Path(args[0]) if args else require_checkout("`mlopshub images check` (it reads the Dockerfiles)")
    if fix:
        for dockerfile, text in synced_arg_defaults(repo).items():
            dockerfile.write_text(text)
            print(f"updated the build-argument defaults in {_relative(dockerfile, repo)}")
    problems = consistency_problems(repo)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{repo}: images, environment.yml, profiles and helm-values agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
