"""Where a release's model code runs: this machine (:class:`LocalPlacement`) or Kubernetes (:class:`ClusterPlacement`).

Loading a model runs its author's code, and so does scoring with it. The
runner never does either in its own process; it asks its placement, chosen
once when the runner is built, to run the gates (:mod:`.gatecheck`) for a
release, to serve an online version, and to run or schedule a batch one.

=====================  ===========================================  ============================================
step                   one machine                                  Kubernetes
=====================  ===========================================  ============================================
gates                  a process of the team's account              a Job under ``models-<team>``
online endpoint        a model server on the pipeline's copy        an InferenceService fetching from S3
batch staging          one scoring run as the team's account        a Job (one run)
batch production       the pipeline's scheduler runs it             a CronJob (none without a schedule)
run on demand          a scoring run as the team's account          refused: ``kubectl create job --from``
=====================  ===========================================  ============================================

Gates in detail:

- **One machine**: a child forked from the team's zygote, or a fresh
  ``python -m mlopshub.services.pipeline.gatecheck`` as the team's Unix
  account, on the pipeline's sealed copy of the version.
- **Kubernetes**: a Job in the models namespace, under the team's
  ServiceAccount ``models-<team>`` (the team's S3 read access, no API token),
  in the hub image, meeting Pod Security's ``restricted`` standard. The
  request (it holds the hold-out set) is a Secret mounted read-only; the Job
  fetches the version from the object store itself and checks it against the
  digest recorded at registration before loading it; the results are the one
  JSON line its pod logs. Nothing of the model's runs in the pipeline's pod,
  whose ServiceAccount may apply objects in the cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mlopshub.images import image_ref
from mlopshub.pipeline import Conflict, Release
from mlopshub.pipeline.gates import GateResult
from mlopshub.serving.apply import NoApiConfiguration, api_configuration
from mlopshub.serving.kserve import NAMESPACE, container_security_context, pod_security_context
from mlopshub.serving.manifests import OUTPUT_ROOT, ManifestDeployer, release_objects
from mlopshub.serving.names import cronjob_name
from mlopshub.serving.sandbox import RunAs, hand_over

from .gatecheck import GATES, TIMEOUT, GateCheckFailed, run_isolated

log = logging.getLogger("mlopshub.pipeline")


class Placement(Protocol):
    """Where a release's model code runs."""

    #: Whether the pipeline's own scheduler starts production batch runs (else the cluster's CronJobs do).
    runs_schedules: bool

    async def run_gates(self, release: Release, request: Mapping[str, Any]) -> list[GateResult]:
        """Run the gates that load ``release``'s model on ``request`` (:mod:`.gatecheck`'s, without the model's
        location, which the placement adds); the results, or :class:`GateCheckFailed`."""
        ...

    async def serve(self, release: Release, stage: str) -> None:
        """Make ``release``'s (online) version the endpoint of its model at ``stage``."""
        ...

    async def stage_batch(self, release: Release) -> str:
        """Score ``release``'s (batch) input once for staging, or start that; where the output is."""
        ...

    async def schedule_batch(self, release: Release) -> str:
        """Make ``release`` the (batch) version its model's schedule runs in production; where the runs write."""
        ...

    def check_run_on_demand(self, release: Release, stage: str) -> None:
        """:class:`~mlopshub.pipeline.Conflict` when a run of ``release`` on request is not the pipeline's to start."""
        ...


