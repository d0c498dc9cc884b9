"""User-given paths, resolved inside the server root (the user's home) and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadRequest


def resolve(root: Path, value: str) -> Path:
    """The real path of ``value`` (relative to ``root``, or absolute inside it).

    Symlinks are resolved before the check, so neither ``..`` nor a link can
    reach outside the root. ``root`` must already be a real path. The path
    need not exist.
    """
    if "\x00" in value:
        raise BadRequest(f"path {value!r} contains a NUL character")
    candidate = Path(value)
    real = Path(os.path.realpath(candidate if candidate.is_absolute() else root / candidate))
    if real != root and root not in real.parents:
        raise BadRequest(f"path '{value}' is outside the workspace; use a path inside your home folder")
    return real


def relative(root: Path, path: Path) -> str:
    """``path`` as the file browser shows it: relative to ``root``, POSIX separators, "" for the root."""
    rel = path.relative_to(root).as_posix()
    return "" if rel == "." else rel


def shown(root: Path, path: Path) -> str:
    """``path`` for a message: relative to the root, "." for the root itself."""
    return relative(root, path) or "."
