"""Starting the pipeline service as the hub starts it: settings from the environment, then serve.

Environment (set in the hub's service definition):

* ``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_API_URL``,
  ``JUPYTERHUB_API_TOKEN``: set by the hub for a managed service;
* ``MLFLOW_TRACKING_URI``: the MLflow server the registry lives in;
* ``MLOPSHUB_CATALOG``: the catalog folder (teams' thresholds and hold-out sets);
* ``MLOPSHUB_PIPELINE_DIR``: the pipeline's data (releases and audit SQLite file, model copies, server logs);
* ``MLOPSHUB_PUBLIC_URL``: the hub's public address, for endpoint addresses shown on releases;
* ``MLOPSHUB_MODELS_PREFIX``: where model endpoints are routed (default ``/services/models/``);
* ``MLOPSHUB_HOMES``: one machine: the folder of the users' homes (``<folder>/<user>``); a release reads
  its hold-out set and batch input only from its publisher's projects there, as the publisher;
* ``MLOPSHUB_DVC_REMOTES``: one machine: the folder of the teams' DVC remotes (the lineage gate checks
  that training data was pushed there);
* ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``: the MLflow auth store's admin;
* ``MLOPSHUB_MLFLOW_WORKSPACES``: ``true`` (default) when MLflow runs with a workspace per team;
* ``MLOPSHUB_SERVING_SOCKET``: one machine: the control socket of the models service
  (:mod:`mlopshub.serving.gateway`), which serves the endpoints this service switches; unset, the endpoints
  are served by this process;
* ``MLOPSHUB_MODE``: ``kubernetes`` to serve models in the cluster (KServe InferenceServices, batch
  Jobs and CronJobs in ``mlopshub-models``) instead of as processes of this service; then also
  ``MLOPSHUB_APPLY``, ``false`` to only write them under ``<MLOPSHUB_PIPELINE_DIR>/manifests`` for someone
  else to apply (default ``true``: applied through the Kubernetes API, reached with ``MLOPSHUB_KUBECONFIG``,
  unset: the pod's ServiceAccount), ``MLOPSHUB_ARTIFACTS_DESTINATION``, MLflow's
  ``--artifacts-destination`` (``s3://<bucket>/<path>``), and ``MLOPSHUB_CAPTURE_PORT`` (default
  :data:`CAPTURE_PORT`), the port of the capture sink that the predictors' payload logger posts to.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer

from mlopshub import catalog
from mlopshub.logs import bound_handlers
from mlopshub.monitoring.capture import Capture
from mlopshub.monitoring.cloudevents import ReleaseRoutes, capture_sink_routes
from mlopshub.monitoring.monitor import Monitor
from mlopshub.pipeline import ReleaseStore
from mlopshub.pipeline.audit import AuditLog, Verification
from mlopshub.serving import Endpoint, Endpoints, KServeEndpoints, ServerFailed
from mlopshub.serving.gateway import RemoteEndpoints
from mlopshub.serving.manifests import ManifestDeployer
from mlopshub.serving.sandbox import RunAs, TeamAccounts, models_dir
from mlopshub.usage import UsageStore

from . import cluster_teams
from .app import make_app
from .auth import Authenticate, hub_authenticator
from .holdout import HoldoutLoader, PushedCheck, dvc_holdout_loader, local_remote_check
from .monitoring import ModelMonitoring, check_seconds_from
from .projects import ProjectReader
from .registry import Registry
from .runner import Cluster, ReleaseRunner, TeamRelease
from .scheduler import start_scheduler
from .team_admin import Hub, TeamAdmin

log = logging.getLogger("mlopshub.pipeline")

#: Kubernetes: the port of the capture sink (pipeline.yaml's container port ``capture``, the one port the
#: pipeline's NetworkPolicy opens to the predictors, and to nothing else).
CAPTURE_PORT = 8090


def team_releases(cat: catalog.Catalog) -> dict[str, TeamRelease]:
    """Each catalog team's release settings."""
    return {
        name: TeamRelease(
            thresholds=dict(team.release.get("thresholds") or {}),
            holdout=team.release.get("holdout"),
            drift=dict(team.release.get("drift") or {}),
        )
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
    mode: str = "local",
    env: Mapping[str, str] | None = None,
    projects: ProjectReader | None = None,
    serving_socket: str | Path | None = None,
) -> ReleaseRunner:
    """The release runner on ``data_dir`` (created if missing).

    ``mode`` is ``local`` (models run as processes of this service) or
    ``kubernetes`` (:func:`cluster_endpoints`, settings from ``env``).
    ``projects`` reads publishers' projects (hold-out sets, batch inputs);
    by default from ``<data_dir>/homes``, as their Unix accounts when root.
    ``serving_socket``: one machine, endpoints served by the models service
    behind that control socket (:class:`RemoteEndpoints`); None, by this process.
    """
    projects = projects or ProjectReader(Path(data_dir) / "homes")
    data_dir = Path(data_dir)
    store = ReleaseStore(data_dir / "pipeline.sqlite")
    check_audit_at_start(store.audit)
    base = public_url.rstrip("/") + "/" + models_prefix.strip("/")
    endpoints: Endpoints | KServeEndpoints | RemoteEndpoints
    cluster: Cluster | None = None
    if mode == "kubernetes":
        endpoints, cluster = cluster_endpoints(data_dir, env or {})
    elif mode == "local" and serving_socket:
        endpoints = RemoteEndpoints(serving_socket, run_as=run_as, log_dir=data_dir / "logs" / "gates")
    elif mode == "local":
        endpoints = Endpoints(log_dir=data_dir / "logs", socket_dir=data_dir / "sockets", run_as=run_as)
    else:
        raise ValueError(f"MLOPSHUB_MODE={mode!r}: expected 'local' (one machine) or 'kubernetes'")
    return ReleaseRunner(
        store=store,
        registry=Registry(tracking_uri, models_dir(data_dir), workspaces=workspaces),
        endpoints=endpoints,
        teams=teams,
        load_holdout=load_holdout or dvc_holdout_loader(projects),
        endpoint_url=lambda model, stage: f"{base}/{model}/{stage}/invocations",
        pushed=pushed,
        cluster=cluster,
        projects=projects,
    )