class LocalPlacement:
    """This machine: model code runs in processes of the team's Unix account, on the pipeline's sealed copy.

    ``model_copy(release)`` gives the pipeline's copy of the version and its
    recorded digest (checked); ``endpoints`` serve online versions; gates are
    forked from the team's zygote (``zygotes``), else a new process, as the
    team's account (``run_as``), with request files in ``scratch``.
    ``run_batch(release, stage)`` does one scoring run and gives its record;
    ``batch_output(model, stage)`` is where runs write.
    """

    runs_schedules = True

    def __init__(
        self,
        model_copy: Callable[[Release], tuple[Path, str]],
        endpoints: Any,
        scratch: Path,
        run_batch: Callable[[Release, str], Awaitable[Mapping[str, Any]]],
        batch_output: Callable[[str, str], Path],
    ):
        self.model_copy = model_copy
        self.endpoints = endpoints
        self.run_as: Mapping[str, RunAs] = getattr(endpoints, "run_as", {})
        # The models service's zygotes, when it runs in this process (not behind RemoteEndpoints).
        self.zygotes = getattr(endpoints, "zygotes", None)
        self.scratch = scratch
        self.run_batch = run_batch
        self.batch_output = batch_output

    async def serve(self, release: Release, stage: str) -> None:
        """A model server of the team's on the pipeline's copy, checked against the recorded digest."""
        path, digest = await asyncio.to_thread(self.model_copy, release)
        await self.endpoints.deploy(release.model_name, stage, release.version, path, team=release.team, digest=digest)

    async def stage_batch(self, release: Release) -> str:
        """One scoring run that model risk can inspect; its output file (the release records it)."""
        run = await self.run_batch(release, "staging")
        if run["status"] != "succeeded":
            raise RuntimeError(f"the staging run of the batch model failed: {run['reason']}")
        return str(run["output"])

    async def schedule_batch(self, release: Release) -> str:
        """Nothing to start: the pipeline's scheduler runs the production release of the model, which this becomes."""
        return str(self.batch_output(release.model_name, "production"))

    def check_run_on_demand(self, release: Release, stage: str) -> None:
        """Runs on request are processes of the pipeline's, as the team's account: always allowed here."""

    async def run_gates(self, release: Release, request: Mapping[str, Any]) -> list[GateResult]:
        """Run the gates on the pipeline's copy of the version, in a process of the team's."""
        path, digest = await asyncio.to_thread(self.model_copy, release)
        full = {**request, "model_path": str(path), "model_digest": digest}
        run_as = self.run_as.get(release.team)
        if self.zygotes is None:
            return await asyncio.to_thread(run_isolated, full, run_as)
        folder = self.scratch / release.team
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f".gates-{uuid.uuid4().hex[:12]}.json"
        file.write_text(json.dumps(full))
        hand_over(file, run_as, 0o640)
        try:
            results = await self.zygotes.of(release.team).call(GATES, file)
        finally:
            file.unlink(missing_ok=True)
        return [GateResult(**result) for result in results]


#: Where the gate Job's container finds the request (a Secret's key, mounted read-only).
REQUEST_DIR = "/etc/mlopshub/gates"
REQUEST_KEY = "request.json"
#: The one writable folder of the gate Job's container (the downloaded model, caches): an emptyDir.
SCRATCH_DIR = "/tmp"
#: What a gate Job may use: loading and scoring one model on a hold-out set (adjust per bank).
GATE_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
    "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"},
}
#: Group owning the mounted request (mode 0440): the container's user reads it whatever its UID.
REQUEST_GROUP = 1000
#: Seconds between two reads of a gate Job's status.
POLL_SECONDS = 2.0
#: The largest gate Job log the pipeline reads.
MAX_LOG = 1 << 20


def gate_job_name(release: Release) -> str:
    """A fresh name for a gate Job of ``release``: ``gates-<id>-<hex>`` (a gate run again gets another)."""
    return f"gates-{release.id.lower()}-{uuid.uuid4().hex[:6]}"[:63].rstrip("-")


def _labels(name: str, release: Release) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "gates",
        "app.kubernetes.io/managed-by": "mlopshub",
        "mlopshub.io/team": release.team,
        "mlopshub.io/model-version": str(release.version),
    }


def gate_secret(
    name: str, release: Release, request: Mapping[str, Any], namespace: str = NAMESPACE, job_uid: str = ""
) -> dict[str, Any]:
    """The Secret holding the gate Job ``name``'s request (with the hold-out set): one key, ``request.json``.

    Owned by the Job (``job_uid``, once it exists): if the pipeline stops
    before it deletes the Secret, the cluster does when the Job goes.
    """
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": _labels(name, release),
        "annotations": {"mlopshub.io/model": release.model_name, "mlopshub.io/release": release.id},
    }
    if job_uid:
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_uid}]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "immutable": True,
        "stringData": {REQUEST_KEY: json.dumps(request)},
    }


def gate_job(
    name: str,
    release: Release,
    *,
    namespace: str = NAMESPACE,
    image: str | None = None,
    timeout: float = TIMEOUT,
    s3_endpoint: str = "",
) -> dict[str, Any]:
    """The Job running the gates for ``release`` as its team: ``python -m mlopshub.services.pipeline.gatecheck``.

    Under ``models-<team>`` without an API token, the team's S3 credentials
    (Secret ``models-<team>-s3``) in its environment, the request (Secret
    ``name``) mounted read-only, a read-only root filesystem with one scratch
    folder, stopped after ``timeout`` s, never retried (a gate that failed
    once is reported, not run again).
    """
    env = [{"name": "HOME", "value": SCRATCH_DIR}, {"name": "TMPDIR", "value": SCRATCH_DIR}]
    if s3_endpoint:
        env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": s3_endpoint})
    container = {
        "name": "gates",
        "image": image or image_ref("hub"),
        "command": [
            "python",
            "-m",
            "mlopshub.services.pipeline.gatecheck",
            f"--request-file={REQUEST_DIR}/{REQUEST_KEY}",
        ],
        "env": env,
        "envFrom": [{"secretRef": {"name": f"models-{release.team}-s3"}}],
        "resources": {key: dict(value) for key, value in GATE_RESOURCES.items()},
        "securityContext": {**container_security_context(), "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "request", "mountPath": REQUEST_DIR, "readOnly": True},
            {"name": "scratch", "mountPath": SCRATCH_DIR},
        ],
    }
    labels = _labels(name, release)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"mlopshub.io/model": release.model_name, "mlopshub.io/release": release.id},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(timeout),
            # A failed gate Job stays a day for `kubectl describe`; a finished one is deleted by the pipeline.
            "ttlSecondsAfterFinished": 24 * 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": f"models-{release.team}",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {**pod_security_context(), "fsGroup": REQUEST_GROUP},
                    "containers": [container],
                    "volumes": [
                        {"name": "request", "secret": {"secretName": name, "defaultMode": 0o440}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": GATE_RESOURCES["limits"]["ephemeral-storage"]}},
                    ],
                },
            },
        },
    }


