"""A data scientist's DVC project, as the release pipeline reads it: with the publisher's rights, never its own.

The hold-out set and a batch model's input come from the project the model
was trained in. Everything in that project (its path, recorded in a run tag
the workspace sets; its ``.dvc`` files; its DVC cache, which may hold
symlinks) is written by a workspace, so it is hostile input to a process
running as root. Two rules follow:

1. **Which project** is decided here, not by the tag: a folder on this
   machine must lie, after resolving every symlink, inside the home of the
   user who published the release (:meth:`ProjectReader.resolve`); a remote
   git URL (``https://``, ``ssh://``, ``git@host:``) is accepted as is.
   Anything else (another user's folder, ``file://``, a relative path) is
   refused with :class:`ProjectRefused`, naming the project and the rule.
2. **How it is read**: in a process of its own (``python -m
   mlopshub.services.pipeline.dvcread``) running as the publisher's Unix
   account, with the team's group and a scrubbed environment, never as the
   pipeline (:meth:`ProjectReader.read`). A symlink in the cache pointing at
   the platform's secrets or another team's data then meets the same
   "permission denied" the publisher's own notebook would. The process prints
   the rows as CSV in JSON; the pipeline treats what comes back as data.

Without Unix accounts (the platform not run as root) every workspace runs as
the platform's user, so rule 2 gives nothing more, and rule 1 still keeps a
release to its publisher's own home.
"""

from __future__ import annotations

import grp
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlopshub.accounts import team_group, workspace_account
from mlopshub.serving.sandbox import RunAs, model_environment, popen_options

#: Remote git addresses a release may name as its project (read with the publisher's rights like a folder).
REMOTE_GIT = re.compile(r"^(https://|ssh://|git@[A-Za-z0-9.-]+:)[^\s]+$")
#: Seconds a read may take (a large batch input fetched from the team's remote).
READ_TIMEOUT = 600.0
#: A full git commit hash (SHA-1 or SHA-256), as a run's lineage records it.
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class ProjectRefused(ValueError):
    """The project named for a release is not one the pipeline may read for its publisher."""


