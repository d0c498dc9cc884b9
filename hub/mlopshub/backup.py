"""Back up a running one-machine platform and restore it onto a stopped one (``mlopshub backup|restore DIR``).

A backup is a folder (mode 0700: it holds the platform's secrets) with ``manifest.json``, ``data/`` (the data
dir) and ``catalog/`` (the catalog the platform was started with):

* the platform's SQLite databases (the hub's, MLflow's tracking and auth stores, the pipeline's with its audit
  log) are copied through SQLite's online backup API, each as one consistent snapshot, never as a file copy of
  a live database. The pipeline's database is copied first and MLflow's last, so that whatever a release
  names is in the copy of MLflow. The audit log's head file is copied under the audit head lock with its
  database, so the two agree;
* everything else of the data dir is copied file by file: MLflow artifacts, model copies, team DVC remotes,
  secrets, the users' homes (``--without-homes`` leaves them out), but not what a start rebuilds (:data:`RUNTIME`);
* workspace-written trees are hostile: symlinks are copied as links, never followed (every entry is opened
  relative to its folder with ``O_NOFOLLOW``); FIFOs, sockets and devices are left out and listed;
* the manifest records each entry's type, owner and group (names and ids), mode, time and SHA-256, and the
  audit log's head, so :func:`restore` checks the backup is whole before it touches anything.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__, accounts, launcher
from .pipeline.audit import HEAD_FILE, HeadFile, check_chain, verify_file
from .serving.sandbox import ACCOUNT_PREFIX
from .settings import Settings

#: The manifest's format; a restore refuses any other (made by another mlopshub).
FORMAT = 1
MANIFEST = "manifest.json"
#: The backup's folders: the data dir's copy and the catalog's.
DATA, CATALOG = "data", "catalog"
#: Folders of the data dir where the platform keeps its databases, in copy order (referencing before referenced).
DATABASE_FOLDERS = ("pipeline", "", "mlflow")
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
#: What a start rebuilds (pid files, ports, logs, model servers' sockets, the models service's control socket): left
#: out of a backup.
RUNTIME = ("run", "logs", "pipeline/logs", "pipeline/sockets", "pipeline/control")
#: Kept from the logs: the membership service's record of workspaces it stopped (an audit record).
KEPT_LOGS = ("logs/membership.log",)
CHUNK = 1 << 20


class BackupError(ValueError):
    """A backup or restore that cannot go on; the message names the file or the state and what to do."""


@dataclass(frozen=True)
class Found:
    """An entry met by :func:`walk`: a folder, a regular file (open, as ``fd``), a symlink, or something skipped."""

    path: str
    kind: str
    stat: os.stat_result | None = None
    fd: int | None = None
    target: str | None = None
    why: str = ""


def walk(root: Path, leave_out: Callable[[str], bool] = lambda path: False) -> Iterator[Found]:
    """Every entry under ``root`` (itself first, as ``""``), sorted, never following a symlink.

    Each entry is opened relative to its folder's descriptor with ``O_NOFOLLOW``, so a workspace that swaps
    a file or folder for a symlink while the walk runs makes it skip that entry, not read the link's target.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        yield from _walk_folder(fd, "", leave_out)
    finally:
        os.close(fd)


def _walk_folder(folder: int, relative: str, leave_out: Callable[[str], bool]) -> Iterator[Found]:
    yield Found(relative, "dir", os.fstat(folder))
    for name in sorted(os.listdir(folder)):
        path = f"{relative}/{name}" if relative else name
        if leave_out(path):
            continue
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                yield Found(path, "symlink", st, target=os.readlink(name, dir_fd=folder))
                continue
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                yield Found(path, "skipped", st, why=f"not a file, folder or symlink (mode {oct(st.st_mode)})")
                continue
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0)
            child = os.open(name, flags, dir_fd=folder)
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            yield Found(path, "skipped", why="replaced by a symlink while the backup ran")
            continue
        try:
            opened = os.fstat(child)
            if stat.S_IFMT(opened.st_mode) != stat.S_IFMT(st.st_mode):
                yield Found(path, "skipped", why="replaced while the backup ran")
            elif stat.S_ISDIR(opened.st_mode):
                yield from _walk_folder(child, path, leave_out)
            else:
                yield Found(path, "file", opened, fd=child)
        finally:
            os.close(child)


