"""Every third-party module the ``mlopshub`` package imports comes from a distribution pyproject.toml declares.

The hub image installs ``.[mlflow]`` and nothing else (images/hub/Dockerfile), so a package that only arrives
as a dependency of a dependency, or only in the developer's virtualenv (dvc did), breaks the hub there with
ModuleNotFoundError. The test walks every module's imports with ``ast`` (those inside functions too), adds the
modules the model servers' zygote imports by name (``serving.zygote.PRELOAD``), maps each top-level name to its
distributions with ``importlib.metadata.packages_distributions()`` and checks that one of them is declared in
``dependencies`` or an extra the hub image installs.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mlopshub.serving.zygote import PRELOAD

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hub" / "mlopshub"
#: The extras images/hub/Dockerfile installs (``pip install "/tmp/mlopshub[mlflow]"``).
HUB_IMAGE_EXTRAS = ("mlflow",)


def imported_top_levels(package: Path) -> dict[str, set[str]]:
    """Top-level module names imported anywhere in ``package`` (absolute imports), with the files importing each."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    for name in PRELOAD:
        found.setdefault(name.split(".")[0], set()).add("hub/mlopshub/serving/zygote.py (PRELOAD)")
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: files for name, files in found.items() if name not in sys.stdlib_module_names and name != "mlopshub"}


def declared_distributions() -> set[str]:
    """Canonical names of the distributions pyproject.toml declares for the hub image."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in HUB_IMAGE_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_the_walk_finds_imports_inside_functions():
    # dvc is imported only inside functions (serving/batch.py): the walk must see it, or the test proves nothing.
    found = imported_top_levels(PACKAGE)
    assert "hub/mlopshub/serving/batch.py" in found["dvc"]
    assert "yaml" in found and "os" not in third_party(found)


def test_every_third_party_import_of_the_package_is_declared_in_pyproject():
    distributions = packages_distributions()
    declared = declared_distributions()
    missing = []
    for name, files in sorted(third_party(imported_top_levels(PACKAGE)).items()):
        providers = {canonicalize_name(dist) for dist in distributions.get(name, [])}
        if not providers:
            missing.append(f"{name} (imported by {', '.join(sorted(files))}) is not installed here at all")
        elif not providers & declared:
            missing.append(
                f"{name} (imported by {', '.join(sorted(files))}): declare one of {', '.join(sorted(providers))} "
                "in pyproject.toml's dependencies or the mlflow extra"
            )
    assert not missing, "imports the hub image would not install:\n" + "\n".join(missing)