@dataclass(frozen=True)
class Project:
    """A project the pipeline may read for a release: where it is and whose rights it is read with."""

    #: The resolved folder, or a remote git URL.
    repo: str
    #: The hub user who published the release.
    publisher: str
    #: The Unix account (and team group) to read as; None: as this process (no Unix accounts here).
    run_as: RunAs | None
    #: Supplementary groups of the reading process (the team's, for its DVC remote).
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class DataVersion:
    """Rows of a file at a revision of a project, and which version they are."""

    #: The rows as CSV text.
    csv: str
    #: The file's DVC content hash; None when the file is not tracked by DVC.
    md5: str | None
    #: What a record names as the version read: the DVC hash, else the git revision, else 'workspace'.
    version: str

    def frame(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(io.StringIO(self.csv))


class ProjectReader:
    """Resolves and reads publishers' projects (see the module's two rules).

    ``homes_dir`` holds one home per hub user (``<homes_dir>/<user>``);
    ``as_accounts`` says whether workspaces run as their own Unix accounts
    (the platform runs as root), so reads switch to the publisher's.
    """

    def __init__(self, homes_dir: str | Path, *, as_accounts: bool | None = None):
        self.homes_dir = Path(homes_dir)
        self.as_accounts = os.geteuid() == 0 if as_accounts is None else as_accounts

    def resolve(self, publisher: str, repo: str | None, team: str | None = None) -> Project:
        """The project ``repo`` of a release published by ``publisher`` in ``team``, or :class:`ProjectRefused`."""
        if not repo or not isinstance(repo, str):
            raise ProjectRefused(
                "no project is recorded for this model: train it in a DVC project (the sidebar's data versioning "
                "records it on the run), or publish with batch.repo naming the project"
            )
        run_as, groups = self._account(publisher, team)
        if REMOTE_GIT.match(repo):
            return Project(repo=repo, publisher=publisher, run_as=run_as, groups=groups)
        home = self.homes_dir / publisher
        folder = Path(home / repo[2:] if repo.startswith("~/") else repo)
        if not folder.is_absolute() or "://" in repo:
            raise ProjectRefused(
                f"project {repo!r} is neither a folder in {publisher}'s home nor a remote git URL (https://, ssh://, "
                "git@host:); name the project folder the model was trained in"
            )
        resolved, home_resolved = Path(os.path.realpath(folder)), Path(os.path.realpath(home))
        if not resolved.is_relative_to(home_resolved):
            raise ProjectRefused(
                f"project {repo!r} is not in the home of {publisher}, who published this release; the pipeline reads "
                "only the publisher's own projects"
            )
        if run_as is not None and resolved.exists() and resolved.stat().st_uid != run_as.uid:
            raise ProjectRefused(f"project {repo!r} is not owned by {publisher}, who published this release")
        return Project(repo=str(resolved), publisher=publisher, run_as=run_as, groups=groups)

    def read(self, project: Project, path: str, rev: str | None) -> DataVersion:
        """The rows of ``path`` at ``rev`` in ``project``, read as its publisher (:class:`OSError` naming why not)."""
        answer = self._dvcread(project, [f"--path={path}"] + ([f"--rev={rev}"] if rev else []),
                               f"{path} at {rev or 'the work tree'}")  # fmt: skip
        return DataVersion(csv=str(answer["csv"]), md5=answer.get("md5"), version=str(answer["version"]))

    def versions_at(self, project: Project, commit: str, paths: list[str]) -> dict[str, str | None]:
        """What DVC records for each of ``paths`` at ``commit`` of ``project``, read as its publisher.

        The lineage gate's proof that a run's commit (a snapshot commit too)
        is in the project and holds the data versions the run recorded;
        :class:`OSError` naming why not (an unknown commit among them).
        """
        if not COMMIT.fullmatch(commit):
            raise ValueError(f"{commit!r} is not a full git commit hash")
        argv = [f"--rev={commit}", "--lineage", *(f"--versions={path}" for path in paths)]
        answer = self._dvcread(project, argv, f"the data versions at commit {commit[:12]}")
        return {str(path): (None if md5 is None else str(md5)) for path, md5 in answer["versions"].items()}

    def _dvcread(self, project: Project, arguments: list[str], what: str) -> dict[str, Any]:
        """The JSON answer of :mod:`~mlopshub.services.pipeline.dvcread` run with ``arguments`` as the publisher."""
        argv = [sys.executable, "-m", "mlopshub.services.pipeline.dvcread", f"--repo={project.repo}", *arguments]
        options = popen_options(project.run_as)
        if options:
            options["extra_groups"] = list(project.groups)
        home = project.run_as.home if project.run_as else str(self.homes_dir / project.publisher)
        try:
            finished = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=READ_TIMEOUT,
                env=model_environment(None, {"HOME": home, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}),
                cwd="/",
                stdin=subprocess.DEVNULL,
                **options,
            )
        except subprocess.TimeoutExpired:
            raise OSError(f"reading {what} from {project.repo} took longer than {READ_TIMEOUT:.0f} s") from None
        if finished.returncode != 0:
            lines = (finished.stderr or "").strip().splitlines()
            # The reader prints one line naming the error; never more than that reaches a release's reason.
            raise OSError(
                f"cannot read {what} from {project.repo} as {project.publisher}: "
                f"{(lines[-1] if lines else 'no error output')[:500]}"
            )
        answer = json.loads(finished.stdout)
        if not isinstance(answer, dict):
            raise OSError(f"reading {what} from {project.repo} gave no JSON object")
        return answer

    def _account(self, publisher: str, team: str | None) -> tuple[RunAs | None, tuple[int, ...]]:
        if not self.as_accounts:
            return None, ()
        account = workspace_account(publisher)
        if account is None:
            raise ProjectRefused(
                f"{publisher}, who published this release, has no workspace account on this machine; their project "
                "cannot be read"
            )
        groups: tuple[int, ...] = ()
        if team:
            try:
                groups = (grp.getgrnam(team_group(team)).gr_gid,)
            except KeyError:
                groups = ()
        return RunAs(uid=account.pw_uid, gid=account.pw_gid, home=account.pw_dir), groups
