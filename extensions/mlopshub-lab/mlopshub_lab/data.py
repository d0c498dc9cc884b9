"""Data versioning in a workspace: DVC projects, their datasets and their versions.

A *project* is the nearest folder at or above the one the user is in (never
above the server root) that holds ``.dvc/`` or ``.git``. A *dataset* is an
output of a ``.dvc`` file; its *versions* are the git commits of that file.

Commands go through ``runner.execute`` (looked up on the module each time, so
tests can spy on it); reads that would cost a DVC start-up per call use DVC's
Python API in a worker thread instead. Nothing here blocks the event loop.

git's output is parsed here (``log`` with field and record separators,
``status --porcelain=v1 -z``), as jupyterlab-git does, rather than read
through a git library: GitPython runs the same commands and parses them too,
and pygit2 (libgit2) or dulwich would add a second implementation of git
beside the one the user's terminal runs, with their own reading of its
config, hooks and filters.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import runner
from .errors import BadRequest, Busy, CommandFailed, NotFound
from .paths import relative, shown
from .runner import DVC, GIT

#: Name of the remote that "Enable data versioning" adds from MLOPSHUB_DVC_REMOTE.
REMOTE_NAME = "team"
ENABLE_MESSAGE = "Enable data versioning"
#: The branch a new project starts on: the catalog's default hold-out ``rev`` and a batch model's default ``rev``.
DEFAULT_BRANCH = "main"
#: What a new project's ``.gitignore`` keeps out of git (JupyterLab's autosaves).
IGNORED = (".ipynb_checkpoints/",)


def ignore_checkpoints(root: Path) -> None:
    """Add :data:`IGNORED` to ``root/.gitignore`` where missing (the file is created if need be)."""
    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    missing = [pattern for pattern in IGNORED if pattern not in lines]
    if missing:
        text = ignore.read_text() if ignore.is_file() else ""
        separator = "" if not text or text.endswith("\n") else "\n"
        ignore.write_text(text + separator + "\n".join(missing) + "\n")


#: Folders never searched for .dvc files: they hold tools' state or installed packages, not datasets.
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})
#: Push and pull move data over the network; give them an hour, not the default two minutes.
TRANSFER_TIMEOUT = 3600.0
#: Seconds a listing waits for the remote to say which datasets it lacks; then it answers without that.
REMOTE_CHECK_TIMEOUT = 30.0
#: Most versions one history answer lists (newest first).
HISTORY_LIMIT = 200
_COMMIT = re.compile(r"[0-9a-fA-F]{4,40}")


@dataclass(frozen=True)
class Project:
    """A folder under version control: DVC (``.dvc/``) and/or git."""

    root: Path
    dvc: bool
    git: bool
    remote: dict[str, str] | None = None

    def to_json(self, server_root: Path) -> dict[str, Any]:
        """The project as the REST API shows it."""
        return {"root": relative(server_root, self.root), "dvc": self.dvc, "git": self.git, "remote": self.remote}


@dataclass
class Dataset:
    """One output of a ``.dvc`` file, with what the sidebar shows about it."""

    target: Path
    dvcfile: Path
    size: int | None
    md5: str | None
    status: set[str] = field(default_factory=set)

    def to_json(self, server_root: Path) -> dict[str, Any]:
        """The dataset as the REST API shows it; ``hash`` is the md5 DVC recorded (``.dir`` for folders)."""
        return {
            "path": os.path.relpath(self.target, server_root).replace(os.sep, "/"),
            "size": self.size,
            "hash": self.md5,
            "short_hash": self.md5[:8] if self.md5 else None,
            "status": sorted(self.status),
        }


class ProjectOperations:
    """Which long operation (track, version, push, pull, restore, enable) runs in which project.

    One at a time per project: two DVC commands in one project fight over
    DVC's lock and git's index, and the second would fail with a message that
    doesn't say why.
    """

    def __init__(self) -> None:
        self._running: dict[Path, str] = {}
        self._lock = threading.Lock()

    def running(self, root: Path) -> str | None:
        """The operation running in the project at ``root``, if any."""
        with self._lock:
            return self._running.get(root)

    @contextmanager
    def hold(self, root: Path, operation: str, server_root: Path) -> Iterator[None]:
        """Mark ``operation`` as running in ``root`` for the block; raise ``Busy`` if another one is."""
        with self._lock:
            current = self._running.get(root)
            if current is not None:
                raise Busy(
                    f"'{current}' is already running in '{shown(server_root, root)}'; "
                    f"wait until it finishes, then {operation} again"
                )
            self._running[root] = operation
        try:
            yield
        finally:
            with self._lock:
                del self._running[root]


#: The server's one registry of running operations.
OPERATIONS = ProjectOperations()


# --- projects -----------------------------------------------------------------------------------


def find_project(server_root: Path, folder: Path) -> Project | None:
    """The project that ``folder`` belongs to, or None; never looks above ``server_root``."""
    for candidate in [folder, *folder.parents]:
        if candidate != server_root and server_root not in candidate.parents:
            return None
        dvc = (candidate / ".dvc").is_dir()
        if dvc or (candidate / ".git").exists():
            git = any(
                (above / ".git").exists() for above in [candidate, *candidate.parents] if _is_under(above, server_root)
            )
            return Project(candidate, dvc=dvc, git=git, remote=default_remote(candidate) if dvc else None)
    return None


def default_remote(root: Path) -> dict[str, str] | None:
    """The default DVC remote of the project at ``root`` (all config levels merged), or None."""
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=os.fspath(root / ".dvc"), validate=False)
    except ConfigError:
        return None
    name = (config.get("core") or {}).get("remote")
    if not name:
        return None
    url = ((config.get("remote") or {}).get(name) or {}).get("url")
    return {"name": str(name), "url": str(url) if url is not None else ""}


async def project_of(server_root: Path, folder: Path) -> Project | None:
    """``find_project`` off the event loop (it reads DVC's config files)."""
    return await asyncio.to_thread(find_project, server_root, folder)


async def require_project(server_root: Path, path: Path, *, git: bool = False) -> Project:
    """The DVC project of ``path``; 400 naming the fix when there is none (or it lacks git and ``git`` is needed)."""
    project = await project_of(server_root, path if path.is_dir() else path.parent)
    if project is None or not project.dvc:
        raise BadRequest(
            f"'{shown(server_root, path)}' is not in a data-versioned project; "
            "enable data versioning for its folder first"
        )
    if git and not project.git:
        raise BadRequest(
            f"the project '{shown(server_root, project.root)}' has DVC but no git, and versions are git commits; "
            "run `git init` in it first"
        )
    return project


async def enable(server_root: Path, folder: Path, remote_url: str | None) -> tuple[Project, str]:
    """Make ``folder`` (or the git repository it is in) a DVC project and commit that.

    Runs ``git init`` when there is no repository (branch ``main``: the
    branch the release pipeline reads hold-out sets and batch inputs from by
    default), ``dvc init``, adds the team's default remote when ``remote_url``
    is given, ignores JupyterLab's checkpoints, and commits DVC's files and
    the ignore file as "Enable data versioning". Answers the project and a
    sentence for the user. Enabling an enabled project changes nothing.
    """
    if not folder.is_dir():
        raise NotFound(f"folder '{shown(server_root, folder)}' does not exist")
    project = await project_of(server_root, folder)
    if project is not None and project.dvc:
        return project, f"Data versioning is already enabled in '{shown(server_root, project.root)}'."
    root = project.root if project is not None else folder
    with OPERATIONS.hold(root, "enable", server_root):
        if project is None:
            await _run([*GIT, "init", "-q", "-b", DEFAULT_BRANCH], root, server_root)
        await _run([*DVC, "init", "-q"], root, server_root)
        if remote_url:
            await _run([*DVC, "remote", "add", "-d", "--", REMOTE_NAME, remote_url], root, server_root)
        ignore_checkpoints(root)
        files = [".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]
        await _run([*GIT, "add", "--", *files], root, server_root)
        await _commit(root, server_root, ENABLE_MESSAGE, files)
    enabled = await project_of(server_root, root)
    assert enabled is not None  # just initialised
    where = shown(server_root, root)
    if remote_url:
        message = f"Data versioning enabled in '{where}'; datasets are pushed to the team remote '{REMOTE_NAME}'."
    else:
        message = (
            f"Data versioning enabled in '{where}' without a remote (MLOPSHUB_DVC_REMOTE is not set): "
            "versions stay in this workspace until you add one with `dvc remote add -d <name> <url>`."
        )
    return enabled, message


# --- datasets -----------------------------------------------------------------------------------


def dvc_files(root: Path) -> list[str]:
    """Every ``.dvc`` file of the project at ``root``, relative to it, sorted; reads none of them.

    Skips hidden folders (``.git``, ``.dvc``, virtual environments, caches),
    package folders, nested DVC projects (they list their own) and the
    folders a ``.dvc`` file tracks (they hold data, often many files).
    Symlinked folders are not followed.
    """
    found: list[str] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError:
            continue  # unreadable folder: it has no datasets we could show
        names = {entry.name for entry in entries}
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name.startswith(".") or entry.name in SKIP_DIRS or f"{entry.name}.dvc" in names:
                    continue
                if os.path.isdir(os.path.join(entry.path, ".dvc")):
                    continue
                stack.append(Path(entry.path))
            elif entry.name.endswith(".dvc") and entry.is_file():
                found.append(Path(entry.path).relative_to(root).as_posix())
    return sorted(found)


def read_outs(dvcfile: Path) -> list[dict[str, Any]]:
    """The ``outs`` of a ``.dvc`` file (path, md5, size as DVC wrote them)."""
    document = yaml.safe_load(dvcfile.read_text()) or {}
    outs = document.get("outs") if isinstance(document, dict) else None
    return [out for out in outs or [] if isinstance(out, dict) and out.get("path")]


def describe(project_root: Path, dvcfiles: list[str]) -> list[Dataset]:
    """Datasets of the given ``.dvc`` files with their local status: "changed", "missing" or "invalid".

    Status comes from DVC's own comparison (with its hash cache, so an
    unchanged large file is not read again) and takes no DVC lock, so it works
    while a push runs.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    datasets: list[Dataset] = []
    with Repo(os.fspath(project_root)) as repo:
        for rel in dvcfiles:
            dvcfile = project_root / rel
            try:
                outs = read_outs(dvcfile)
                stage_outs = repo.stage.load_one(os.fspath(dvcfile)).outs
            except (OSError, yaml.YAMLError, DvcException):
                # Unreadable or hand-broken file: show it, flagged, rather than hide the dataset.
                target = dvcfile.with_suffix("")
                datasets.append(Dataset(target, dvcfile, None, None, {"invalid"}))
                continue
            for out, stage_out in zip(outs, stage_outs, strict=False):
                target = Path(os.path.normpath(dvcfile.parent / str(out["path"])))
                md5 = out.get("md5")
                size = out.get("size")
                dataset = Dataset(target, dvcfile, size if isinstance(size, int) else None, str(md5) if md5 else None)
                state = next(iter(stage_out.workspace_status().values()), None)
                if state == "deleted":
                    dataset.status.add("missing")
                elif state in ("modified", "new"):
                    dataset.status.add("changed")
                datasets.append(dataset)
    return datasets


async def datasets_page(
    server_root: Path, folder: Path, offset: int, limit: int, remote: bool | None = None
) -> tuple[list[Dataset], int, RemoteCheck]:
    """One page of the datasets of the project ``folder`` is in, how many ``.dvc`` files it has, and the remote check.

    Only the page's ``.dvc`` files are read. Datasets whose data is not in
    the project's default remote are flagged "not_pushed": a teammate (or the
    release pipeline) could not get them. ``remote=None`` (the default) asks
    the remote when the project has one and reports a failure in the answer;
    ``remote=False`` skips it; ``remote=True`` fails the request when the
    remote can't be asked.
    """
    project = await project_of(server_root, folder)
    if project is None or not project.dvc:
        return [], 0, RemoteCheck(False)
    files = await asyncio.to_thread(dvc_files, project.root)
    page = files[offset : offset + limit]
    datasets = await asyncio.to_thread(describe, project.root, page) if page else []
    if remote is False or not project.remote or not page:
        return datasets, len(files), RemoteCheck(False)
    try:
        missing = await asyncio.wait_for(asyncio.to_thread(not_pushed, project.root, page), REMOTE_CHECK_TIMEOUT)
    except Exception as error:  # an unreachable remote: the local status is still worth showing
        text = (
            f"the remote did not answer within {REMOTE_CHECK_TIMEOUT:.0f} s"
            if isinstance(error, TimeoutError)
            else " ".join(f"{type(error).__name__}: {error}".split())[:500]
        )
        if remote:
            raise CommandFailed(f"cannot ask the remote of '{shown(server_root, project.root)}': {text}") from error
        return datasets, len(files), RemoteCheck(False, text)
    for dataset in datasets:
        if dataset.target in missing:
            dataset.status.add("not_pushed")
    return datasets, len(files), RemoteCheck(True)


@dataclass(frozen=True)
class RemoteCheck:
    """Whether a listing compared its datasets with the default remote, and why not when it could not."""

    checked: bool
    error: str | None = None


def not_pushed(project_root: Path, dvcfiles: list[str]) -> set[Path]:
    """Outputs of ``dvcfiles`` whose data is not all in the project's default remote.

    Asks the remote for each output's content hash (for a folder: its listing
    and, when the local cache holds the listing, every file in it) through
    DVC's Python API, one question per hash kind: no DVC start-up and no DVC
    lock, so it also answers while a push runs. An output DVC has not hashed
    yet counts as not pushed; a remote that can't be asked raises.
    """
    from dvc.repo import Repo

    missing: set[Path] = set()
    wanted: dict[str, dict[Path, set[str]]] = {}
    with Repo(os.fspath(project_root)) as repo:
        for rel in dvcfiles:
            dvcfile = project_root / rel
            try:
                outs = repo.stage.load_one(os.fspath(dvcfile)).outs
            except Exception:  # an unreadable .dvc file is flagged "invalid" by describe
                continue
            for out in outs:
                target = Path(os.path.normpath(dvcfile.parent / str(out.def_path)))
                if not out.hash_info or not out.hash_info.value:
                    missing.add(target)
                else:
                    wanted.setdefault(out.hash_info.name, {})[target] = _oids(out)
        for hash_name, targets in wanted.items():
            odb = repo.cloud.get_remote_odb(None, "status", hash_name=hash_name)
            present = set(odb.oids_exist(set().union(*targets.values())))
            missing.update(target for target, oids in targets.items() if not oids <= present)
    return missing


def _oids(out: Any) -> set[str]:
    """The hashes the remote must hold for ``out``: its own, and for a folder every file its listing names.

    A listing missing from the local cache is taken as whole: DVC uploads a
    listing after the files it names.
    """
    oids = {str(out.hash_info.value)}
    if out.hash_info.isdir:
        try:
            tree = out.get_obj()
        except Exception:  # not in the local cache
            tree = None
        for _, (_, info) in tree.iteritems() if tree is not None else ():
            if info and info.value:
                oids.add(str(info.value))
    return oids


def dataset_files(path: Path) -> tuple[Path, Path]:
    """The dataset ``path`` names and its ``.dvc`` file; the user may give either."""
    if path.suffix == ".dvc" and path.is_file():
        return path.with_suffix(""), path
    return path, path.with_name(path.name + ".dvc")


async def dataset_of(server_root: Path, project_root: Path, dvcfile: Path) -> dict[str, Any]:
    """The REST form of the dataset in ``dvcfile``, with a fresh local status."""
    rel = dvcfile.relative_to(project_root).as_posix()
    datasets = await asyncio.to_thread(describe, project_root, [rel])
    if not datasets:
        raise NotFound(f"'{shown(server_root, dvcfile)}' tracks no output")
    return datasets[0].to_json(server_root)


# --- history ------------------------------------------------------------------------------------


async def history(server_root: Path, path: Path, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """Versions of a dataset, newest first: the commits that changed its ``.dvc`` file, with its hash then."""
    project = await require_project(server_root, path, git=True)
    _, dvcfile = dataset_files(path)
    if project.root not in dvcfile.parents:
        # The project's own folder (or one above it) is no dataset; git would refuse the path as outside the repo.
        raise NotFound(f"'{shown(server_root, path)}' is not a tracked dataset: pick a file or folder in the project")
    rel = os.path.relpath(dvcfile, project.root)
    fields = ["%H", "%h", "%s", "%an", "%aI"]
    log = await _run(
        [*GIT, "log", f"-n{limit}", "--format=" + "%x1f".join(fields) + "%x1e", "--", rel],
        project.root,
        server_root,
        check=False,
    )
    if log.code != 0:
        if "does not have any commits" in log.message:
            return []
        raise CommandFailed(f"`git log` failed in '{shown(server_root, project.root)}': {log.message}")
    versions = []
    for record in log.stdout.split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == len(fields):
            commit, short, message, author, date = parts
            versions.append({"commit": commit, "short": short, "message": message, "author": author, "date": date})
    if not versions and not dvcfile.exists():
        raise NotFound(f"'{shown(server_root, path)}' is not a tracked dataset; track it first")
    hashes = await _hashes_at(project.root, dvcfile, [version["commit"] for version in versions], server_root)
    for version in versions:
        version["hash"] = hashes.get(version["commit"])
    return versions


async def _hashes_at(project_root: Path, dvcfile: Path, commits: list[str], server_root: Path) -> dict[str, str]:
    """The md5 that ``dvcfile`` recorded at each commit, read with one ``git cat-file --batch``."""
    if not commits:
        return {}
    top = (await _run([*GIT, "rev-parse", "--show-toplevel"], project_root, server_root)).stdout.strip()
    rel = Path(os.path.relpath(dvcfile, os.path.realpath(top))).as_posix()
    batch = await _run(
        [*GIT, "cat-file", "--batch"], project_root, server_root, input="".join(f"{c}:{rel}\n" for c in commits)
    )
    raw = batch.stdout.encode("utf-8", "surrogateescape")
    hashes: dict[str, str] = {}
    position = 0
    for commit in commits:
        end = raw.index(b"\n", position)
        header = raw[position:end].split()
        position = end + 1
        if len(header) != 3:
            continue  # "<name> missing": the file did not exist at that commit
        size = int(header[2])
        blob = raw[position : position + size].decode("utf-8", "replace")
        position += size + 1
        try:
            outs = yaml.safe_load(blob) or {}
            md5 = (outs.get("outs") or [{}])[0].get("md5")
        except (yaml.YAMLError, AttributeError, IndexError):
            md5 = None
        if md5:
            hashes[commit] = str(md5)
    return hashes


# --- operations ---------------------------------------------------------------------------------


async def track(server_root: Path, path: Path) -> dict[str, Any]:
    """Put a file or folder under DVC (``dvc add``) and stage its ``.dvc`` file for the next version."""
    if not path.exists():
        raise NotFound(f"'{shown(server_root, path)}' does not exist")
    project = await require_project(server_root, path)
    rel = os.path.relpath(path, project.root)
    if path == project.root or Path(rel).parts[0] in (".git", ".dvc") or path.suffix == ".dvc":
        raise BadRequest(f"'{shown(server_root, path)}' can't be tracked as a dataset; pick a data file or folder")
    with OPERATIONS.hold(project.root, "track", server_root):
        await _run([*DVC, "add", "--", rel], project.root, server_root, timeout=TRANSFER_TIMEOUT)
        if project.git:
            await _run([*GIT, "add", "--", *_git_files(project.root, [path])], project.root, server_root)
    return await dataset_of(server_root, project.root, path.with_name(path.name + ".dvc"))


async def save_version(server_root: Path, folder: Path, message: str) -> tuple[str, list[str]]:
    """Commit the current state of every dataset under ``folder`` that changed since its last version.

    Re-adds changed datasets (``dvc add``), then commits their ``.dvc`` and
    ``.gitignore`` files, and those of datasets tracked but not yet committed,
    as one commit with ``message``. Other staged work is left out of it.
    Answers the commit and the datasets it versions.
    """
    if not message.strip():
        raise BadRequest("a version needs a message: say what changed in the data")
    project = await require_project(server_root, folder, git=True)
    with OPERATIONS.hold(project.root, "version", server_root):
        under = [f for f in await asyncio.to_thread(dvc_files, project.root) if _is_under(project.root / f, folder)]
        datasets = await asyncio.to_thread(describe, project.root, under) if under else []
        changed = [d for d in datasets if "changed" in d.status]
        if changed:
            targets = [os.path.relpath(d.target, project.root) for d in changed]
            await _run([*DVC, "add", "--", *targets], project.root, server_root, timeout=TRANSFER_TIMEOUT)
        pending = await _uncommitted_dvcfiles(project.root, folder, server_root)
        dvcfiles = sorted({d.dvcfile for d in changed} | pending)
        if not dvcfiles:
            raise BadRequest(
                f"nothing to version under '{shown(server_root, folder)}': no dataset changed since its last version"
            )
        targets = [dvcfile.with_suffix("") for dvcfile in dvcfiles]
        files = _git_files(project.root, targets)
        await _run([*GIT, "add", "-A", "--", *files], project.root, server_root)
        commit = await _commit(project.root, server_root, message.strip(), files)
    return commit, [os.path.relpath(target, server_root).replace(os.sep, "/") for target in targets]


async def push(server_root: Path, folder: Path) -> str:
    """Upload the project's versioned data to its default remote (``dvc push``); answers DVC's output."""
    return await _transfer(server_root, folder, "push")


async def pull(server_root: Path, folder: Path) -> str:
    """Download the data of the current versions from the default remote (``dvc pull``); answers DVC's output."""
    return await _transfer(server_root, folder, "pull")


