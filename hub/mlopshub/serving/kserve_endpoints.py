"""Online endpoints in Kubernetes: each (model, stage) is a KServe InferenceService the proxy forwards to.

:class:`KServeEndpoints` has the interface of :class:`~mlopshub.serving.Endpoints`
(``deploy``, ``undeploy``, ``get``, ``all``, ``warm``, ``close``, ``run_as``,
``upstream``), so the runner and the proxy use either without knowing which.
A deploy writes the InferenceService with a
:class:`~mlopshub.serving.manifests.ManifestDeployer` and applies it through
the Kubernetes API (server-side apply), watches it until KServe reports it
Ready, then waits until its predictor answers readiness (``/v2/health/ready``,
as MLServer does, or ``/ping``), and only then switches
:meth:`~KServeEndpoints.get` to the new version. When it never gets ready,
the previous file is applied again and the previous endpoint keeps serving.

The proxy's contract does not change: KServe's MLflow runtime (MLServer with
``mlserver-mlflow``) answers MLflow's ``/invocations`` and ``/ping`` besides
the V2 protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .apply import ApplyFailed
from .endpoints import Endpoint, check_stage
from .kserve import NAMESPACE
from .manifests import ManifestDeployer
from .names import inference_service_name
from .server import until_idle
from .upstream import Upstream

log = logging.getLogger("mlopshub.serving")

#: Where a predictor answers inside the cluster; ``{name}`` is the InferenceService, ``{namespace}`` its namespace.
PREDICTOR_URL = "http://{name}-predictor.{namespace}.svc.cluster.local"
#: Readiness paths tried in order: MLServer's V2 health, then MLflow's scoring server's ping.
READY_PATHS = ("/v2/health/ready", "/ping")


class NotReady(RuntimeError):
    """A predictor did not answer readiness in time; the previous endpoint keeps serving."""


@dataclass
class Predictor:
    """The server side of a Kubernetes endpoint: where its predictor answers and the requests in flight to it.

    ``pid`` and ``restarts`` are those of a local model server; KServe keeps
    its own (the predictor's pods), so they are None and 0 here.
    """

    url: str
    active: int = 0
    pid: int | None = None
    restarts: int = 0

    async def drain(self, timeout: float) -> bool:
        """Wait until no request forwarded by this process is in flight (True), or ``timeout`` s (False)."""
        return await until_idle(lambda: self.active, timeout)


class KServeEndpoints:
    """(model, stage) -> the InferenceService serving it, applied through ``deployer``.

    ``url_template`` is where a predictor answers (:data:`PREDICTOR_URL`; a
    test points it at a local server). ``ready_timeout`` is how long a new
    version may take to answer readiness (image pull, model download);
    ``drain_timeout`` how long an undeploy waits for requests in flight.
    """

    def __init__(
        self,
        deployer: ManifestDeployer,
        *,
        url_template: str = PREDICTOR_URL,
        namespace: str = NAMESPACE,
        ready_timeout: float = 600.0,
        poll_interval: float = 2.0,
        drain_timeout: float = 30.0,
    ):
        self.deployer = deployer
        self.url_template = url_template
        self.namespace = namespace
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        #: Model code runs in the predictor pods, never in this process: no local accounts.
        self.run_as: dict[str, Any] = {}
        #: Kept-alive connections to the predictors, used by the proxy.
        self.upstream = Upstream()
        self._live: dict[tuple[str, str], Endpoint] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def url(self, model: str, stage: str) -> str:
        """Where the predictor of ``model`` at ``stage`` answers."""
        name = inference_service_name(model, stage, self.namespace)
        return self.url_template.format(name=name, namespace=self.namespace).rstrip("/")

    def get(self, model: str, stage: str) -> Endpoint | None:
        """The endpoint answering for ``model`` at ``stage`` now, if any."""
        return self._live.get((model, stage))

    def all(self) -> list[Endpoint]:
        """Every live endpoint."""
        return list(self._live.values())

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def deploy(
        self,
        model: str,
        stage: str,
        version: str,
        model_path: Any = None,
        team: str = "",
        *,
        storage_uri: str = "",
    ) -> Endpoint:
        """Make ``model`` at ``stage`` serve ``version`` from ``storage_uri`` (``s3://...``); return the endpoint.

        ``model_path`` (a local copy) is not used: the predictor downloads
        the model from ``storage_uri`` itself. Converges: when that version is
        already served, nothing is applied. :class:`NotReady` when the
        predictor does not answer readiness within ``ready_timeout``; the
        previous objects are applied again and the previous endpoint stays.
        """
        check_stage(stage)
        key = (model, stage)
        async with self._lock(key):
            current = self._live.get(key)
            if current is not None and current.version == str(version):
                return current
            release = {"model_name": model, "version": str(version), "team": team, "kind": "online"}
            path = self.deployer.path(model, stage)
            previous = path.read_text() if path.is_file() else None
            await self.deployer.deploy(release, stage, storage_uri=storage_uri)
            url = self.url(model, stage)
            try:
                if self.deployer.api is not None:
                    # KServe's own word that the new revision serves, then the predictor's answer.
                    await self._wait_condition(model, stage, version)
                await self._wait_ready(url, model, stage, version)
            except NotReady:
                await self._put_back(model, stage, previous)
                raise
            server = current.server if current is not None else Predictor(url)
            endpoint = Endpoint(model=model, stage=stage, version=str(version), server=server)  # type: ignore[arg-type]
            self._live[key] = endpoint  # the switch: the proxy names this version from here on
            log.info("endpoint %s/%s now serves version %s (InferenceService %s)", model, stage, version, path.name)
            return endpoint

    async def _wait_condition(self, model: str, stage: str, version: str) -> None:
        try:
            await self.deployer.wait_ready(model, stage, self.ready_timeout)
        except ApplyFailed as error:
            raise NotReady(
                f"the InferenceService of {model} version {version} at {stage} did not become Ready "
                f"({error}); the previous endpoint keeps serving. Look at `kubectl -n {self.namespace} describe "
                f"inferenceservice {inference_service_name(model, stage, self.namespace)}`"
            ) from None

    async def _wait_ready(self, url: str, model: str, stage: str, version: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            for path in READY_PATHS:
                answer = await self.upstream.fetch(f"{url}{path}", "GET", {}, None)
                if answer is not None and answer.code == 200:
                    return
            if time.monotonic() > deadline:
                name = inference_service_name(model, stage, self.namespace)
                raise NotReady(
                    f"the predictor of {model} version {version} at {stage} ({url}) did not answer "
                    f"{' or '.join(READY_PATHS)} within {self.ready_timeout:.0f} s; the previous endpoint keeps "
                    f"serving. Look at `kubectl -n {self.namespace} describe inferenceservice {name}` and its "
                    "predictor pod's logs (storage URI, image pull, model loading)"
                )
            await asyncio.sleep(self.poll_interval)

    async def _put_back(self, model: str, stage: str, previous: str | None) -> None:
        """After a failed deploy: the previous file applied again, or the new object deleted when there was none."""
        path = self.deployer.path(model, stage)
        try:
            if previous is None:
                await self.deployer.delete(model, stage)
            else:
                path.write_text(previous)
                if self.deployer.api is not None:
                    await self.deployer.apply(path)
        except Exception:
            log.exception("could not put back the InferenceService of %s at %s after a failed deploy", model, stage)

    async def undeploy(self, model: str, stage: str) -> None:
        """Stop serving ``model`` at ``stage``: drain the requests in flight, then delete its InferenceService."""
        key = (model, check_stage(stage))
        async with self._lock(key):
            current = self._live.pop(key, None)
            if current is not None and not await current.server.drain(self.drain_timeout):
                log.warning(
                    "endpoint %s/%s still had %d requests after %.0f s; deleting it anyway",
                    model,
                    stage,
                    current.server.active,
                    self.drain_timeout,
                )
            await self.deployer.delete(model, stage)

    async def warm(self, *teams: str) -> None:
        """Nothing to start: predictors are KServe's (the same call as :meth:`Endpoints.warm`)."""

    async def close(self) -> None:
        """The service is shutting down: close connections, and leave the InferenceServices serving."""
        self._live.clear()
        await self.upstream.close()
