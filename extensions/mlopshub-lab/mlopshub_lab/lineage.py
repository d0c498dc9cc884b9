"""Lineage tags for every MLflow run started in a workspace (an MLflow run context provider).

Registered on MLflow's ``mlflow.run_context_provider`` entry point, so
``mlflow.start_run()`` tags the run without the user writing anything: the
git commit of the code, the DVC versions (hashes) of the data tracked in the
project, the notebook path, the workspace profile and image. R users get the
same tags: the R helper starts runs through the same Python client.

**Code snapshots.** No commit is needed before training. When the work tree
differs from HEAD, the exact code is recorded as a *snapshot commit*: the
work tree written through a temporary index (``GIT_INDEX_FILE``, ``git add
-A``, ``git write-tree``, ``git commit-tree`` with HEAD as parent) and kept
on ``refs/mlopshub/snapshots/<commit>``, a ref of the platform's own (no
branch, no reflog, not pushed by ``git push``, kept by ``git gc``). The
user's branch, index, files and ``git status`` are untouched. What goes in:
tracked files as they are now, deletions, and untracked files that
``.gitignore`` does not ignore; what stays out: ignored files, the data DVC
tracks (its ``.dvc`` files say which), untracked files in hidden folders
and ``__pycache__`` (tools' state: ``.ipynb_checkpoints``, ``.local``), and
untracked files over :data:`MAX_SNAPSHOT_FILE` (1 MiB: data or model files,
which belong in DVC, not in git), the last named in
``mlopshub.git.snapshot.skipped``. The run is tagged with the snapshot
(``mlopshub.git.commit``), ``mlopshub.git.snapshot=true``, the branch's
HEAD (``mlopshub.git.head``) and branch (``mlopshub.git.branch``). A
repository without a commit yet gets no commit tag: the release pipeline
refuses such a run.

The snapshot is made with git's own commands and their output read here
(``ls-files -z``, ``write-tree``, ``commit-tree``), as jupyterlab-git drives
git, rather than through GitPython (which runs the same commands), pygit2 or
dulwich: the commit must be exactly what the user's git would make of the
same tree, with the same ignore rules and config.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import yaml

try:  # MLflow is in every workspace; the module stays importable without it for tests of the helpers.
    from mlflow.tracking.context.abstract_context import RunContextProvider
except ImportError:  # pragma: no cover
    RunContextProvider = object  # type: ignore[assignment,misc]

TAG_PREFIX = "mlopshub."
#: At most this many data tags per run; the count is always recorded.
MAX_DATA_TAGS = 100
#: Seconds a run's start waits for the workspace's server to say which notebook the kernel runs for.
SESSION_TIMEOUT = 2.0
#: Untracked files larger than this (bytes) stay out of a code snapshot, named in a tag.
MAX_SNAPSHOT_FILE = 1 << 20
#: Where snapshot commits are kept: one ref per snapshot, named by its commit.
SNAPSHOT_REFS = "refs/mlopshub/snapshots/"
#: Seconds the snapshot's ``git add`` may take (it hashes every changed file).
SNAPSHOT_TIMEOUT = 60.0
#: Characters of skipped file names one tag lists (MLflow tag values are bounded).
MAX_SKIPPED_TEXT = 1000


def git(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 10
) -> str | None:
    """Output of ``git <args>`` in ``cwd``, or None when it fails (not a repository, no git)."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
            input=stdin,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


class SnapshotFailed(RuntimeError):
    """The work tree could not be recorded as a snapshot commit (names the git step)."""


def left_out(top: Path, dvc_outs: Iterable[str]) -> tuple[list[str], list[str]]:
    """Untracked files (relative to ``top``) a snapshot leaves out: (DVC data and tools' state, files too large).

    Tools' state is what lies in hidden folders (``.ipynb_checkpoints``,
    ``.local``, ``.cache``, ``.ipython``: a project that is the whole home has
    them, and kernel connection files hold keys) and in ``__pycache__``;
    hidden files such as a new ``.gitignore`` are code.
    """
    listing = git(["ls-files", "-z", "--others", "--exclude-standard"], top)
    if listing is None:
        raise SnapshotFailed("git ls-files could not list the untracked files")
    outs = [out.rstrip("/") for out in dvc_outs]
    quiet: list[str] = []
    large: list[str] = []
    for name in filter(None, listing.split("\0")):
        state = any(part.startswith(".") or part == "__pycache__" for part in Path(name).parts[:-1])
        if state or any(name == o or name.startswith(o + "/") for o in outs):
            quiet.append(name)
            continue
        try:
            size = (top / name).lstat().st_size
        except OSError:
            continue  # gone since it was listed: git add will not find it either
        if size > MAX_SNAPSHOT_FILE:
            large.append(name)
    return quiet, large