async def _transfer(server_root: Path, folder: Path, operation: str) -> str:
    project = await require_project(server_root, folder)
    with OPERATIONS.hold(project.root, operation, server_root):
        result = await _run([*DVC, operation], project.root, server_root, timeout=TRANSFER_TIMEOUT)
    return (result.stdout.strip() + "\n" + result.stderr.strip()).strip()


async def restore(server_root: Path, path: Path, commit: str, discard_changes: bool = False) -> dict[str, Any]:
    """Bring a dataset back to its version at ``commit``: its ``.dvc`` file from git, then its data from DVC.

    Refuses when the dataset has unsaved changes, unless ``discard_changes``:
    then the changed content is first put in DVC's cache (``dvc add``), so it
    can still be recovered by its hash, and the answer names that hash. If DVC
    can't check the data out (not in the cache), the ``.dvc`` file is put
    back, so the project is as it was. The restored state is not committed:
    saving a version records it.
    """
    if not _COMMIT.fullmatch(commit or ""):
        raise BadRequest(f"commit '{commit}' is not a commit hash; pick a version from the dataset's history")
    project = await require_project(server_root, path, git=True)
    _, dvcfile = dataset_files(path)
    rel = os.path.relpath(dvcfile, project.root)
    exists = await _run(
        [*GIT, "cat-file", "-e", f"{commit}:./{Path(rel).as_posix()}"], project.root, server_root, check=False
    )
    if exists.code != 0:
        raise NotFound(f"dataset '{shown(server_root, path)}' has no version at commit '{commit}'")
    with OPERATIONS.hold(project.root, "restore", server_root):
        kept: str | None = None
        if dvcfile.exists():
            current = await asyncio.to_thread(describe, project.root, [rel])
            if any("changed" in dataset.status for dataset in current):
                if not discard_changes:
                    raise BadRequest(
                        f"dataset '{shown(server_root, path)}' has unsaved changes that restoring would lose; "
                        "save a version first, or restore with discard_changes to keep them only in DVC's cache"
                    )
                target = os.path.relpath(path, project.root)
                await _run([*DVC, "add", "-q", "--", target], project.root, server_root)
                kept = (await asyncio.to_thread(describe, project.root, [rel]))[0].md5
        before = dvcfile.read_bytes() if dvcfile.exists() else None
        await _run([*GIT, "checkout", commit, "--", rel], project.root, server_root)
        checkout = await _run([*DVC, "checkout", "--", rel], project.root, server_root, check=False)
        if checkout.code != 0:
            await _run([*GIT, "reset", "-q", "--", rel], project.root, server_root, check=False)
            if before is None:
                dvcfile.unlink(missing_ok=True)
            else:
                dvcfile.write_bytes(before)
            raise CommandFailed(
                f"`dvc checkout` could not restore '{shown(server_root, path)}' (nothing was changed): "
                f"{checkout.message}"
            )
    restored = await dataset_of(server_root, project.root, dvcfile)
    if kept:
        restored["discarded_changes_hash"] = kept
    return restored