def copy_stream(source: int, target: Path) -> str:
    """Copy the open file ``source`` into a new private file ``target``; return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        while chunk := os.read(source, CHUNK):
            digest.update(chunk)
            os.write(out, chunk)
    finally:
        os.close(out)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of the regular file at ``path`` (a symlink there is refused, not followed)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BackupError(f"{path}: not a regular file")
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def describe(path: str, found: Found, **more: Any) -> dict[str, Any]:
    """The manifest entry of ``found`` stored at ``path`` in the backup: type, owner, group, mode, time, more."""
    st = found.stat
    assert st is not None
    return {
        "path": path,
        "type": found.kind,
        "uid": st.st_uid,
        "user": _name(pwd.getpwuid, st.st_uid),
        "gid": st.st_gid,
        "group": _name(grp.getgrgid, st.st_gid),
        "mode": oct(stat.S_IMODE(st.st_mode)),
        "mtime_ns": st.st_mtime_ns,
        **more,
    }


def _name(lookup: Callable[[int], Any], number: int) -> str | None:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return None


# --- backup ----------------------------------------------------------------------------------------------------


def is_database(path: Path) -> bool:
    """Whether ``path`` is a SQLite database (by its header), read without following a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(SQLITE_MAGIC)) == SQLITE_MAGIC
    finally:
        os.close(fd)


def platform_databases(data_dir: Path) -> list[str]:
    """The platform's SQLite files (relative to the data dir), in copy order; workspaces' files are never opened."""
    found = []
    for folder in DATABASE_FOLDERS:
        where = data_dir / folder
        if where.is_dir() and not where.is_symlink():
            names = sorted(p.name for p in where.iterdir() if not p.name.endswith(SQLITE_SIDE_FILES))
            found += [f"{folder}/{name}".lstrip("/") for name in names if is_database(where / name)]
    return found


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the live SQLite database ``source`` (online backup API, one step), checked by SQLite.

    The copy is switched to the rollback journal, so that it is one self-contained file; the services set their
    own journal mode again when they open it.
    """
    live = sqlite3.connect(source, timeout=60)
    copy = sqlite3.connect(target)
    try:
        live.execute("PRAGMA query_only = ON")
        live.backup(copy)
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{source}: its copy fails SQLite's check ({check}); the database may be damaged")
        copy.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as error:
        raise BackupError(f"{source}: cannot copy this database: {error}") from None
    finally:
        copy.close()
        live.close()
    target.chmod(0o600)


def audit_head(database: Path) -> dict[str, Any]:
    """The audit log in ``database`` (a backup's copy) checked in full: entries, head, intact, first problem."""
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        connection.execute("BEGIN")
        report = check_chain(connection, HeadFile(database), database)
    finally:
        connection.close()
    return {
        "entries": report.entries,
        "head": {"seq": report.head[0], "chain": report.head[1]} if report.head else None,
        "intact": report.intact,
        "summary": report.summary(),
    }


def make_backup_folder(target: Path, data_dir: Path) -> None:
    """A new folder of mode 0700 at ``target`` (or an empty one made so), outside the data dir."""
    if target == data_dir or data_dir in target.parents:
        raise BackupError(f"{target} is inside the data dir {data_dir}; back up to a folder outside it")
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise BackupError(f"{target} exists and is not an empty folder; name a new folder for the backup")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} does not exist; create it first (only root should be able to read it)")
    target.mkdir(mode=0o700, exist_ok=True)
    target.chmod(0o700)


def leave_out_of_data(homes: bool, done: set[str]) -> Callable[[str], bool]:
    """What the walk of the data dir skips: the runtime, databases already copied, homes if not wanted."""

    def leave_out(path: str) -> bool:
        if path in done or path.endswith(SQLITE_SIDE_FILES) and path.rsplit("-", 1)[0] in done:
            return True
        if path.startswith("logs/"):
            return path not in KEPT_LOGS
        return path in RUNTIME and path != "logs" or (not homes and path.startswith("homes/"))

    return leave_out