def snapshot_tree(top: Path, excluded: list[str]) -> str:
    """The tree of the work tree as ``git add -A`` would stage it, minus ``excluded``, in a temporary index.

    The temporary index starts as a copy of the user's (its file stat cache
    spares hashing unchanged files); the user's own index is never written.
    """
    index = git(["rev-parse", "--path-format=absolute", "--git-path", "index"], top)
    if index is None:
        raise SnapshotFailed("git rev-parse could not find the index")
    with tempfile.TemporaryDirectory(prefix="mlopshub-snapshot-") as folder:
        scratch = Path(folder) / "index"
        if Path(index).is_file():
            shutil.copyfile(index, scratch)
        env = {"GIT_INDEX_FILE": str(scratch)}
        pathspecs = "".join(f":(exclude,literal){name}\0" for name in excluded)
        if git(["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"], top, env, ".\0" + pathspecs,
               SNAPSHOT_TIMEOUT) is None:  # fmt: skip
            raise SnapshotFailed("git add could not stage the work tree in a temporary index")
        tree = git(["write-tree"], top, env)
    if not tree:
        raise SnapshotFailed("git write-tree could not write the work tree")
    return tree


def snapshot_commit(top: Path, tree: str, head: str) -> str:
    """A commit of ``tree`` with parent ``head``, kept on its own ref under :data:`SNAPSHOT_REFS`."""
    message = f"mlopshub: the work tree when a run started (on {head[:12]})"
    commit = git(["commit-tree", tree, "-p", head, "-m", message], top, identity(top))
    if not commit:
        raise SnapshotFailed("git commit-tree could not write the snapshot commit")
    # Named by its commit: two runs on the same work tree within a second share one snapshot, and its ref.
    if git(["update-ref", SNAPSHOT_REFS + commit, commit], top) is None:
        raise SnapshotFailed(f"git update-ref could not keep the snapshot on {SNAPSHOT_REFS}{commit}")
    return commit


def identity(top: Path) -> dict[str, str]:
    """Author and committer for a snapshot when git has none (the hub user's, as the sidebar's commits)."""
    if git(["var", "GIT_AUTHOR_IDENT"], top) is not None and git(["var", "GIT_COMMITTER_IDENT"], top) is not None:
        return {}
    user = os.environ.get("JUPYTERHUB_USER") or "workspace-user"
    return {
        "GIT_AUTHOR_NAME": user,
        "GIT_COMMITTER_NAME": user,
        "GIT_AUTHOR_EMAIL": f"{user}@users.mlopshub",
        "GIT_COMMITTER_EMAIL": f"{user}@users.mlopshub",
    }


