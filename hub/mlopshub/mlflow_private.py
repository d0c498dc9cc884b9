"""The private MLflow names mlopshub uses, each wrapped here once, with why no public API does the same.

An MLflow upgrade may rename or change any of them without notice: ``tests/unit/test_mlflow_private.py``
checks each one (that it exists, its signature, and that MLflow still calls it as relied on here), so such
an upgrade fails there, not in a running platform.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow.store.artifact.artifact_repo import ArtifactRepository

#: Where ``mlflow server`` starts its web server: ``mlflow.server._run_server`` builds the uvicorn command line
#: and environment from the CLI's options and hands them to this name, imported from ``mlflow.utils.process``.
SERVER_START = "_exec_cmd"


def replace_server_start(start: Callable[..., Any]) -> None:
    """Have ``mlflow server`` call ``start(command, extra_env=..., ...)`` where it would spawn its web server.

    Why private: ``mlflow server`` has no public way to run the web server in its own process; it always
    spawns uvicorn as a child and waits. Running the app without the CLI would mean copying what the CLI
    does first (store migrations, workspace and security settings, the auth app's bootstrap, a dozen
    environment variables, some private to MLflow); this one hook keeps all of that MLflow's.
    """
    import mlflow.server  # the server's modules (Flask, its handlers) are for the MLflow process alone

    setattr(mlflow.server, SERVER_START, start)


def download_file(repository: ArtifactRepository, remote_path: str, local_path: str) -> None:
    """Download the file ``remote_path`` of ``repository`` to ``local_path``, in the calling thread.

    Why private: the public ``download_artifacts`` runs this same method in the repository's thread pool,
    whose threads do not see the request-scoped MLflow workspace of the caller (a context variable,
    ``ServerWorkspaceContext``); the server then refuses a team's files asked for without it. Every
    artifact repository implements this method: it is the abstract one ``download_artifacts`` is built on.
    """
    repository._download_file(remote_path, local_path)
