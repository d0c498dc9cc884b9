"""Kubernetes: what a team made at runtime needs in the cluster, applied by the pipeline when the team is made.

The same objects ``mlopshub helm generate`` writes into the chart for the
catalog's teams (:func:`mlopshub.helm.team_volume_claim`,
:func:`mlopshub.helm.model_service_account`): the team's volume (a
ReadWriteMany PVC in the hub's namespace, which its members' pods mount and
which doubles as its DVC remote) and the ServiceAccount its model pods run
as (in the models namespace, with no API token). They are applied with
server-side apply (field manager ``mlopshub-pipeline``) through
``kubernetes_asyncio``, so applying twice changes nothing and a later ``helm
upgrade`` that lists the team takes them over. The pipeline's
ServiceAccount needs ``create``/``patch`` on these two kinds in these two
namespaces (the umbrella chart's Role).

Settings (the pipeline's environment, set by the chart):
``MLOPSHUB_TEAM_VOLUME_CLASS`` and ``MLOPSHUB_TEAM_VOLUME_SIZE`` (as
``helm-values/platform/team-volumes.yaml``), ``MLOPSHUB_HUB_NAMESPACE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mlopshub import helm
from mlopshub.serving.apply import NoApiConfiguration, api_configuration

FIELD_MANAGER = "mlopshub-pipeline"
APPLY = "application/apply-patch+yaml"


class ClusterUnavailable(Exception):
    """The cluster did not take a team's objects; ``str()`` says which and why."""


class ClusterTeamObjects:
    """Applies a team's volume and model ServiceAccount (see the module docstring)."""

    def __init__(
        self,
        volume_settings: Mapping[str, str],
        hub_namespace: str,
        *,
        kubeconfig: str | Path | None = None,
    ):
        self.volume_settings = dict(volume_settings)
        self.hub_namespace = hub_namespace
        self.kubeconfig = str(kubeconfig) if kubeconfig else None

    def objects(self, team: str) -> list[dict[str, Any]]:
        """The team's objects, each with its namespace."""
        claim = helm.team_volume_claim(team, self.volume_settings)
        claim["metadata"]["namespace"] = self.hub_namespace
        return [claim, helm.model_service_account(team)]

    async def _configuration(self) -> Any:
        try:
            return await api_configuration(self.kubeconfig)
        except NoApiConfiguration as error:
            raise ClusterUnavailable(str(error)) from None

    async def apply(self, team: str) -> list[str]:
        """Server-side apply of the team's objects; their ``kind/namespace/name``; :class:`ClusterUnavailable`."""
        configuration = await self._configuration()
        applied = []
        async with client.ApiClient(configuration) as api:
            core = client.CoreV1Api(api)
            for document in self.objects(team):
                meta = document["metadata"]
                where = f"{document['kind']} {meta['namespace']}/{meta['name']}"
                patch = {
                    "PersistentVolumeClaim": core.patch_namespaced_persistent_volume_claim,
                    "ServiceAccount": core.patch_namespaced_service_account,
                }[document["kind"]]
                try:
                    await patch(
                        meta["name"],
                        meta["namespace"],
                        document,
                        field_manager=FIELD_MANAGER,
                        force=True,
                        _content_type=APPLY,
                    )
                except ApiException as error:
                    raise ClusterUnavailable(
                        f"{where}: the Kubernetes API answered {error.status} {error.reason}"
                    ) from None
                except (OSError, aiohttp.ClientError) as error:
                    raise ClusterUnavailable(
                        f"{where}: could not reach the Kubernetes API at {configuration.host}: {error}"
                    ) from None
                applied.append(where)
        return applied


def from_env(env: Mapping[str, str]) -> ClusterTeamObjects | None:
    """The applier the chart configures (Kubernetes mode), None on one machine; ValueError naming a bad setting."""
    if env.get("MLOPSHUB_MODE") != "kubernetes":
        return None
    settings = {
        "storageClassName": env.get("MLOPSHUB_TEAM_VOLUME_CLASS", ""),
        "size": env.get("MLOPSHUB_TEAM_VOLUME_SIZE", ""),
    }
    if not settings["storageClassName"] or not settings["size"]:
        raise ValueError(
            "MLOPSHUB_TEAM_VOLUME_CLASS and MLOPSHUB_TEAM_VOLUME_SIZE must name the team volumes' ReadWriteMany "
            "StorageClass and size (as helm-values/platform/team-volumes.yaml)"
        )
    return ClusterTeamObjects(settings, env.get("MLOPSHUB_HUB_NAMESPACE", "mlopshub"))
