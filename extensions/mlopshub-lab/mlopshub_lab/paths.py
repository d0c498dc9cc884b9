"""User-given paths, resolved inside the server root (the user's home) and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadRequest

#: Longest file name and path the file system takes (bytes); longer ones are the caller's mistake, not ours.
NAME_MAX = 255
PATH_MAX = 4096


def resolve(root: Path, value: str) -> Path:
    """The real path of ``value`` (relative to ``root``, or absolute inside it).

    Symlinks are resolved before the check, so neither ``..`` nor a link can
    reach outside the root. ``root`` must already be a real path. The path
    need not exist.
    """
    if "\x00" in value:
        raise BadRequest(f"path {value!r} contains a NUL character")
    check_length(value)
    candidate = Path(value)
    real = Path(os.path.realpath(candidate if candidate.is_absolute() else root / candidate))
    if real != root and root not in real.parents:
        raise BadRequest(f"path '{value}' is outside the workspace; use a path inside your home folder")
    return real


def check_length(value: str) -> None:
    """400 naming ``value`` when it or one of its names is longer than the file system allows."""
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:
        raise BadRequest(f"path {value!r} is not a file name this system can store (invalid characters)") from None
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise BadRequest(
            f"path '{_short(value)}' has a name of {len(longest)} bytes; file names may have at most {NAME_MAX}"
        )
    if len(encoded) > PATH_MAX:
        raise BadRequest(f"path '{_short(value)}' is {len(encoded)} bytes long; paths may have at most {PATH_MAX}")


def _short(value: str, keep: int = 120) -> str:
    """``value`` for a message: the start and end of a very long one."""
    return value if len(value) <= 2 * keep else f"{value[:keep]}…{value[-keep:]}"


def relative(root: Path, path: Path) -> str:
    """``path`` as the file browser shows it: relative to ``root``, POSIX separators, "" for the root."""
    rel = path.relative_to(root).as_posix()
    return "" if rel == "." else rel


def shown(root: Path, path: Path) -> str:
    """``path`` for a message: relative to the root, "." for the root itself."""
    return relative(root, path) or "."