def copy_tree(
    source: Path, target: Path, prefix: str, leave_out: Callable[[str], bool] = lambda p: False
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Copy ``source`` into ``target`` without following symlinks; return the manifest entries and what was skipped."""
    entries, skipped = [], []
    for found in walk(source, leave_out):
        path = f"{prefix}/{found.path}".rstrip("/")
        where = target / found.path
        if found.kind == "dir":
            where.mkdir(mode=0o700, exist_ok=True)
            entries.append(describe(path, found))
        elif found.kind == "symlink":
            assert found.target is not None
            os.symlink(found.target, where)
            entries.append(describe(path, found, target=found.target))
        elif found.kind == "file":
            assert found.fd is not None and found.stat is not None
            sha = copy_stream(found.fd, where)
            entries.append(describe(path, found, size=where.stat().st_size, sha256=sha))
        else:
            skipped.append({"path": path, "why": found.why})
    return entries, skipped


def holds_audit_log(database: Path) -> bool:
    """Whether ``database`` is the pipeline's audit log (its folder also holds other stores, e.g. usage)."""
    connection = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return found is not None


def copy_databases(data_dir: Path, target: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Copy each of the platform's databases (and the audit head file with its own); return their manifest entries
    and the audit log's head as checked on the copy."""
    entries: list[dict[str, Any]] = []
    audit = None
    for relative in platform_databases(data_dir):
        source, copy = data_dir / relative, target / relative
        copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        head = source.parent / HEAD_FILE
        if not head.exists() or not holds_audit_log(source):
            copy_database(source, copy)
            entries.append(_file_entry(f"{DATA}/{relative}", source, copy))
            continue
        # No audit entry commits while the shared head lock is held: the database and head file agree.
        with HeadFile(source).lock(exclusive=False):
            copy_database(source, copy)
            fd = os.open(head, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                copy_stream(fd, copy.parent / HEAD_FILE)
            finally:
                os.close(fd)
        audit = {"database": relative, **audit_head(copy)}
        entries.append(_file_entry(f"{DATA}/{relative}", source, copy))
        entries.append(_file_entry(f"{DATA}/{Path(relative).parent / HEAD_FILE}", head, copy.parent / HEAD_FILE))
    return entries, audit


def backup(settings: Settings, target: Path, homes: bool = True) -> dict[str, Any]:
    """Copy the platform's data dir and catalog into the new folder ``target``; return the manifest written there.

    A backup that fails midway leaves ``target`` empty (a folder without a manifest is no backup).
    """
    started = time.monotonic()
    data_dir, target = settings.data_dir, target.absolute()
    if not data_dir.is_dir():
        raise BackupError(f"there is no data dir at {data_dir}; set MLOPSHUB_DATA_DIR to the platform's")
    if not settings.catalog_dir.is_dir():
        raise BackupError(f"there is no catalog at {settings.catalog_dir}; set MLOPSHUB_CATALOG to the platform's")
    make_backup_folder(target, data_dir)
    try:
        (target / DATA).mkdir(mode=0o700)
        entries, audit = copy_databases(data_dir, target / DATA)
        copied = {entry["path"].removeprefix(f"{DATA}/") for entry in entries}
        data_entries, skipped = copy_tree(data_dir, target / DATA, DATA, leave_out_of_data(homes, copied))
        (target / CATALOG).mkdir(mode=0o700)
        catalog_entries, catalog_skipped = copy_tree(settings.catalog_dir, target / CATALOG, CATALOG)
    except BaseException:
        for child in target.iterdir():
            shutil.rmtree(child, ignore_errors=True)
        raise
    manifest = {
        "format": FORMAT,
        "mlopshub": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "catalog_dir": str(settings.catalog_dir),
        "homes": homes,
        "databases": [e["path"].removeprefix(f"{DATA}/") for e in entries if not e["path"].endswith(HEAD_FILE)],
        "left_out": [f"{path}/" for path in RUNTIME if path != "logs"]
        + [f"logs/ (all but {', '.join(KEPT_LOGS)})"]
        + ([] if homes else ["homes/ (--without-homes)"]),
        "audit": audit,
        "skipped": skipped + catalog_skipped,
        "entries": sorted(entries + data_entries + catalog_entries, key=lambda entry: entry["path"]),
    }
    manifest["bytes"] = sum(entry.get("size", 0) for entry in manifest["entries"])
    manifest["seconds"] = round(time.monotonic() - started, 3)
    fd = os.open(target / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1)
    return manifest


def _file_entry(path: str, source: Path, copy: Path) -> dict[str, Any]:
    """The manifest entry of a database or head file: the source's owner and mode, the copy's content."""
    found = Found(path, "file", os.stat(source, follow_symlinks=False))
    return describe(path, found, size=copy.stat().st_size, sha256=file_sha256(copy))


# --- restore ---------------------------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the backup in ``folder``; :class:`BackupError` naming it when missing or unreadable."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(
            f"{path} is missing: {folder} is not a backup made by `mlopshub backup`, or not whole"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{path} is not JSON: the backup is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), list):
        raise BackupError(f"{path} has no list of entries: the backup is damaged")
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{path}: format {manifest.get('format')!r}, this mlopshub ({__version__}) restores format {FORMAT}; "
            f"restore it with the version that made it ({manifest.get('mlopshub')})"
        )
    return manifest


