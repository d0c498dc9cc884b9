"""The team's data as the gates see it: the hold-out set, and whether training data is in the team's remote.

The catalog gives ``holdout: {path, target, rev, repo}`` per team
(``teams.<team>.release``). :func:`dvc_holdout_loader` reads the file at
``rev`` from ``repo`` (a git URL or folder; without one, the project the
model was trained in, which the runner fills in) through a
:class:`~mlopshub.services.pipeline.projects.ProjectReader`: as the
publisher, from the publisher's own projects only (the spec carries
``publisher`` and ``team``). It records the version the metrics were
measured on: the file's DVC hash where DVC tracks it, else the git revision.

:func:`local_remote_check` answers the lineage gate's "is this data version
pushed?" for one-machine mode, where each team's DVC remote is a folder that
the team's members write: it reads it without following their symlinks.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlopshub.pipeline.gates import HoldOut

from .projects import ProjectReader

#: ``load(team, holdout_spec) -> HoldOut``; the spec is the catalog's ``release.holdout`` of the team,
#: with ``repo`` filled in and the release's ``publisher``.
HoldoutLoader = Callable[[str, Mapping[str, Any]], HoldOut]
#: A DVC 3 content hash as it names a file in a remote: 32 hex digits, ``.dir`` for a folder's listing.
DVC_HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
#: The largest folder listing the pushed check reads.
MAX_LISTING = 64 << 20


def dvc_holdout_loader(reader: ProjectReader) -> HoldoutLoader:
    """A :data:`HoldoutLoader` reading with ``reader``, as the release's publisher."""

    def load(team: str, spec: Mapping[str, Any]) -> HoldOut:
        path, target = str(spec["path"]), str(spec["target"])
        if not spec.get("repo"):
            raise ValueError(
                f"no project to read the hold-out set {path} from: train in a DVC project (the sidebar's data "
                f"versioning), or name teams.{team}.release.holdout.repo in the catalog"
            )
        project = reader.resolve(str(spec.get("publisher") or ""), str(spec["repo"]), team)
        data = reader.read(project, path, spec.get("rev"))
        return HoldOut(frame=data.frame(), target=target, path=path, version=data.version)

    return load


#: ``pushed(team) -> check(path, md5) -> bool``, or None when the team's remote cannot be checked from here.
PushedCheck = Callable[[str], Callable[[str, str], bool] | None]


def local_remote_check(remotes_dir: str | Path) -> PushedCheck:
    """Checks against the teams' DVC remote folders ``<remotes_dir>/<team>`` (DVC 3's ``files/md5`` layout).

    A folder dataset (hash ending ``.dir``) is pushed when its listing and
    every file in it are in the remote.
    """
    root = Path(remotes_dir)

    def for_team(team: str) -> Callable[[str, str], bool] | None:
        remote = root / team
        if not remote.is_dir():
            return None

        def pushed(path: str, digest: str) -> bool:
            if not DVC_HASH.match(digest):
                raise ValueError(f"{digest!r} recorded for {path} is not a DVC content hash")
            listing = _read_beneath(remote, digest, whole=digest.endswith(".dir"))
            if listing is None:
                return False
            if not digest.endswith(".dir"):
                return True
            entries = json.loads(listing)
            digests = [str(entry.get("md5", "")) for entry in entries if isinstance(entry, dict)]
            return len(digests) == len(entries) and all(
                DVC_HASH.match(d) and _read_beneath(remote, d, whole=False) is not None for d in digests
            )

        return pushed

    return for_team


def _read_beneath(remote: Path, digest: str, *, whole: bool) -> bytes | None:
    """``files/md5/<2>/<rest>`` of ``remote``: its bytes (``whole``) or b"" when it is a regular file; else None.

    Each folder is opened relative to the last with ``O_NOFOLLOW``: a member's
    symlink anywhere on the way is not followed, and counts as not pushed.
    """
    parts = ["files", "md5", digest[:2], digest[2:]]
    fds: list[int] = []
    try:
        fds.append(os.open(remote, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW))
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if not whole:
            return b""
        if info.st_size > MAX_LISTING:
            raise ValueError(f"the listing {digest} in the team's remote is larger than {MAX_LISTING} bytes")
        return os.read(fd, info.st_size + 1)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    finally:
        for fd in reversed(fds):
            os.close(fd)
