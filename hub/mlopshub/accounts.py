"""Unix accounts and groups of the one-machine platform (as root): who a process runs as.

* a hub user's workspace runs as ``jupyter-<name>`` (:func:`unix_name`, TLJH's naming);
* a team's members share the group ``mlopshub-<team>`` (:func:`ensure_team_folder`), which owns the
  team's DVC remote;
* a team's model code runs as ``mlopshub-m-<team>``, in a group of its own that no member is in
  (:mod:`mlopshub.serving.sandbox`).

The spawner, the release pipeline and the model sandbox all name accounts
through this module, so the names have one source.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

#: Prefix of the workspace accounts (``jupyter-<hub user>``, cut to 32 characters).
UNIX_USER_PREFIX = "jupyter-"
#: Prefix of the team groups (``mlopshub-<team>``).
TEAM_GROUP_PREFIX = "mlopshub-"


def unix_name(hub_name: str) -> str:
    """The Unix account for a hub user, as TLJH names them (``jupyter-<name>``)."""
    return f"{UNIX_USER_PREFIX}{hub_name}"[:32]


def team_group(team: str) -> str:
    """The Unix group a team's members share."""
    return f"{TEAM_GROUP_PREFIX}{team}"[:32]


def ensure_unix_user(name: str, home: Path) -> pwd.struct_passwd:
    """Create the Unix account ``name`` (with a group of its own) if it is missing; safe to run again."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/usr/sbin/nologin",
            "--",
            name,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def ensure_group(name: str) -> int:
    """The id of the Unix group ``name``, created if it is missing."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", "--", name], check=True, capture_output=True)
        return grp.getgrnam(name).gr_gid


def ensure_team_folder(folder: Path, team: str) -> int:
    """A folder only the team's members may use: group ``mlopshub-<team>``, mode 2770; returns the group id."""
    gid = ensure_group(team_group(team))
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 0, gid)
    folder.chmod(0o2770)
    return gid


def workspace_account(hub_name: str) -> pwd.struct_passwd | None:
    """The Unix account a hub user's workspace runs as, or None when it does not exist (never spawned, or not root)."""
    try:
        return pwd.getpwnam(unix_name(hub_name))
    except KeyError:
        return None
