"""environment.yml as one workspace image installs it (runs inside the image build).

Every workspace image installs the same manifest, environment.yml. The Python
images leave out its R part (``--with-r false``), so that they do not carry
R and pip packages that need it; the R images keep all of it. The GPU images
also get a pip constraints file made from the manifest's pins, so that the
GPU extras (images/gpu-extras.txt) cannot move a package the manifest pins.

Usage, from a Dockerfile:

    python workspace_manifest.py environment.yml --with-r false \
        --env-out workspace.yml [--constraints-out constraints.txt]

Runs with the base image's Python and PyYAML (Jupyter Server depends on it);
nothing here imports mlopshub, which is not installed in workspace images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

#: pip packages that need R at install or import time: they go with the R part.
R_PIP_PACKAGES = frozenset({"rpy2"})

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def package_name(entry: str) -> str:
    """The normalised package name at the start of a conda or pip entry ('' for options and paths)."""
    match = _NAME.match(entry)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def is_r_conda_package(entry: str) -> bool:
    """Whether a conda entry is part of R: conda-forge names R and its packages ``r-*``."""
    return package_name(entry).startswith("r-")


def without_r(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without its R part: conda ``r-*`` packages and pip packages that need R."""
    dependencies: list[Any] = []
    for entry in manifest.get("dependencies", []):
        if isinstance(entry, dict) and "pip" in entry:
            pip = [line for line in entry["pip"] if package_name(line) not in R_PIP_PACKAGES]
            dependencies.append({**entry, "pip": pip})
        elif isinstance(entry, str) and is_r_conda_package(entry):
            continue
        else:
            dependencies.append(entry)
    return {**manifest, "dependencies": dependencies}


def pip_constraints(manifest: dict[str, Any]) -> list[str]:
    """The manifest's pinned pip requirements as constraint lines (no extras, no paths, no options)."""
    lines = []
    for entry in manifest.get("dependencies", []):
        if not (isinstance(entry, dict) and "pip" in entry):
            continue
        for line in entry["pip"]:
            # pip refuses extras in a constraints file: keep the name and the version specifier.
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([<>=!~][^;#]*)?(;[^#]*)?", line)
            if not match or not match.group(3) or "://" in line:
                continue
            marker = match.group(4) or ""
            lines.append(f"{match.group(1)}{match.group(3).strip()}{marker.rstrip()}")
    return lines


def parse_bool(text: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no) as a build argument gives them."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    """Write the manifest this image installs and, when asked, the pip constraints."""
    parser = argparse.ArgumentParser(description="Write environment.yml as one workspace image installs it.")
    parser.add_argument("manifest", type=Path, help="environment.yml")
    parser.add_argument("--with-r", type=parse_bool, required=True, help="keep the R part (true/false)")
    parser.add_argument("--env-out", type=Path, required=True, help="where to write the conda environment")
    parser.add_argument("--constraints-out", type=Path, help="where to write pip constraints from the pins")
    args = parser.parse_args(argv)

    manifest = yaml.safe_load(args.manifest.read_text())
    selected = manifest if args.with_r else without_r(manifest)
    args.env_out.write_text(yaml.safe_dump(selected, sort_keys=False))
    if args.constraints_out:
        args.constraints_out.write_text("".join(f"{line}\n" for line in pip_constraints(selected)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
