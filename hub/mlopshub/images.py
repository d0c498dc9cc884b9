"""Image references from ``hub/mlopshub/image_tags.yaml``: the one place image names and the tag are set.

The file is package data: the hub image carries the references of the workspace images it was released with,
so the spawn form and ``mlopshub profiles render`` need no checkout. ``images/build.sh`` and
``mlopshub images check`` read the same file from the checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TAGS_FILE = Path(__file__).resolve().with_name("image_tags.yaml")
#: Where :data:`TAGS_FILE` lies in a checkout of the repository (for the commands that check one).
TAGS_IN_CHECKOUT = Path("hub") / "mlopshub" / "image_tags.yaml"


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
