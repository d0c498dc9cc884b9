"""The one routing table of the extension: every REST endpoint, under ``<base_url>/mlopshub-lab/``."""

from __future__ import annotations

from jupyter_server.utils import url_path_join
from tornado.web import Application

from . import handlers

#: The API namespace is the package name.
NAMESPACE = "mlopshub-lab"

#: Path below the namespace -> handler. ``openapi.yaml`` documents exactly these (a test checks it).
ROUTES: list[tuple[str, type[handlers.MlopshubHandler]]] = [
    ("version", handlers.VersionHandler),
    ("data/project", handlers.ProjectHandler),
    ("data/enable", handlers.EnableHandler),
    ("data/datasets", handlers.DatasetsHandler),
    ("data/history", handlers.HistoryHandler),
    ("data/track", handlers.TrackHandler),
    ("data/version", handlers.SaveVersionHandler),
    ("data/push", handlers.PushHandler),
    ("data/pull", handlers.PullHandler),
    ("data/restore", handlers.RestoreHandler),
    ("experiments/workspaces", handlers.WorkspacesHandler),
    ("experiments/list", handlers.ExperimentsHandler),
    ("experiments/runs", handlers.RunsHandler),
    ("experiments/compare", handlers.CompareHandler),
    ("mlflow-ui", handlers.MlflowUiHandler),
]


def setup_handlers(web_app: Application) -> None:
    """Register every route of ``ROUTES`` on the server, below its base URL."""
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base_url, NAMESPACE, path), handler) for path, handler in ROUTES])
