"""The one routing table of the extension: every REST endpoint, under ``<base_url>/mlopshub-lab/``."""

from __future__ import annotations

from jupyter_server.utils import url_path_join
from tornado.web import Application

from . import handlers

#: The API namespace is the package name.
NAMESPACE = "mlopshub-lab"

#: One path segment captured for a handler argument; the handler checks it properly (400 or 422 naming it).
_SEGMENT = r"[^/]+"

#: Path below the namespace -> handler. ``openapi.yaml`` documents exactly these, with ``(?P<x>...)``
#: written ``{x}`` (a test checks it).
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
    ("experiments/history", handlers.MetricHistoryHandler),
    ("mlflow-ui", handlers.MlflowUiHandler),
    ("models/logged", handlers.LoggedModelsHandler),
    ("me", handlers.MeHandler),
    ("releases", handlers.ReleasesHandler),
    (f"releases/(?P<release_id>{_SEGMENT})", handlers.ReleaseHandler),
    (f"releases/(?P<release_id>{_SEGMENT})/approve", handlers.ApproveHandler),
    (f"releases/(?P<release_id>{_SEGMENT})/reject", handlers.RejectHandler),
    (f"releases/(?P<release_id>{_SEGMENT})/try", handlers.TryEndpointHandler),
    (f"models/(?P<name>{_SEGMENT})/rollback", handlers.RollbackHandler),
    ("audit", handlers.AuditHandler),
    ("monitoring", handlers.MonitoringHandler),
    (f"monitoring/(?P<model>{_SEGMENT})", handlers.MonitoredModelHandler),
    (f"monitoring/(?P<model>{_SEGMENT})/drift", handlers.DriftCheckHandler),
    (f"monitoring/(?P<model>{_SEGMENT})/settings", handlers.MonitoringSettingsHandler),
    (f"monitoring/(?P<model>{_SEGMENT})/report", handlers.MonitoringReportHandler),
]


def setup_handlers(web_app: Application) -> None:
    """Register every route of ``ROUTES`` on the server, below its base URL."""
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base_url, NAMESPACE, path), handler) for path, handler in ROUTES])
