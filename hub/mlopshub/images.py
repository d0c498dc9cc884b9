"""Image references from ``images/tags.yaml``: the one place image names and the tag are set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .settings import REPO_ROOT

TAGS_FILE = REPO_ROOT / "images" / "tags.yaml"


def load(path: Path = TAGS_FILE) -> dict[str, Any]:
    """The tags file as a mapping."""
    return yaml.safe_load(path.read_text())


def image_ref(key: str, path: Path = TAGS_FILE) -> str:
    """``<registry>/<name>:<tag>`` for an image key such as ``python`` or ``r-gpu``."""
    tags = load(path)
    try:
        image = tags["images"][key]
    except KeyError:
        known = ", ".join(tags["images"])
        raise KeyError(f"unknown image key {key!r} in {path}; expected one of: {known}") from None
    return f"{tags['registry']}/{image['name']}:{tags['tag']}"


def all_refs(path: Path = TAGS_FILE) -> dict[str, str]:
    """Every image key and its reference."""
    return {key: image_ref(key, path) for key in load(path)["images"]}
