"""The workspace environment manifest (``environment.yml``) as install lists.

One-machine mode has no conda: the ``pip:`` part installs into the platform's
virtualenv, and the conda-only R packages map to Debian packages.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .settings import REPO_ROOT, require_checkout

#: The checkout's manifest: the installed package (the hub image) has none, and needs none.
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
    if path == MANIFEST:
        require_checkout("the workspace environment (environment.yml)")
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


#: conda R package -> the R package name whose installed version stands for it.
R_PACKAGES = {"r-irkernel": "IRkernel", "r-reticulate": "reticulate", "r-jsonlite": "jsonlite"}


@dataclass(frozen=True)
class Drift:
    """A package whose installed version differs from the manifest's pin."""

    package: str
    pinned: str
    installed: str | None

    def __str__(self) -> str:
        return f"{self.package}: manifest pins {self.pinned}, installed {self.installed or 'nothing'}"


def _matches(pinned: str, installed: str) -> bool:
    """conda's ``=4.2`` pins a prefix (4.2.x); pip's ``==1.2.3`` pins exactly."""
    return installed == pinned or installed.startswith(pinned + ".")


def _r_version(package: str | None) -> str | None:
    expression = (
        "cat(R.version$major, R.version$minor, sep='.')"
        if package is None
        else (f"cat(as.character(packageVersion('{package}')))")
    )
    try:
        result = subprocess.run(["Rscript", "-e", expression], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def drift(path: Path = MANIFEST, r_version=_r_version) -> list[Drift]:
    """Every manifest package whose version here differs from its pin (pip exactly; R by prefix)."""
    found = []
    for requirement in pip_requirements(path):
        name, _, pinned = requirement.partition("==")
        try:
            installed: str | None = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            found.append(Drift(name, pinned, installed))
    for name, pinned in conda_packages(path).items():
        if name == "r-base" or name in R_PACKAGES:
            installed = r_version(None if name == "r-base" else R_PACKAGES[name])
            if pinned and (installed is None or not _matches(pinned, installed)):
                found.append(Drift(name, pinned, installed))
    return found