def check_audit_at_start(audit: AuditLog) -> Verification:
    """Check the whole audit chain and its head file; on a broken chain the log refuses to record (and says why).

    Also writes the head file when a data dir from before it has none, or a
    crash left it one entry behind (:meth:`AuditLog.start`).
    """
    report = audit.start()
    # The head in the service log too: one more copy outside the database to compare with later.
    log.info("%s (checked in %.2f s)", report.summary(), report.seconds)
    for note in report.notes:
        log.warning("audit: %s", note)
    if not report.intact:
        for problem in sorted(report.problems, key=lambda p: p.seq):
            log.error("audit: entry %d: %s: %s", problem.seq, problem.kind, problem.message)
        log.error("audit: the chain is broken; the pipeline records nothing new and resumes nothing until it is fixed")
    return report


async def resume_unless_audit_broken(runner: ReleaseRunner) -> None:
    """Resume what a restart interrupted, unless the audit log is broken (resuming records entries)."""
    if runner.store.audit.broken is None:
        await runner.resume()


#: Seconds between full checks of the audit log while the service runs (each append checks the tail).
AUDIT_CHECK_SECONDS = 3600.0


async def check_audit_periodically(audit: AuditLog, every: float = AUDIT_CHECK_SECONDS) -> None:
    """A full check every ``every`` s, in a thread: catches an old entry changed while nothing is appended."""
    while audit.broken is None:
        await asyncio.sleep(every)
        report = await asyncio.to_thread(audit.check)
        if not report.intact:
            log.error("audit: %s; recording stops", report.summary())


