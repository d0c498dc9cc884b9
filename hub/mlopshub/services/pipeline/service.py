"""Starting the pipeline service as the hub starts it: settings from the environment, then serve.

Environment (set in the hub's service definition):

* ``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_API_URL``,
  ``JUPYTERHUB_API_TOKEN``: set by the hub for a managed service;
* ``MLFLOW_TRACKING_URI``: the MLflow server the registry lives in;
* ``MLOPSHUB_CATALOG``: the catalog folder (teams' thresholds and hold-out sets);
* ``MLOPSHUB_PIPELINE_DIR``: the pipeline's data (releases and audit SQLite file, model copies, server logs);
* ``MLOPSHUB_PUBLIC_URL``: the hub's public address, for endpoint addresses shown on releases;
* ``MLOPSHUB_MODELS_PREFIX``: where model endpoints are routed (default ``/services/models/``);
* ``MLOPSHUB_DVC_REMOTES``: one machine: the folder of the teams' DVC remotes (the lineage gate checks
  that training data was pushed there);
* ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``: the MLflow auth store's admin;
* ``MLOPSHUB_MLFLOW_WORKSPACES``: ``true`` (default) when MLflow runs with a workspace per team.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer

from mlopshub import catalog
from mlopshub.pipeline import ReleaseStore
from mlopshub.serving import Endpoints
from mlopshub.serving.sandbox import RunAs, team_accounts

from .app import make_app
from .auth import Authenticate, hub_authenticator
from .holdout import HoldoutLoader, PushedCheck, dvc_holdout_loader, local_remote_check
from .registry import Registry
from .runner import ReleaseRunner, TeamRelease, cache_dir
from .scheduler import start_scheduler

log = logging.getLogger("mlopshub.pipeline")


def team_releases(cat: catalog.Catalog) -> dict[str, TeamRelease]:
    """Each catalog team's release settings."""
    return {
        name: TeamRelease(thresholds=dict(team.release.get("thresholds") or {}), holdout=team.release.get("holdout"))
        for name, team in cat.teams.items()
    }


def build_runner(
    *,
    data_dir: str | Path,
    tracking_uri: str,
    teams: Mapping[str, TeamRelease],
    public_url: str,
    models_prefix: str = "/services/models/",
    load_holdout: HoldoutLoader | None = None,
    pushed: PushedCheck | None = None,
    workspaces: bool = False,
    run_as: Mapping[str, RunAs] | None = None,
) -> ReleaseRunner:
    """The release runner on ``data_dir`` (created if missing)."""
    data_dir = Path(data_dir)
    store = ReleaseStore(data_dir / "pipeline.sqlite")
    head = store.audit.head()
    # An anchor outside the file: a later truncation of the log shows against this line (AuditLog.verify).
    log.info("audit log head at start: %s", head)
    base = public_url.rstrip("/") + "/" + models_prefix.strip("/")
    return ReleaseRunner(
        store=store,
        registry=Registry(tracking_uri, cache_dir(data_dir), workspaces=workspaces),
        endpoints=Endpoints(log_dir=data_dir / "logs", run_as=run_as),
        teams=teams,
        load_holdout=load_holdout or dvc_holdout_loader(),
        endpoint_url=lambda model, stage: f"{base}/{model}/{stage}/invocations",
        pushed=pushed,
    )


async def serve(
    runner: ReleaseRunner,
    authenticate: Authenticate,
    *,
    host: str,
    port: int,
    prefix: str,
    models_prefix: str,
    models_authenticate: Authenticate | None = None,
    consumers: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Resume what a restart interrupted, then answer requests until cancelled."""
    app = make_app(
        runner,
        authenticate,
        prefix=prefix,
        models_prefix=models_prefix,
        models_authenticate=models_authenticate,
        consumers=consumers,
    )
    server = HTTPServer(app, xheaders=False)
    server.listen(port, host)
    log.info("pipeline service on http://%s:%d%s", host, port, prefix)
    # Each team's model-server parent starts now, so a team's first release does not wait for its imports.
    await runner.endpoints.warm(*runner.teams)
    await runner.resume()
    scheduler = start_scheduler(runner)  # batch models in production, on their cron schedules
    try:
        await asyncio.Event().wait()
    finally:
        scheduler.cancel()
        server.stop()
        await runner.endpoints.close()


def main() -> None:
    """``python -m mlopshub.services.pipeline`` (run by the hub)."""
    from jupyterhub.services.auth import HubAuth

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    env = os.environ
    url = urlparse(env.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/pipeline/")
    models_prefix = env.get("MLOPSHUB_MODELS_PREFIX", "/services/models/")
    cat = catalog.load(env["MLOPSHUB_CATALOG"])
    data_dir = Path(env["MLOPSHUB_PIPELINE_DIR"])
    runner = build_runner(
        data_dir=data_dir,
        tracking_uri=env["MLFLOW_TRACKING_URI"],
        teams=team_releases(cat),
        public_url=env.get("MLOPSHUB_PUBLIC_URL", ""),
        models_prefix=models_prefix,
        pushed=local_remote_check(env["MLOPSHUB_DVC_REMOTES"]) if env.get("MLOPSHUB_DVC_REMOTES") else None,
        workspaces=env.get("MLOPSHUB_MLFLOW_WORKSPACES", "true") == "true",
        # As root, each team's model code runs as the team's own Unix account (mlopshub.serving.sandbox).
        run_as=team_accounts(cache_dir(data_dir), cat.teams),
    )
    hub_auth = HubAuth(cache_max_age=60)
    # The API needs access to this service; endpoints need access to the models service.
    authenticate = hub_authenticator(hub_auth)
    models_authenticate = hub_authenticator(hub_auth, {"access:services!service=models"})
    asyncio.run(
        serve(
            runner,
            authenticate,
            models_authenticate=models_authenticate,
            consumers={name: consumer.models for name, consumer in cat.consumers.items()},
            host=url.hostname or "127.0.0.1",
            port=url.port or 10102,
            prefix=prefix,
            models_prefix=models_prefix,
        )
    )
