"""Lineage tags for every MLflow run started in a workspace (an MLflow run context provider).

Registered on MLflow's ``mlflow.run_context_provider`` entry point, so
``mlflow.start_run()`` tags the run without the user writing anything: the
git commit and whether the tree was dirty, the DVC versions (hashes) of the
data tracked in the project, the notebook path, the workspace profile and
image. R users get the same tags: the R helper starts runs through the same
Python client.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
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


def git(args: list[str], cwd: Path) -> str | None:
    """Output of ``git <args>`` in ``cwd``, or None when it fails (not a repository, no git)."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


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
    commit = git(["rev-parse", "HEAD"], cwd)
    if commit:
        status = git(["status", "--porcelain", "--untracked-files=no"], cwd)
        tags[TAG_PREFIX + "git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit
        tags[TAG_PREFIX + "git.dirty"] = "true" if status else "false"
    root = project_root(cwd)
    if root is not None:
        versions = dvc_versions(root)
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
