"""The team's data as the gates see it: the hold-out set, and whether training data is in the team's remote.

The catalog gives ``holdout: {path, target, rev, repo}`` per team
(``teams.<team>.release``). :func:`dvc_holdout_loader` reads the file with
``dvc.api`` from the team's project (``repo``; a git URL or folder) at
``rev``, and records the version the metrics were measured on: the DVC hash
of the file where DVC can say it, else the git revision. Without a ``repo``
the runner reads it from the project the model was trained in (the run's
``mlopshub.project`` tag), at the catalog's ``rev``.

:func:`local_remote_check` answers the lineage gate's "is this data version
pushed?" for one-machine mode, where each team's DVC remote is a folder.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mlopshub.pipeline.gates import HoldOut
from mlopshub.serving.batch import trust_project_owners

#: ``load(team, holdout_spec) -> HoldOut``; the spec is the catalog's ``release.holdout`` of the team.
HoldoutLoader = Callable[[str, Mapping[str, Any]], HoldOut]


def dvc_holdout_loader() -> HoldoutLoader:
    """A :data:`HoldoutLoader` reading with ``dvc.api`` from the spec's ``repo`` (the runner fills in the run's
    project when the catalog names none)."""

    def load(team: str, spec: Mapping[str, Any]) -> HoldOut:
        import dvc.api

        trust_project_owners()
        path, target = str(spec["path"]), str(spec["target"])
        repo = spec.get("repo")
        if not repo:
            raise ValueError(
                f"no project to read the hold-out set {path} from: train in a DVC project (the sidebar's data "
                f"versioning), or name teams.{team}.release.holdout.repo in the catalog"
            )
        rev = spec.get("rev")
        with dvc.api.open(path, repo=repo, rev=rev, mode="r") as stream:
            frame = pd.read_csv(io.StringIO(stream.read()))
        return HoldOut(frame=frame, target=target, path=path, version=_version(path, repo, rev))

    return load


def _version(path: str, repo: str | None, rev: str | None) -> str:
    """The DVC content hash of ``path`` (the last part of its remote URL), else ``rev``, else 'workspace'."""
    import dvc.api

    try:
        url = dvc.api.get_url(path, repo=repo, rev=rev)
    except Exception:  # not tracked by DVC or no remote configured: the git revision is what we know
        return rev or "workspace"
    digest = url.rstrip("/").split("/")
    return "".join(digest[-2:]) if len(digest) >= 2 and len(digest[-2]) == 2 else digest[-1]


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

        def stored(digest: str) -> Path:
            return remote / "files" / "md5" / digest[:2] / digest[2:]

        def pushed(path: str, digest: str) -> bool:
            listing = stored(digest)
            if not listing.is_file():
                return False
            if not digest.endswith(".dir"):
                return True
            entries = json.loads(listing.read_text())
            return all(stored(str(entry["md5"])).is_file() for entry in entries)

        return pushed

    return for_team
