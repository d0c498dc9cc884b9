"""Reading a team's hold-out set, at the DVC version the catalog names.

The catalog gives ``holdout: {path, target, rev, repo}`` per team
(``teams.<team>.release``). :func:`dvc_holdout_loader` reads the file with
``dvc.api`` from the team's project (``repo``; a git URL or folder) at
``rev``, and records the version the metrics were measured on: the DVC hash
of the file where DVC can say it, else the git revision.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from mlopshub.pipeline.gates import HoldOut

#: ``load(team, holdout_spec) -> HoldOut``; the spec is the catalog's ``release.holdout`` of the team.
HoldoutLoader = Callable[[str, Mapping[str, Any]], HoldOut]


def dvc_holdout_loader(default_repo: Callable[[str], str | None] = lambda team: None) -> HoldoutLoader:
    """A :data:`HoldoutLoader` reading with ``dvc.api``; ``default_repo(team)`` names a team's project when the
    catalog does not."""

    def load(team: str, spec: Mapping[str, Any]) -> HoldOut:
        import dvc.api

        path, target = str(spec["path"]), str(spec["target"])
        repo = spec.get("repo") or default_repo(team)
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
