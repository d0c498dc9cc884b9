"""What is served is what was approved: the content digest of a model version's folder.

The pipeline records :func:`tree_digest` of its copy of a version when it
registers it (and repeats it in the approval's audit entry); every process
that loads that copy (a model server, the gates, a batch run) checks it again
with :func:`verify_tree` before it loads anything, and refuses on a mismatch.

The digest covers every file's path (relative, ``/``-separated) and bytes,
in sorted order, so renaming, adding, removing or editing a file changes it.
A model folder holds only folders and regular files: a symlink, a device or
a FIFO is refused rather than followed, since the folder came from a
workspace (through MLflow's artifact store) and is hostile input.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

#: Prefix of every digest, so a record says how it was computed.
ALGORITHM = "sha256"
_CHUNK = 1 << 20


class IntegrityError(RuntimeError):
    """A model folder is not the one that was recorded, or holds something that is not a plain file."""


def tree_digest(folder: str | Path) -> str:
    """``sha256:<hex>`` over the sorted relative paths and contents of every file under ``folder``.

    Refuses (:class:`IntegrityError`) a symlink or any entry that is not a
    folder or a regular file, and a ``folder`` that is itself a symlink.
    """
    root = Path(folder)
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        raise IntegrityError(f"model folder {root} does not exist") from None
    if not stat.S_ISDIR(top.st_mode):
        raise IntegrityError(f"model folder {root} is not a folder (a symlink or a file is refused)")
    digest = hashlib.sha256()
    for relative in _files(root):
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(_file_digest(root / relative) + b"\0")
    return f"{ALGORITHM}:{digest.hexdigest()}"


def verify_tree(folder: str | Path, expected: str) -> None:
    """Raise :class:`IntegrityError` unless ``folder``'s digest is ``expected``."""
    actual = tree_digest(folder)
    if actual != expected:
        raise IntegrityError(
            f"model folder {folder} has digest {actual}, but {expected} was recorded when the version was "
            "registered: the copy was changed after registration and is not served"
        )


def _files(root: Path) -> list[str]:
    found: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(root / relative if relative else root) as entries:
            for entry in entries:
                path = f"{relative}/{entry.name}" if relative else entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append(path)
                elif stat.S_ISREG(mode):
                    found.append(path)
                else:
                    kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                    raise IntegrityError(f"model folder {root} holds {path}, which is {kind}; it is refused")
    return sorted(found)


def _file_digest(path: Path) -> bytes:
    # O_NOFOLLOW: a file swapped for a symlink between the listing and the read is refused, not followed.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest().encode()