def results_from_log(text: str, where: str) -> list[GateResult]:
    """The gate results in a gate process's output: its last line that is a JSON list (what gatecheck prints)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if not line.startswith("["):
            continue
        try:
            results = json.loads(line)
        except ValueError:
            continue
        return [GateResult(**result) for result in results]
    tail = "\n".join(text.strip().splitlines()[-8:]) or "(no output)"
    raise GateCheckFailed(f"{where} printed no gate results: {tail}")


class ClusterPlacement:
    """Kubernetes: model code runs in pods of the team's ServiceAccount, in the models namespace.

    The gates are a Job (:func:`gate_job`) created through the API
    (``kubernetes_asyncio``); online versions are KServe InferenceServices
    (``endpoints``, :class:`~mlopshub.serving.KServeEndpoints`); batch ones a
    Job in staging and a CronJob in production, written and applied by
    ``deployer``. ``storage_uri(release)`` is where the version's files are
    in the object store (``s3://...``); ``kubeconfig`` a kubeconfig file to
    reach the API (None: the pod's in-cluster configuration); ``s3_endpoint``
    the object store's address when it is not AWS (``MLFLOW_S3_ENDPOINT_URL``);
    ``audit(action, release, **details)`` records what was applied.
    """

    runs_schedules = False  # the CronJobs do

    def __init__(
        self,
        storage_uri: Callable[[Release], str],
        *,
        endpoints: Any = None,
        deployer: ManifestDeployer | None = None,
        audit: Callable[..., None] | None = None,
        namespace: str = NAMESPACE,
        image: str | None = None,
        kubeconfig: str | Path | None = None,
        s3_endpoint: str = "",
        timeout: float = TIMEOUT,
    ):
        self.storage_uri = storage_uri
        self.endpoints = endpoints
        self.deployer = deployer
        self.audit = audit or (lambda action, release, **details: None)
        self.namespace = namespace
        self.image = image
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self.s3_endpoint = s3_endpoint
        self.timeout = timeout

    async def serve(self, release: Release, stage: str) -> None:
        """An InferenceService whose predictor fetches the version from its storage URI itself."""
        uri = await asyncio.to_thread(self.storage_uri, release)
        await self.endpoints.deploy(
            release.model_name, stage, release.version, None, team=release.team, storage_uri=uri
        )

    async def stage_batch(self, release: Release) -> str:
        """Apply the Job scoring the input once; where it writes."""
        return await self._apply_batch(release, "staging")

    async def schedule_batch(self, release: Release) -> str:
        """Apply the release's CronJob (or delete the previous one when it has no schedule); where runs write."""
        return await self._apply_batch(release, "production")

    def check_run_on_demand(self, release: Release, stage: str) -> None:
        """Refused: runs are Jobs in the cluster, started with kubectl (said how), never processes of the pipeline."""
        name = cronjob_name(release.model_name)
        raise Conflict(
            f"in Kubernetes, runs of {release.model_name} are Jobs in the cluster, not processes of the pipeline: "
            f"start one with `kubectl -n {self.namespace} create job --from=cronjob/{name} {name}-manual` "
            f"(production), or publish again for a staging run"
        )

    async def _apply_batch(self, release: Release, stage: str) -> str:
        """Apply ``release``'s Job (staging, one run) or CronJob (production); where it writes.

        A production release without a schedule keeps nothing in the cluster:
        the previous version's CronJob is deleted.
        """
        if self.deployer is None:
            raise RuntimeError("this pipeline applies no batch objects (no manifest deployer configured)")
        if release_objects(release, stage):
            written = await self.deployer.deploy(release, stage)
        else:
            await self.deployer.delete(release.model_name, stage)
            written = None
        self.audit("batch applied", release, stage=stage, manifest=str(written or ""))
        return f"{OUTPUT_ROOT}/{release.model_name}/{stage}"

    def objects(
        self, name: str, release: Release, request: Mapping[str, Any], job_uid: str = ""
    ) -> tuple[dict[str, Any], ...]:
        """The Secret and the Job that run the gates for ``release`` (``request`` with the model's location)."""
        secret = gate_secret(name, release, request, self.namespace, job_uid)
        job = gate_job(
            name,
            release,
            namespace=self.namespace,
            image=self.image,
            timeout=self.timeout,
            s3_endpoint=self.s3_endpoint,
        )
        return secret, job

    async def run_gates(self, release: Release, request: Mapping[str, Any]) -> list[GateResult]:
        """Create the request Secret and the gate Job, wait for it, read its results from its pod's log."""
        uri = await asyncio.to_thread(self.storage_uri, release)
        full = {**request, "model_uri": uri, "model_digest": release.model_digest}
        name = gate_job_name(release)
        where = f"gate Job {self.namespace}/{name}"
        _, job = self.objects(name, release, full)
        configuration = await self._configuration(where)
        succeeded = False
        async with client.ApiClient(configuration) as api:
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            try:
                # The Job first, so the Secret can be its own: its pod waits until the Secret is there to mount.
                created = await batch.create_namespaced_job(self.namespace, job)
                secret, _ = self.objects(name, release, full, job_uid=created.metadata.uid)
                await core.create_namespaced_secret(self.namespace, secret)
                try:
                    await self._wait(batch, name, where)
                except GateCheckFailed as failed:
                    raise GateCheckFailed(f"{failed}; its output ends: {await self._log_tail(core, name)}") from None
                results = results_from_log(await self._log(core, name, where), where)
                succeeded = True
                return results
            except ApiException as error:
                raise GateCheckFailed(f"{where}: the Kubernetes API answered {error.status} {error.reason}: "
                                      f"{_api_message(error)}") from None  # fmt: skip
            except (OSError, aiohttp.ClientError) as error:
                raise GateCheckFailed(
                    f"{where}: could not reach the Kubernetes API at {configuration.host}: {error}"
                ) from None
            finally:
                await self._clean_up(core, batch, name, delete_job=succeeded)

    async def _configuration(self, where: str) -> Any:
        try:
            return await api_configuration(self.kubeconfig)
        except NoApiConfiguration as error:
            raise GateCheckFailed(f"{where} not started: {error}") from None

    async def _wait(self, batch: Any, name: str, where: str) -> None:
        """Until the Job succeeded; :class:`GateCheckFailed` when it failed or outlived its deadline (and then some)."""
        deadline = asyncio.get_running_loop().time() + self.timeout + 120
        while True:
            status = (await batch.read_namespaced_job_status(name, self.namespace)).status
            if status.succeeded:
                return
            failed = next((c for c in status.conditions or [] if c.type == "Failed" and c.status == "True"), None)
            if failed is not None or status.failed:
                why = f"{failed.reason}: {failed.message}" if failed is not None else "its pod failed"
                raise GateCheckFailed(
                    f"{where} failed ({why}); see `kubectl -n {self.namespace} describe job {name}` and "
                    f"`kubectl -n {self.namespace} logs job/{name}`"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise GateCheckFailed(
                    f"{where} did not finish within {self.timeout:.0f} s; see "
                    f"`kubectl -n {self.namespace} describe job {name}`"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _log(self, core: Any, name: str, where: str) -> str:
        pods = await core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}")
        if not pods.items:
            raise GateCheckFailed(f"{where} succeeded but its pod is gone: no gate results to read")
        pod = max(pods.items, key=lambda p: p.metadata.creation_timestamp)
        return str(
            await core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container="gates", limit_bytes=MAX_LOG
            )
        )

    async def _log_tail(self, core: Any, name: str) -> str:
        try:
            text = await self._log(core, name, "")
        except (GateCheckFailed, ApiException, OSError, aiohttp.ClientError) as error:
            return f"(no log: {error})"[:500]
        return "\n".join(text.strip().splitlines()[-8:]) or "(no output)"

    async def _clean_up(self, core: Any, batch: Any, name: str, *, delete_job: bool) -> None:
        """Delete the request Secret (it holds the hold-out set) always; the Job once its results are read."""
        deletions = [("Secret", core.delete_namespaced_secret(name, self.namespace))]
        if delete_job:
            deletions.append(
                ("Job", batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background"))
            )
        for kind, deletion in deletions:
            try:
                await deletion
            except ApiException as error:
                if error.status != 404:
                    log.warning(
                        "could not delete %s %s/%s: %s %s", kind, self.namespace, name, error.status, error.reason
                    )
            except (OSError, aiohttp.ClientError) as error:
                log.warning("could not delete %s %s/%s: %s", kind, self.namespace, name, error)


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message", ""))[:1500]
    except (TypeError, ValueError, AttributeError):
        return str(error.body or "")[:1500]
