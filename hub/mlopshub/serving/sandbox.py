"""Where model code runs: a scrubbed environment and, when the pipeline runs as root, the team's own account.

A model is code: unpickling it runs whatever its author put in it. So model
code (model servers, their zygotes, the gates that load and score a model,
batch runs) never runs inside the pipeline's process, never sees the
pipeline's secrets (its MLflow admin password, its hub token), and on one
machine run as root, runs as a Unix account of the model's team:

* :func:`model_environment` keeps only what Python needs (:data:`KEEP`);
* :func:`team_accounts` makes, per team, an account ``mlopshub-m-<team>``
  and a folder ``<models dir>/<team>`` owned by root and the team's group
  ``mlopshub-<team>`` (mode 2770: the pipeline writes model copies there,
  the account only reads them);
* :func:`popen_options` are the ``subprocess.Popen`` arguments that switch to it.

One team's model processes can then neither read another team's model
copies nor signal or trace its processes. Not enforced here: CPU and memory
limits per team, and network access (a model server can open connections).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Environment variables model processes keep; everything else (tokens, passwords) stays behind.
KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR", "DVC_NO_ANALYTICS")
#: Prefix of the Unix accounts model code runs as (``mlopshub-m-<team>``, cut to 32 characters).
ACCOUNT_PREFIX = "mlopshub-m-"


@dataclass(frozen=True)
class RunAs:
    """A Unix account and group to run a team's model code as, and its home."""

    uid: int
    gid: int
    home: str


def model_environment(run_as: RunAs | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a model process: :data:`KEEP`, this package on ``PYTHONPATH``, ``HOME``, ``extra``."""
    env = {name: os.environ[name] for name in KEEP if name in os.environ}
    # The child imports mlopshub from wherever this process did (an installed package or the source tree).
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["HOME"] = run_as.home if run_as else os.environ.get("HOME", "/")
    env.update(extra or {})
    return env


def popen_options(run_as: RunAs | None) -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments that start the process as ``run_as`` (none: as this process)."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def hand_over(path: str | Path, run_as: RunAs | None, mode: int) -> None:
    """Give ``path`` to the team's group with ``mode`` (0640: it may read; 2770: its account writes there).

    Nothing to do without an account: model code then runs as this process.
    """
    if run_as is None:
        return
    os.chown(path, 0, run_as.gid)
    Path(path).chmod(mode)


def account_name(team: str) -> str:
    """The Unix account of ``team``'s model code."""
    return f"{ACCOUNT_PREFIX}{team}"[:32]


def team_accounts(models_dir: str | Path, teams: Iterable[str]) -> dict[str, RunAs]:
    """As root: each team's account and model folder (created if missing); not root: none (run as this user)."""
    if os.geteuid() != 0:
        return {}
    from mlopshub.spawners import ensure_team_folder, ensure_unix_user

    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # the accounts pass through to their own team's folder only
    accounts = {}
    for team in teams:
        folder = root / team
        gid = ensure_team_folder(folder, team)
        account = ensure_unix_user(account_name(team), folder)
        accounts[team] = RunAs(uid=account.pw_uid, gid=gid, home=str(folder))
    return accounts