# --- helpers ------------------------------------------------------------------------------------


async def _run(
    argv: list[str],
    cwd: Path,
    server_root: Path,
    *,
    check: bool = True,
    timeout: float = runner.DEFAULT_TIMEOUT,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> runner.CommandResult:
    """``runner.execute``; a failure becomes ``CommandFailed`` with the tool's own message unless ``check`` is off."""
    result = await runner.execute(argv, cwd, env=env, timeout=timeout, input=input)
    if check and result.code != 0:
        tool, rest = ("dvc", argv[len(DVC) :]) if argv[: len(DVC)] == DVC else (Path(argv[0]).name, argv[1:])
        command = f"{tool} {rest[0]}" if rest else tool
        raise CommandFailed(f"`{command}` failed in '{shown(server_root, cwd)}': {result.message}")
    return result


async def _commit(root: Path, server_root: Path, message: str, files: list[str]) -> str:
    """Commit exactly ``files`` (already staged) with ``message``; answers the new commit's hash."""
    await _run([*GIT, "commit", "-q", "-m", message, "--", *files], root, server_root, env=await _identity(root))
    return (await _run([*GIT, "rev-parse", "HEAD"], root, server_root)).stdout.strip()


async def _identity(root: Path) -> dict[str, str]:
    """Author and committer for a commit when git has none configured.

    A fresh workspace has no ``user.name``/``user.email``; rather than fail,
    commits from the sidebar carry the hub user's name.
    """
    user = os.environ.get("JUPYTERHUB_USER") or _login_name()
    env: dict[str, str] = {}
    for key, variables, fallback in (
        ("user.name", ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"), user),
        ("user.email", ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"), f"{user}@users.mlopshub"),
    ):
        if all(os.environ.get(variable) for variable in variables):
            continue
        configured = await runner.execute([*GIT, "config", "--get", key], root)
        if configured.code != 0 or not configured.stdout.strip():
            env.update(dict.fromkeys(variables, fallback))
    return env


async def _uncommitted_dvcfiles(project_root: Path, folder: Path, server_root: Path) -> set[Path]:
    """``.dvc`` files under ``folder`` that differ from the last commit (new, changed, deleted, staged or not)."""
    top = Path(
        os.path.realpath((await _run([*GIT, "rev-parse", "--show-toplevel"], project_root, server_root)).stdout.strip())
    )
    status = await _run(
        [*GIT, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", os.path.relpath(folder, project_root)],
        project_root,
        server_root,
    )
    records = status.stdout.split("\0")
    found: set[Path] = set()
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if len(record) < 4:
            continue
        if record[0] in "RC":
            index += 1  # a rename is followed by its old name
        path = top / record[3:]
        if path.suffix == ".dvc" and _is_under(path, folder) and not _is_under(path, project_root / ".dvc"):
            found.add(path)
    return found


def _git_files(project_root: Path, targets: list[Path]) -> list[str]:
    """The files git keeps for tracked ``targets``: their ``.dvc`` files and the ``.gitignore`` beside them."""
    files: list[str] = []
    for target in targets:
        files.append(os.path.relpath(target.with_name(target.name + ".dvc"), project_root))
        gitignore = target.parent / ".gitignore"
        if gitignore.exists():
            files.append(os.path.relpath(gitignore, project_root))
    return sorted(set(files))


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "workspace-user"


def _is_under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
