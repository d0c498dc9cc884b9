"""Where model code runs: a scrubbed environment and, when the pipeline runs as root, the team's own account.

A model is code: unpickling it runs whatever its author put in it. So model
code (model servers, their zygotes, the gates that load and score a model,
batch runs) never runs inside the pipeline's process, never sees the
pipeline's secrets (its MLflow admin password, its hub token), and on one
machine run as root, runs as a Unix account of the model's team:

* :func:`model_environment` keeps only what Python needs (:data:`KEEP`);
* :func:`team_accounts` makes, per team, an account ``mlopshub-m-<team>``
  with a group of its own (no data scientist is in it) and a folder
  ``<models dir>/<team>`` owned by root and that group, mode 0750: the
  pipeline writes model copies there (:func:`seal`: root's files, the
  account may read them), the account only reads them, and the team's
  workspaces, whose members share ``mlopshub-<team>``, cannot enter it; the
  account's writable home is ``<models dir>/<team>/.home``;
* :func:`popen_options` are the ``subprocess.Popen`` arguments that switch to it.

One team's model processes can then neither read another team's model
copies nor signal or trace its processes, and neither a workspace nor the
team's own model code (which a member wrote) can change a copy that is
served. Not enforced here: CPU and memory limits per team, and network access
(a model server can open connections).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlopshub.accounts import ensure_unix_user

#: Environment variables model processes keep; everything else (tokens, passwords) stays behind.
KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR", "DVC_NO_ANALYTICS")
#: Prefix of the Unix accounts model code runs as (``mlopshub-m-<team>``, cut to 32 characters).
ACCOUNT_PREFIX = "mlopshub-m-"
#: The model account's own writable folder inside its team's models folder.
HOME = ".home"


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
    """Give ``path`` to the model account's group with ``mode`` (0640: it may read; 2770: it writes there).

    Nothing to do without an account: model code then runs as this process.
    """
    if run_as is None:
        return
    os.chown(path, 0, run_as.gid, follow_symlinks=False)
    Path(path).chmod(mode)


def seal(folder: str | Path, run_as: RunAs | None) -> None:
    """Make ``folder`` (a model copy) root's and read-only to the model account: folders 0750, files 0640.

    Without an account, the folder is made private to this process's user.
    Symlinks are neither followed nor kept readable (a copy should hold none;
    :func:`mlopshub.serving.integrity.tree_digest` refuses them).
    """
    gid = run_as.gid if run_as else None
    if Path(folder).is_symlink():  # never walked into: only a workspace could have put it here, in older data dirs
        Path(folder).unlink()
        return
    for path, mode in _tree(Path(folder)):
        if gid is not None:
            os.chown(path, 0, gid, follow_symlinks=False)
        if not path.is_symlink():
            path.chmod((0o750 if mode else 0o640) if gid is not None else (0o700 if mode else 0o600))


def _tree(folder: Path) -> list[tuple[Path, bool]]:
    """``folder`` and everything below it, as (path, is a folder), without following symlinks."""
    found: list[tuple[Path, bool]] = [(folder, folder.is_dir())]
    for root, dirs, files in os.walk(folder, followlinks=False):
        found += [(Path(root) / name, not (Path(root) / name).is_symlink()) for name in dirs]
        found += [(Path(root) / name, False) for name in files]
    return found


def account_name(team: str) -> str:
    """The Unix account of ``team``'s model code."""
    return f"{ACCOUNT_PREFIX}{team}"[:32]


def models_dir(pipeline_dir: str | Path) -> Path:
    """Where the pipeline keeps its sealed copies of model versions (``<team>/<model>/<version>``)."""
    return Path(pipeline_dir) / "models"


def team_accounts(models_dir: str | Path, teams: Iterable[str]) -> dict[str, RunAs]:
    """As root: each team's account and model folder (created if missing); not root: none (run as this user)."""
    if os.geteuid() != 0:
        return {}
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # the accounts pass through to their own team's folder only
    accounts = {}
    for team in teams:
        folder = root / team
        home = folder / HOME
        account = ensure_unix_user(account_name(team), home)
        folder.mkdir(exist_ok=True)
        run_as = RunAs(uid=account.pw_uid, gid=account.pw_gid, home=str(home))
        # Read and pass, never write: copies are the pipeline's. Data dirs from before this had the members'
        # group here, mode 2770, so whatever lies below is made root's again (not following symlinks).
        if home.is_symlink() or (home.exists() and not home.is_dir()):
            home.unlink()
        for child in folder.iterdir():
            if child.name != HOME:
                seal(child, run_as)
        os.chown(folder, 0, run_as.gid, follow_symlinks=False)
        folder.chmod(0o750)
        home.mkdir(exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid, follow_symlinks=False)
        home.chmod(0o700)
        accounts[team] = run_as
    return accounts


#: A team's name, as the catalog and the Teams page allow it (nothing else becomes an account).
TEAM_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


class TeamAccounts(Mapping[str, RunAs]):
    """Each team's account, made the first time the team's model code runs: teams made at runtime (the Teams
    page) get theirs without a restart. As root only; otherwise there is none, and model code runs as this user.

    A team with no account must never run as root: a lookup makes the account, or fails.
    """

    def __init__(self, models_dir: str | Path, teams: Iterable[str] = ()):
        self.models_dir = Path(models_dir)
        self._accounts: dict[str, RunAs] = {}
        self._root = os.geteuid() == 0
        for team in teams:
            self.get(team)

    def __getitem__(self, team: str) -> RunAs:
        if not self._root or not isinstance(team, str) or not TEAM_NAME.fullmatch(team):
            raise KeyError(team)
        if team not in self._accounts:
            self._accounts.update(team_accounts(self.models_dir, [team]))
        return self._accounts[team]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._accounts))

    def __len__(self) -> int:
        return len(self._accounts)
