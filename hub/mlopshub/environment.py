"""The workspace environment manifest (``environment.yml``) as install lists.

One-machine mode has no conda: the ``pip:`` part installs into the platform's
virtualenv, and the conda-only R packages map to Debian packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .settings import REPO_ROOT

MANIFEST = REPO_ROOT / "environment.yml"

#: conda-forge package -> the Debian package that gives it on one machine.
DEBIAN_EQUIVALENTS = {
    "r-base": "r-base-core",
    "r-irkernel": "r-cran-irkernel",
    "r-reticulate": "r-cran-reticulate",
    "r-jsonlite": "r-cran-jsonlite",
}


def load(path: Path = MANIFEST) -> dict[str, Any]:
    """The manifest as a mapping."""
    return yaml.safe_load(path.read_text())


def pip_requirements(path: Path = MANIFEST) -> list[str]:
    """The pinned pip requirements of the manifest."""
    for entry in load(path)["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return list(entry["pip"])
    return []


def conda_packages(path: Path = MANIFEST) -> dict[str, str]:
    """Conda package name -> version spec ('' when unpinned)."""
    packages = {}
    for entry in load(path)["dependencies"]:
        if isinstance(entry, str):
            name, _, version = entry.partition("=")
            packages[name] = version
    return packages


def debian_packages(path: Path = MANIFEST) -> list[str]:
    """Debian packages that stand in for the manifest's conda-only packages."""
    return [DEBIAN_EQUIVALENTS[name] for name in conda_packages(path) if name in DEBIAN_EQUIVALENTS]