def cluster_endpoints(data_dir: Path, env: Mapping[str, str]) -> tuple[KServeEndpoints, Cluster]:
    """Kubernetes mode: InferenceServices, Jobs and CronJobs written to ``<data_dir>/manifests`` and applied.

    ``MLOPSHUB_APPLY=false`` only writes them (:meth:`ManifestDeployer.from_env`),
    ``MLOPSHUB_PREDICTOR_URL`` where a predictor answers (default
    :data:`mlopshub.serving.kserve_endpoints.PREDICTOR_URL`),
    ``MLOPSHUB_ARTIFACTS_DESTINATION`` MLflow's ``--artifacts-destination``;
    the gates run as Jobs created through the Kubernetes API, reached with
    ``MLOPSHUB_KUBECONFIG`` (unset: the pod's ServiceAccount), and fetch the
    model from the object store at ``MLOPSHUB_S3_ENDPOINT`` (unset: AWS S3).
    """
    deployer = ManifestDeployer.from_env(data_dir / "manifests", env)
    options = {"url_template": env["MLOPSHUB_PREDICTOR_URL"]} if env.get("MLOPSHUB_PREDICTOR_URL") else {}
    cluster = Cluster(
        deployer,
        artifacts_destination=env.get("MLOPSHUB_ARTIFACTS_DESTINATION", ""),
        kubeconfig=env.get("MLOPSHUB_KUBECONFIG", ""),
        s3_endpoint=env.get("MLOPSHUB_S3_ENDPOINT", ""),
    )
    return KServeEndpoints(deployer, **options), cluster


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
    team_admin: TeamAdmin | None = None,
    monitoring: ModelMonitoring | None = None,
    capture_port: int | None = None,
) -> None:
    """Resume what a restart interrupted, then answer requests until cancelled (and, with ``monitoring``, check
    every served model's drift on its schedule).

    With ``capture_port`` (Kubernetes), the capture sink of KServe's payload logger is served there, alone
    (:func:`capture_sink_app`), writing into the monitor's folder; the API's port never answers it.
    """
    capture: Capture | None = None
    capture_server: HTTPServer | None = None
    if capture_port is not None:
        if monitoring is None or capture_port == port:
            raise ValueError(
                f"capture port {capture_port}: the capture sink needs monitoring (it writes where the drift checks "
                f"read) and a port of its own, not the API's {port} (set MLOPSHUB_CAPTURE_PORT)"
            )
        capture = Capture(monitoring.monitor.folder)
        capture_server = HTTPServer(capture_sink_app(runner, capture, prefix), xheaders=False)
        capture_server.listen(capture_port, host)
        log.info("capture sink on http://%s:%d%scapture (for the predictors only)", host, capture_port, prefix)
    app = make_app(
        runner,
        authenticate,
        prefix=prefix,
        models_prefix=models_prefix,
        models_authenticate=models_authenticate,
        consumers=consumers,
        team_admin=team_admin,
        monitoring=monitoring,
    )
    if monitoring is not None:
        runner.monitoring = monitoring
    drift_checks = asyncio.ensure_future(monitoring.run()) if monitoring is not None else None
    following = asyncio.ensure_future(team_admin.follow()) if team_admin is not None else None
    server = HTTPServer(app, xheaders=False)
    server.listen(port, host)
    log.info("pipeline service on http://%s:%d%s", host, port, prefix)
    # Each team's model-server parent starts now, so a team's first release does not wait for its imports.
    await runner.endpoints.warm(*runner.teams)
    await resume_unless_audit_broken(runner)
    audit_check = asyncio.ensure_future(check_audit_periodically(runner.store.audit))
    if isinstance(runner.endpoints, RemoteEndpoints):
        refusals = asyncio.ensure_future(record_refusals(runner, runner.endpoints))
    # Batch models in production, on their cron schedules; in Kubernetes their CronJobs do it.
    scheduler = start_scheduler(runner) if runner.placement.runs_schedules else None
    try:
        await asyncio.Event().wait()
    finally:
        audit_check.cancel()
        if drift_checks is not None:
            drift_checks.cancel()
            monitoring.monitor.close()  # type: ignore[union-attr]
        if following is not None:
            following.cancel()
        if isinstance(runner.endpoints, RemoteEndpoints):
            refusals.cancel()
        if scheduler is not None:
            scheduler.cancel()
        server.stop()
        if capture_server is not None:
            capture_server.stop()
        await runner.endpoints.close()
        if capture is not None:
            # What was captured and queued is written before the process goes.
            await asyncio.to_thread(capture.close)