def manifest_problems(entries: list[Any]) -> list[str]:
    """What in ``entries`` a restore could not write safely (pure): a path leaving the backup, an entry whose
    folder is not a folder of the backup (it would be written through a symlink), an unknown type."""
    kinds: dict[str, str] = {}
    problems = []
    for entry in entries:
        path = entry.get("path") if isinstance(entry, dict) else None
        parts = path.split("/") if isinstance(path, str) else []
        if not parts or parts[0] not in (DATA, CATALOG) or any(p in ("", ".", "..") or "\0" in p for p in parts):
            problems.append(f"{path!r}: not a path inside the backup's {DATA}/ or {CATALOG}/")
        elif entry.get("type") not in ("dir", "file", "symlink") or path in kinds:
            problems.append(f"{path}: a type {entry.get('type')!r} or listed twice")
        else:
            kinds[path] = entry["type"]
    for path in kinds:
        parent = path.rpartition("/")[0]
        if (parent and kinds.get(parent) != "dir") or (not parent and kinds[path] != "dir"):
            problems.append(f"{path}: its folder {parent or '(top)'} is not a folder of the backup")
    if kinds.get(DATA) != "dir":
        problems.append(f"{DATA}: missing")
    return problems


def verify_backup(folder: Path) -> dict[str, Any]:
    """Check that every file of the backup is there, unchanged, and nothing else is; return its manifest.

    Raises :class:`BackupError` naming the first file that does not match (nothing has been touched yet).
    """
    manifest = read_manifest(folder)
    problems = manifest_problems(manifest["entries"])
    if not problems:
        listed = {entry["path"]: entry for entry in manifest["entries"]}
        seen = set()
        for found in walk(folder, lambda path: path == MANIFEST):
            if not found.path:
                continue
            seen.add(found.path)
            entry = listed.get(found.path)
            if entry is None:
                problems.append(f"{folder / found.path}: not listed in the manifest")
            elif found.kind != entry["type"]:
                problems.append(f"{folder / found.path}: a {found.kind}, the manifest says a {entry['type']}")
            elif found.kind == "file" and _sha256(found.fd) != entry.get("sha256"):
                problems.append(f"{folder / found.path}: its content differs from the manifest (changed or damaged)")
            elif found.kind == "symlink" and found.target != entry.get("target"):
                problems.append(f"{folder / found.path}: points elsewhere than the manifest says")
        problems += [f"{folder / path}: missing" for path in listed if path not in seen]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BackupError(f"the backup does not match {folder / MANIFEST}, nothing was restored: {problems[0]}{more}")
    return manifest


