"""Serving objects into the cluster through the Kubernetes API: server-side apply, delete, and a watch for Ready.

The pipeline used to run ``kubectl apply -f``, ``delete -f`` and ``wait`` on
the files :class:`~mlopshub.serving.manifests.ManifestDeployer` writes. The
API client KubeSpawner already installs (``kubernetes_asyncio``) does the
same without a binary in the hub image (and without a checksum to pin when
building it):

* apply is server-side apply (``application/apply-patch+yaml``, field
  manager ``mlopshub-pipeline``, ``force``), as
  :mod:`mlopshub.services.pipeline.cluster_teams` applies a team's objects:
  applying twice changes nothing, and the pipeline owns the fields it sets;
* delete lets the garbage collector remove a Job's pods in the background
  (kubectl's default; the API's own for Jobs would orphan them), and an
  object already gone counts as deleted (``--ignore-not-found``);
* readiness is a watch on the InferenceService until its condition ``Ready``
  is ``True`` for its current generation (KServe's word that the new revision
  serves, not the old one still answering on the same address), bounded by a
  timeout; the error names the object and its last conditions.

The API is reached with a kubeconfig file when given, else with the pod's
ServiceAccount (in-cluster configuration).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

FIELD_MANAGER = "mlopshub-pipeline"
APPLY = "application/apply-patch+yaml"
#: Custom resources the pipeline applies, by kind: their plural (the API path's last part).
CUSTOM_PLURALS = {"InferenceService": "inferenceservices"}
#: Built-in kinds the pipeline applies, served by ``batch/v1``.
BATCH_KINDS = ("Job", "CronJob")
#: A pause before watching again when the API server ended a watch early.
REWATCH_SECONDS = 1.0


class ApplyFailed(RuntimeError):
    """The Kubernetes API refused an object, could not be reached, or never reported it Ready; ``str()`` names it."""


def describe(document: Mapping[str, Any]) -> str:
    """``Kind namespace/name``: how errors name an object."""
    meta = document["metadata"]
    return f"{document['kind']} {meta.get('namespace', '')}/{meta['name']}"


def is_ready(document: Mapping[str, Any]) -> bool:
    """Condition ``Ready`` is ``True`` and describes the current spec (``status.observedGeneration``, when set)."""
    status = document.get("status") or {}
    generation = (document.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False  # the status still describes the previous version
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def conditions_text(conditions: Iterable[Mapping[str, Any]]) -> str:
    """Conditions as a person reads them: ``Ready=False (RevisionMissing: ...), ...``."""
    parts = []
    for condition in conditions:
        why = ": ".join(str(condition[k]) for k in ("reason", "message") if condition.get(k))
        parts.append(f"{condition.get('type')}={condition.get('status')}" + (f" ({why})" if why else ""))
    return ", ".join(parts) or "none reported"


def _api_message(error: ApiException) -> str:
    try:
        message = json.loads(error.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        message = ""
    return f": {message}" if message else ""


def _custom(document: Mapping[str, Any]) -> tuple[str, str, str]:
    """(group, version, plural) of a custom resource the pipeline applies."""
    group, version = document["apiVersion"].split("/")
    return group, version, CUSTOM_PLURALS[document["kind"]]


def _check_kind(document: Mapping[str, Any]) -> None:
    if document["kind"] not in CUSTOM_PLURALS and document["kind"] not in BATCH_KINDS:
        known = ", ".join([*CUSTOM_PLURALS, *BATCH_KINDS])
        raise ValueError(f"{describe(document)}: the pipeline applies only {known}")


def _patch(api: Any, document: Mapping[str, Any], options: dict[str, Any]) -> Awaitable[Any]:
    """The server-side apply request of ``document``."""
    meta = document["metadata"]
    if document["kind"] in CUSTOM_PLURALS:
        group, version, plural = _custom(document)
        return client.CustomObjectsApi(api).patch_namespaced_custom_object(
            group, version, meta["namespace"], plural, meta["name"], document, **options
        )
    batch = client.BatchV1Api(api)
    patch = {"Job": batch.patch_namespaced_job, "CronJob": batch.patch_namespaced_cron_job}[document["kind"]]
    return patch(meta["name"], meta["namespace"], document, **options)


def _delete(api: Any, document: Mapping[str, Any], options: dict[str, Any]) -> Awaitable[Any]:
    """The delete request of ``document``."""
    meta = document["metadata"]
    if document["kind"] in CUSTOM_PLURALS:
        group, version, plural = _custom(document)
        return client.CustomObjectsApi(api).delete_namespaced_custom_object(
            group, version, meta["namespace"], plural, meta["name"], **options
        )
    batch = client.BatchV1Api(api)
    delete = {"Job": batch.delete_namespaced_job, "CronJob": batch.delete_namespaced_cron_job}[document["kind"]]
    return delete(meta["name"], meta["namespace"], **options)


class NoApiConfiguration(Exception):
    """No way to reach the Kubernetes API: ``str()`` says why."""


async def api_configuration(kubeconfig: str | None) -> Any:
    """The Kubernetes API client's configuration: from the kubeconfig file ``kubeconfig``, else the pod's own
    (in-cluster); :class:`NoApiConfiguration` when neither works. Every applier of the pipeline's (serving objects,
    gate Jobs, a new team's objects) reaches the API through this."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        raise NoApiConfiguration(f"no Kubernetes API configuration ({error})") from None
    return configuration