def capture_sink_app(runner: ReleaseRunner, capture: Capture, prefix: str) -> web.Application:
    """The capture sink's own application: ``POST {prefix}capture`` and nothing else.

    KServe's payload logger cannot send credentials, so the sink cannot authenticate its callers: it is served
    on a port of its own, which the pipeline's NetworkPolicy opens to the models' predictors only
    (helm-values/platform/manifests/networkpolicies.yaml), while workspaces reach the API's port. On the API's
    port, a workspace could forge captures.
    """
    return web.Application(capture_sink_routes(prefix, capture, ReleaseRoutes(runner.store)))


def capture_port_from(environ: Mapping[str, str]) -> int:
    """The capture sink's port from ``MLOPSHUB_CAPTURE_PORT`` (default :data:`CAPTURE_PORT`)."""
    text = environ.get("MLOPSHUB_CAPTURE_PORT") or str(CAPTURE_PORT)
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"MLOPSHUB_CAPTURE_PORT must be a TCP port number (1-65535), not {text!r}")
    return int(text)


#: Seconds between two reads of the models service's table (endpoints shown by the API, refusals to record).
FOLLOW_SERVING_EVERY = 2.0


async def record_refusals(runner: ReleaseRunner, remote: RemoteEndpoints, every: float = FOLLOW_SERVING_EVERY) -> None:
    """Write to the audit log each endpoint the models service stopped because its model changed (then forget it
    there): the models service keeps a refusal until this has recorded it, through any restart of either."""
    while True:
        try:
            await remote.refresh()
            for refusal in remote.refusals:
                endpoint = Endpoint(refusal["model"], refusal["stage"], str(refusal["version"]), server=None)  # type: ignore[arg-type]
                runner.endpoint_refused(endpoint, refusal["reason"])
                await remote.forget_refusal(refusal["id"])
        except ServerFailed as error:
            log.warning("%s", error)
        await asyncio.sleep(every)


def main() -> None:
    """``python -m mlopshub.services.pipeline`` (run by the platform's supervisor, or the hub)."""
    from jupyterhub.services.auth import HubAuth

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Request paths and bodies are attacker-controlled: no log line carries one whole.
    bound_handlers()
    # The hub runs with umask 077 (its data dir is private). Here files are group-readable and folders passable:
    # model copies and gate requests land in each team's setgid folder (group mlopshub-<team>) for the team's
    # model account to read, and batch outputs in folders it passes through. Other files keep group root.
    os.umask(0o026)
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
        run_as=TeamAccounts(models_dir(data_dir), cat.teams),
        mode=env.get("MLOPSHUB_MODE", "local"),
        env=env,
        projects=ProjectReader(env["MLOPSHUB_HOMES"]) if env.get("MLOPSHUB_HOMES") else None,
        serving_socket=env.get("MLOPSHUB_SERVING_SOCKET") or None,
    )
    # hub_authenticator keeps each answer for TRUST_SECONDS itself: HubAuth's cache is written, never read.
    hub_auth = HubAuth(cache_max_age=1)
    # The API needs access to this service; endpoints need access to the models service.
    authenticate = hub_authenticator(hub_auth)
    models_authenticate = hub_authenticator(hub_auth, {"access:services!service=models"})
    asyncio.run(
        serve(
            runner,
            authenticate,
            models_authenticate=models_authenticate,
            consumers={name: consumer.models for name, consumer in cat.consumers.items()},
            team_admin=TeamAdmin(
                runner,
                Hub(env["JUPYTERHUB_API_URL"], env["JUPYTERHUB_API_TOKEN"]),
                cat,
                UsageStore(data_dir / "usage.sqlite"),
                cluster_teams.from_env(env),
                Path(env["MLOPSHUB_DVC_REMOTES"]) if env.get("MLOPSHUB_DVC_REMOTES") else None,
            )
            if env.get("JUPYTERHUB_API_URL")
            else None,
            monitoring=ModelMonitoring(runner, Monitor(data_dir / "monitoring"), check_seconds=check_seconds_from(env)),
            # In Kubernetes the predictors' payload logger posts captures here; one machine captures in the
            # models service (mlopshub.serving.gateway).
            capture_port=capture_port_from(env) if runner.cluster is not None else None,
            host=url.hostname or "127.0.0.1",
            port=url.port or 10102,
            prefix=prefix,
            models_prefix=models_prefix,
        )
    )