def _sha256(fd: int | None) -> str:
    assert fd is not None
    digest = hashlib.sha256()
    while chunk := os.read(fd, CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def refuse_while_running(settings: Settings) -> None:
    """A restore replaces the data dir under the platform's feet: refuse while its supervisor or parts run."""
    pid = launcher.supervisor_pid(settings)
    if pid:
        raise BackupError(
            f"mlopshub is running on {settings.data_dir} (supervisor pid {pid}, {settings.run_dir / 'supervisor.pid'});"
            " stop it with `mlopshub down`, then restore"
        )
    left = launcher.leftover_processes(settings)
    if left:
        pids = ", ".join(str(process.pid) for process in left)
        raise BackupError(f"processes of an earlier run still use {settings.data_dir} (pids {pids}); `mlopshub down`")


def ensure_accounts(entries: list[dict[str, Any]], prefix: str, final: Path) -> None:
    """As root: create the platform's Unix accounts and team groups the backup names but this machine lacks.

    A workspace account's home is the first folder it owns (``homes/<user>``), a model account's its
    ``.home``; other names that do not exist here keep their numeric ids.
    """
    for entry in entries:
        name = entry.get("user")
        if name and name.startswith((accounts.UNIX_USER_PREFIX, ACCOUNT_PREFIX)) and not _exists(pwd.getpwnam, name):
            accounts.ensure_unix_user(name, final / entry["path"].removeprefix(prefix).lstrip("/"))
    for entry in entries:
        group = entry.get("group")
        if group and group.startswith(accounts.TEAM_GROUP_PREFIX) and not _exists(grp.getgrnam, group):
            accounts.ensure_group(group)


def _exists(lookup: Callable[[str], Any], name: str) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def owner_of(entry: dict[str, Any]) -> tuple[int, int]:
    """The uid and gid to give a restored entry: its owner's and group's by name here, else the recorded ids."""
    uid, gid = entry["uid"], entry["gid"]
    if entry.get("user") and _exists(pwd.getpwnam, entry["user"]):
        uid = pwd.getpwnam(entry["user"]).pw_uid
    if entry.get("group") and _exists(grp.getgrnam, entry["group"]):
        gid = grp.getgrnam(entry["group"]).gr_gid
    return uid, gid


def restored_mode(entry: dict[str, Any]) -> int:
    """The mode to give a restored entry: the recorded one, without setuid/setgid on files (folders keep setgid:
    team remotes are 2770); a workspace could have put a setuid file among its files."""
    mode = int(entry["mode"], 8) & 0o7777
    return mode & ~(stat.S_ISUID | stat.S_ISGID) if entry["type"] == "file" else mode


def write_tree(source: Path, manifest: dict[str, Any], prefix: str, target: Path, final: Path) -> None:
    """Write the backup's ``prefix`` entries into the new folder ``target`` (to be renamed to ``final``), with
    their owners (as root), modes and times; each file is checked against the manifest again as it is read."""
    entries = sorted(
        (e for e in manifest["entries"] if e["path"] == prefix or e["path"].startswith(prefix + "/")),
        key=lambda e: e["path"],
    )
    as_root = os.geteuid() == 0
    if as_root:
        ensure_accounts(entries, prefix, final)
    folders = []
    for entry in entries:
        where = target / entry["path"].removeprefix(prefix).lstrip("/")
        if entry["type"] == "dir":
            where.mkdir(mode=0o700)
            folders.append((where, entry))
            continue
        if entry["type"] == "symlink":
            os.symlink(entry["target"], where)
        else:
            fd = os.open(source / entry["path"], os.O_RDONLY | os.O_NOFOLLOW)
            try:
                if copy_stream(fd, where) != entry["sha256"]:
                    raise BackupError(f"{source / entry['path']} changed while it was restored; nothing was restored")
            finally:
                os.close(fd)
        _set_metadata(where, entry, as_root)
    for where, entry in reversed(folders):  # after their contents: a folder's time changes as it is filled
        _set_metadata(where, entry, as_root)


def _set_metadata(where: Path, entry: dict[str, Any], as_root: bool) -> None:
    if as_root:
        os.chown(where, *owner_of(entry), follow_symlinks=False)
    if entry["type"] != "symlink":
        where.chmod(restored_mode(entry))
    os.utime(where, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)


def move_aside(folder: Path, stamp: str) -> Path | None:
    """Move ``folder`` to ``<folder>.before-restore-<stamp>`` (an empty one is removed); return where it went."""
    if not folder.exists() and not folder.is_symlink():
        return None
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
        return None
    aside = beside(folder, "before-restore", stamp)
    folder.rename(aside)
    return aside


def beside(folder: Path, what: str, stamp: str) -> Path:
    """A free name beside ``folder``: ``<folder>.<what>-<stamp>``, numbered when two restores share a second."""
    candidate, number = folder.with_name(f"{folder.name}.{what}-{stamp}"), 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = folder.with_name(f"{folder.name}.{what}-{stamp}-{number}")
    return candidate


def replace_with(source: Path, manifest: dict[str, Any], prefix: str, folder: Path, stamp: str) -> Path | None:
    """Build ``folder`` anew from the backup beside it, then move the old one aside and the new one in."""
    staging = beside(folder, "restoring", stamp)
    try:
        write_tree(source, manifest, prefix, staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = move_aside(folder, stamp)
    staging.rename(folder)
    return aside


def tree_contents(folder: Path) -> dict[str, tuple[str, str | None]]:
    """What ``folder`` holds, to compare with a backup: path -> (type, sha256 or symlink target)."""
    contents: dict[str, tuple[str, str | None]] = {}
    if folder.is_dir():
        for found in walk(folder):
            if found.path:
                contents[found.path] = (found.kind, _sha256(found.fd) if found.kind == "file" else found.target)
    return contents


def restore_catalog(settings: Settings, source: Path, manifest: dict[str, Any], stamp: str, replace: bool) -> str:
    """Put the backup's catalog where this platform reads it when none is there (or ``replace``); say what was done.

    A catalog that differs is kept by default: it is often a checkout's ``profiles/``, newer than the backup.
    """
    wanted = {
        e["path"].removeprefix(CATALOG + "/"): (e["type"], e.get("sha256") or e.get("target"))
        for e in manifest["entries"]
        if e["path"].startswith(CATALOG + "/")
    }
    current = tree_contents(settings.catalog_dir)
    if current == wanted:
        return f"the catalog in {settings.catalog_dir} is the backup's"
    if settings.catalog_dir.exists() and not replace:
        differ = sorted(set(current) ^ set(wanted) | {p for p in set(current) & set(wanted) if current[p] != wanted[p]})
        return (
            f"the catalog in {settings.catalog_dir} differs from the backup's ({', '.join(differ)}) and was kept; "
            f"`mlopshub restore --replace-catalog` puts the backup's ({source / CATALOG}) in its place"
        )
    aside = replace_with(source, manifest, CATALOG, settings.catalog_dir, stamp)
    return f"the catalog restored into {settings.catalog_dir}" + (
        f"; the one it replaced is at {aside}" if aside else ""
    )


def check_audit(data_dir: Path, manifest: dict[str, Any]) -> str | None:
    """The restored audit log checked in full; :class:`BackupError` unless it is the one the backup recorded."""
    recorded = manifest.get("audit")
    if not recorded:
        return None
    report = verify_file(data_dir / recorded["database"])
    head = {"seq": report.head[0], "chain": report.head[1]} if report.head else None
    if head != recorded["head"] or report.intact != recorded["intact"]:
        raise BackupError(
            f"restored, but the audit log is not the one backed up ({recorded['summary']}): {report.summary()}; "
            "check it with `mlopshub audit verify`"
        )
    return report.summary()


def _make_parents(folder: Path) -> None:
    """Missing parents of the data dir, passable by workspaces (as `mlopshub up` makes them)."""
    for parent in reversed([p for p in folder.parents if not p.exists()]):
        parent.mkdir()
        parent.chmod(launcher.DATA_DIR_MODE)


def restore(settings: Settings, source: Path, replace_catalog: bool = False) -> dict[str, Any]:
    """Bring the backup in ``source`` back as the data dir (and catalog) of this stopped platform.

    The backup is checked whole first; the data dir is built beside the current one, which is then moved
    aside (``<data dir>.before-restore-<time>``), never deleted. Returns what was done.
    """
    refuse_while_running(settings)
    source = source.resolve()
    manifest = verify_backup(source)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    _make_parents(settings.data_dir)
    aside = replace_with(source, manifest, DATA, settings.data_dir, stamp)
    return {
        "data_dir": str(settings.data_dir),
        "moved_aside": str(aside) if aside else None,
        "catalog": restore_catalog(settings, source, manifest, stamp, replace_catalog),
        "audit": check_audit(settings.data_dir, manifest),
        "backup": {key: manifest.get(key) for key in ("created", "mlopshub", "data_dir", "homes")},
    }