def code_tags(cwd: Path, dvc_outs: Iterable[str]) -> dict[str, str]:
    """The git tags of a run started in ``cwd``: HEAD when the work tree matches it, else a snapshot commit.

    ``dvc_outs`` are the DVC-tracked paths, relative to the repository's top
    folder; they never go into a snapshot.
    """
    head = git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd)
    top = git(["rev-parse", "--show-toplevel"], cwd)
    if not head or not top:
        return {}
    tags = {TAG_PREFIX + "git.commit": head, "mlflow.source.git.commit": head}
    try:
        quiet, large = left_out(Path(top), dvc_outs)
        tree = snapshot_tree(Path(top), quiet + large)
        if tree == git(["rev-parse", "HEAD^{tree}"], cwd):
            tags[TAG_PREFIX + "git.dirty"] = "false"
        else:
            commit = snapshot_commit(Path(top), tree, head)
            tags.update(
                {
                    TAG_PREFIX + "git.commit": commit,
                    "mlflow.source.git.commit": commit,
                    TAG_PREFIX + "git.dirty": "true",
                    TAG_PREFIX + "git.snapshot": "true",
                    TAG_PREFIX + "git.head": head,
                }
            )
            branch = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd)
            if branch:
                tags[TAG_PREFIX + "git.branch"] = branch
    except SnapshotFailed as error:
        # The run still starts; the release pipeline refuses it, saying why.
        tags[TAG_PREFIX + "git.dirty"] = "true"
        tags[TAG_PREFIX + "git.snapshot.error"] = str(error)
        return tags
    if large:
        text = ", ".join(large)
        if len(text) > MAX_SKIPPED_TEXT:
            text = text[: MAX_SKIPPED_TEXT - 1] + "…"
        tags[TAG_PREFIX + "git.snapshot.skipped"] = (
            f"{len(large)} untracked file(s) over {MAX_SNAPSHOT_FILE} bytes: {text}"
        )
    return tags


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``.dvc/`` or ``.git``."""
    for folder in [start, *start.parents]:
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return None


def dvc_versions(root: Path) -> dict[str, str]:
    """Tracked data in a DVC project: output path (relative to the root) -> hash, from .dvc files and dvc.lock."""
    versions: dict[str, str] = {}
    for path in sorted(root.rglob("*.dvc")):
        if ".dvc" in path.relative_to(root).parts[:-1] or not path.is_file():
            continue
        document = yaml.safe_load(path.read_text()) or {}
        for out in document.get("outs") or []:
            digest = out.get("md5") or out.get("hash") or out.get("etag")
            if digest and out.get("path"):
                versions[str((path.parent / out["path"]).relative_to(root))] = str(digest)
    lock = root / "dvc.lock"
    if lock.is_file():
        document = yaml.safe_load(lock.read_text()) or {}
        for stage in (document.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                if out.get("md5") and out.get("path"):
                    versions[str(out["path"])] = str(out["md5"])
    return versions


def notebook_path(notebook: str, home: str | None) -> str:
    """The notebook as the user sees it in JupyterLab: relative to the home (the server root)."""
    path = Path(notebook)
    if home and path.is_absolute() and path.is_relative_to(home):
        return str(path.relative_to(home))
    return notebook


def lineage_tags(cwd: Path, notebook: str | None, environ: dict[str, str]) -> dict[str, str]:
    """All lineage tags for a run started in ``cwd`` (by ``notebook``, if known)."""
    tags: dict[str, str] = {}
    for key, variable in (("profile", "MLOPSHUB_PROFILE"), ("image", "MLOPSHUB_IMAGE"), ("teams", "MLOPSHUB_TEAMS")):
        if environ.get(variable):
            tags[TAG_PREFIX + key] = environ[variable]
    if notebook:
        notebook = notebook_path(notebook, environ.get("HOME"))
        tags[TAG_PREFIX + "notebook"] = notebook
        tags["mlflow.source.name"] = notebook
    root = project_root(cwd)
    versions = dvc_versions(root) if root is not None else {}
    top = git(["rev-parse", "--show-toplevel"], cwd)
    if top:
        real = Path(os.path.realpath(root)) if root else None
        outs = [os.path.relpath(real / path, os.path.realpath(top)) for path in versions] if real else []
        tags.update(code_tags(cwd, outs))
    if root is not None:
        tags[TAG_PREFIX + "data.count"] = str(len(versions))
        for path, digest in list(versions.items())[:MAX_DATA_TAGS]:
            tags[f"{TAG_PREFIX}data.{path}"] = digest
        # Where the project lives: the release pipeline reads the team's hold-out set from it
        # when the catalog names no repository of its own.
        tags[TAG_PREFIX + "project"] = str(root)
    return tags


def kernel_id() -> str | None:
    """The id of the Jupyter kernel this code runs in (from its connection file), or None outside a kernel."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).stem
    except Exception:  # not in a kernel (a script, a test): no session to ask about
        return None
    return name.removeprefix("kernel-") if name.startswith("kernel-") else None


def session_notebook(environ: dict[str, str], kernel: str | None) -> str | None:
    """The path of the notebook ``kernel`` runs for now, asked of the workspace's server, or None.

    ``JPY_SESSION_NAME`` is the notebook's path when the kernel started; a
    rename in JupyterLab (an Untitled.ipynb named train.ipynb) moves the
    session, not the kernel's environment, so the server is asked first.
    """
    url, token = environ.get("JUPYTERHUB_SERVICE_URL"), environ.get("JUPYTERHUB_API_TOKEN")
    if not (url and token and kernel):
        return None
    request = urllib.request.Request(f"{url.rstrip('/')}/api/sessions", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=SESSION_TIMEOUT) as answer:
            sessions = json.load(answer)
    except (OSError, ValueError):
        return None
    for session in sessions if isinstance(sessions, list) else []:
        if isinstance(session, dict) and (session.get("kernel") or {}).get("id") == kernel and session.get("path"):
            return str(session["path"])
    return None


class LineageRunContext(RunContextProvider):
    """MLflow run context provider: active in mlopshub workspaces."""

    def in_context(self) -> bool:
        return bool(os.environ.get("MLOPSHUB_PROFILE"))

    def tags(self) -> dict[str, str]:
        environ = dict(os.environ)
        notebook = session_notebook(environ, kernel_id()) or environ.get("JPY_SESSION_NAME")
        return lineage_tags(Path.cwd(), notebook, environ)