class ServerSideApply:
    """Applies, deletes and awaits serving objects through the Kubernetes API (see the module docstring).

    ``kubeconfig`` is a kubeconfig file (None: the pod's in-cluster
    configuration); ``timeout`` bounds each apply or delete request, in seconds.
    """

    def __init__(self, kubeconfig: str | Path | None = None, *, timeout: float = 120.0):
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self.timeout = timeout

    async def _configuration(self, what: str) -> Any:
        try:
            return await api_configuration(self.kubeconfig)
        except NoApiConfiguration as error:
            raise ApplyFailed(f"{what}: {error}") from None

    @staticmethod
    async def _call(what: str, host: str, request: Awaitable[Any], *, missing_ok: bool = False) -> Any:
        """``request`` awaited, its errors as :class:`ApplyFailed` naming ``what``; 404 is None when ``missing_ok``."""
        try:
            return await request
        except ApiException as error:
            if missing_ok and error.status == 404:
                return None
            raise ApplyFailed(
                f"{what}: the Kubernetes API answered {error.status} {error.reason}{_api_message(error)}"
            ) from None
        except (TimeoutError, OSError, aiohttp.ClientError) as error:
            raise ApplyFailed(f"{what}: could not reach the Kubernetes API at {host}: {error}") from None

    async def apply(self, objects: Iterable[Mapping[str, Any]]) -> list[str]:
        """Server-side apply of each object in order; their ``Kind namespace/name``; :class:`ApplyFailed` naming one."""
        options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        return await self._each(objects, _patch, options)

    async def delete(self, objects: Iterable[Mapping[str, Any]]) -> list[str]:
        """Delete each object (its pods in the background); one already gone counts as deleted; their names."""
        return await self._each(objects, _delete, {"propagation_policy": "Background"}, missing_ok=True)

    async def _each(
        self, objects: Iterable[Mapping[str, Any]], request: Any, options: dict[str, Any], *, missing_ok: bool = False
    ) -> list[str]:
        documents = [dict(o) for o in objects]
        for document in documents:
            _check_kind(document)
        if not documents:
            return []
        configuration = await self._configuration(describe(documents[0]))
        done = []
        async with client.ApiClient(configuration) as api:
            for document in documents:
                sent = request(api, document, {**options, "_request_timeout": self.timeout})
                await self._call(describe(document), configuration.host, sent, missing_ok=missing_ok)
                done.append(describe(document))
        return done

    async def wait_ready(self, document: Mapping[str, Any], timeout: float) -> None:
        """Watch ``document`` (a custom resource) until :func:`is_ready`; :class:`ApplyFailed` after ``timeout`` s.

        The error names the object and the conditions it last reported, which
        say why (an image that does not pull, a model that does not load).
        """
        what = describe(document)
        meta = document["metadata"]
        group, version, plural = _custom(document)
        configuration = await self._configuration(what)
        last: list[Mapping[str, Any]] = []
        seen = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def watch_until_ready(custom: Any) -> None:
            nonlocal last, seen
            while True:
                async with watch.Watch() as stream:
                    events = stream.stream(
                        custom.list_namespaced_custom_object,
                        group,
                        version,
                        meta["namespace"],
                        plural,
                        field_selector=f"metadata.name={meta['name']}",
                        timeout_seconds=max(1, math.ceil(deadline - loop.time())),
                    )
                    async for event in events:
                        if event["type"] == "DELETED":
                            seen, last = False, []
                            continue
                        current = event["raw_object"]
                        seen, last = True, list((current.get("status") or {}).get("conditions") or [])
                        if is_ready(current):
                            return
                # The API server ended the watch before our deadline: watch again.
                await asyncio.sleep(REWATCH_SECONDS)

        async with client.ApiClient(configuration) as api:
            try:
                async with asyncio.timeout(timeout):
                    await self._call(what, configuration.host, watch_until_ready(client.CustomObjectsApi(api)))
            except TimeoutError:
                state = f"its last conditions: {conditions_text(last)}" if seen else "the API never reported it"
                raise ApplyFailed(f"{what} did not become Ready within {timeout:g} s; {state}") from None
