"""What the Zero to JupyterHub chart configures on KubeSpawner, from its values, for rendering a user pod.

In the hub pod the chart's ``jupyterhub_config.py`` turns the Helm values (mounted from the hub Secret)
into ``c.KubeSpawner`` settings, then runs ``hub.extraConfig`` (``mlopshub.configure``).
``mlopshub profiles render`` must build the pod the hub builds, so :func:`apply_chart_values` does
the same for every setting a user pod depends on (chart 4.4.0, commit 48ea50e3: uid, fsGid, labels,
scheduler, priority class, tolerations, node purpose affinity, home storage, extra volumes, image,
``hub.config`` pass-through). :func:`in_hub` reads the values and resource names the chart mounts in the
hub pod; :func:`offline` merges values files over the chart's defaults as Helm does and lists what it
could not know (:attr:`ChartContext.unknown`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Where the chart mounts its values (``secret/``, ``existing-secret/``) and resource names (``config/``).
HUB_CHART_DIR = Path("/usr/local/etc/jupyterhub")
#: The release and namespace of the documented install (docs/kubernetes.md, helm-values/jupyterhub.yaml).
DEFAULT_RELEASE = "mlopshub"
DEFAULT_NAMESPACE = "mlopshub"
#: The resource names a user pod refers to, by the chart's short name.
NAMES = ("user-scheduler", "priority", "image-pull-secret", "singleuser")

#: values key under ``singleuser.`` -> KubeSpawner trait, as the chart's jupyterhub_config.py maps them.
SINGLEUSER_TRAITS = {
    "podNameTemplate": "pod_name_template",
    "startTimeout": "start_timeout",
    "image.pullPolicy": "image_pull_policy",
    "events": "events_enabled",
    "extraLabels": "extra_labels",
    "extraAnnotations": "extra_annotations",
    "uid": "uid",
    "fsGid": "fs_gid",
    "serviceAccountName": "service_account",
    "storage.extraLabels": "storage_extra_labels",
    "nodeSelector": "node_selector",
    "extraNodeAffinity.required": "node_affinity_required",
    "extraNodeAffinity.preferred": "node_affinity_preferred",
    "extraPodAffinity.required": "pod_affinity_required",
    "extraPodAffinity.preferred": "pod_affinity_preferred",
    "extraPodAntiAffinity.required": "pod_anti_affinity_required",
    "extraPodAntiAffinity.preferred": "pod_anti_affinity_preferred",
    "lifecycleHooks": "lifecycle_hooks",
    "initContainers": "init_containers",
    "extraContainers": "extra_containers",
    "memory.limit": "mem_limit",
    "memory.guarantee": "mem_guarantee",
    "cpu.limit": "cpu_limit",
    "cpu.guarantee": "cpu_guarantee",
    "extraResource.limits": "extra_resource_limits",
    "extraResource.guarantees": "extra_resource_guarantees",
    "extraEnv": "environment",
    "extraPodConfig": "extra_pod_config",
}
NODE_PURPOSE = {"matchExpressions": [{"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}


@dataclass
class ChartContext:
    """The chart's values and what the chart derives from them outside the values."""

    values: dict[str, Any]
    namespace: str
    names: dict[str, str]
    #: Settings the hub would know and this context could not (empty in the hub pod).
    unknown: list[str] = field(default_factory=list)
    #: The hub container's environment, when this is the hub pod.
    environment: dict[str, str] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """``values["a"]["b"]`` for ``"a.b"`` (the chart's ``get_config``); ``default`` when absent or null."""
        value: Any = self.values
        for level in key.split("."):
            if not isinstance(value, Mapping) or level not in value:
                return default
            value = value[level]
        return copy.deepcopy(value) if value is not None else default

    def name(self, short: str) -> str:
        """The chart's resource name for ``short`` (``user-scheduler``, ``priority``, ...)."""
        if short not in self.names:
            raise ValueError(
                f"the chart's name for {short!r} is unknown: in the hub pod it is the file "
                f"{HUB_CHART_DIR}/config/{short}, which the chart's hub ConfigMap provides"
            )
        return self.names[short]

    def hub_environment(self) -> dict[str, str]:
        """The hub container's environment (offline: as far as the values say, ``hub.extraEnv`` literals)."""
        if self.environment is not None:
            return dict(self.environment)
        env = self.get("hub.extraEnv", {}) or {}
        if isinstance(env, list):
            env = {item["name"]: item.get("value") for item in env}
        return {name: value for name, value in env.items() if isinstance(value, str)}


def merge_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Layers merged as Helm merges ``-f`` files over the chart's defaults: maps merge, lists and scalars
    replace, ``null`` removes the key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, layer)
    return merged


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_values(path: Path) -> dict[str, Any]:
    """One values file; a clear error naming it when it is not a YAML mapping."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read the values file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of chart values, got {type(loaded).__name__}")
    return loaded


def resource_names(values: Mapping[str, Any], release: str) -> dict[str, str]:
    """The chart's names for :data:`NAMES` (its ``_helpers-names.tpl``) for a release named ``release``."""
    override = values.get("fullnameOverride")
    if isinstance(override, str):
        fullname = override
    else:
        name = values.get("nameOverride") or "jupyterhub"
        fullname = release if name in release else f"{release}-{name}"
    dash = f"{fullname}-" if fullname else ""
    return {
        "user-scheduler": f"{dash}user-scheduler",
        "priority": fullname or f"{release}-default-priority",
        "image-pull-secret": f"{dash}image-pull-secret",
        "singleuser": f"{dash}singleuser",
    }


def in_hub(root: Path = HUB_CHART_DIR) -> ChartContext | None:
    """The hub's own chart configuration, when running in the hub pod (``None`` elsewhere)."""
    sources = [root / "secret" / "values.yaml", root / "existing-secret" / "values.yaml"]
    if not sources[0].exists():
        return None
    values = merge_values(*(read_values(path) for path in sources if path.exists()))
    names = {name: (root / "config" / name).read_text() for name in NAMES if (root / "config" / name).exists()}
    namespace = os.environ.get("POD_NAMESPACE", "default")
    return ChartContext(values=values, namespace=namespace, names=names, environment=dict(os.environ))


def offline(
    files: Sequence[Path],
    defaults: Path | None,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
) -> ChartContext:
    """The chart's configuration from values files (merged in order over the chart's ``values.yaml``)."""
    layers = [read_values(path) for path in files]
    unknown = [
        f"the release name and namespace (assumed {release!r} and {namespace!r}, as in docs/kubernetes.md); "
        "they name the priority class and the pod's namespace",
        "the chart version (the pod's helm.sh/chart label)",
        "hub.existingSecret's values, merged over these in the hub",
        "the hub's environment from Secrets and ConfigMaps (hub.extraEnv valueFrom entries)",
        "the workspace's hub API token (set at each spawn)",
        "the user's groups as the hub database holds them (this uses the catalog's seed)",
        "what the API server adds on admission (the ServiceAccount token volume, LimitRange defaults)",
    ]
    if defaults is None:
        unknown.insert(0, "the chart's default values (no chart values.yaml given: only the files' settings apply)")
    else:
        layers.insert(0, read_values(defaults))
    values = merge_values(*layers)
    values.setdefault("Release", {"Name": release, "Namespace": namespace})
    values.setdefault("Chart", {"Name": "jupyterhub"})
    return ChartContext(values, namespace, resource_names(values, release), unknown)


def apply_chart_values(chart: ChartContext, c: Any) -> None:
    """Set on ``c`` what the chart's ``jupyterhub_config.py`` sets for user pods, before ``hub.extraConfig``."""
    get = chart.get
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    name = get("nameOverride") or get("Chart.Name", "jupyterhub")
    labels = {"app.kubernetes.io/name": name, "app": name}
    if get("Release.Name"):
        labels["app.kubernetes.io/instance"] = labels["release"] = get("Release.Name")
    if get("Chart.Name") and get("Chart.Version"):
        labels["helm.sh/chart"] = labels["chart"] = f"{get('Chart.Name')}-{get('Chart.Version').replace('+', '_')}"
    labels["app.kubernetes.io/managed-by"] = "kubespawner"
    c.KubeSpawner.common_labels = labels
    c.KubeSpawner.namespace = chart.namespace
    for key, trait in SINGLEUSER_TRAITS.items():
        value = get(f"singleuser.{key}")
        if value is not None:
            setattr(c.KubeSpawner, trait, value)
    if get("singleuser.image.name"):
        tag = get("singleuser.image.tag")
        c.KubeSpawner.image = f"{get('singleuser.image.name')}:{tag}" if tag else get("singleuser.image.name")
    c.KubeSpawner.allow_privilege_escalation = get("singleuser.allowPrivilegeEscalation")
    _apply_pull_secrets(chart, c)
    _apply_scheduling(chart, c)
    _apply_storage(chart, c)
    if "cmd" in (chart.values.get("singleuser") or {}):
        c.Spawner.cmd = get("singleuser.cmd")
    if get("singleuser.defaultUrl") is not None:
        c.Spawner.default_url = get("singleuser.defaultUrl")
    if (get("singleuser.cloudMetadata") or {}).get("blockWithIptables") is True:
        c.KubeSpawner.init_containers = [*(get("singleuser.initContainers") or []), _iptables_container(chart)]
    for section, settings in (get("hub.config") or {}).items():
        if section[:1].isupper():
            c[section].update(settings)
    # The chart registers hub.services (their tokens come from its Secret, not needed for a pod's settings);
    # mlopshub.configure reads the pipeline's in-cluster URL there.
    c.JupyterHub.services = [
        {**{k: v for k, v in service.items() if k != "apiToken"}, "name": service.get("name", key)}
        for key, service in (get("hub.services") or {}).items()
    ]


def _apply_pull_secrets(chart: ChartContext, c: Any) -> None:
    secrets = []
    if chart.get("imagePullSecret.automaticReferenceInjection") and chart.get("imagePullSecret.create"):
        secrets.append(chart.name("image-pull-secret"))
    secrets.extend(chart.get("imagePullSecrets") or [])
    secrets.extend(chart.get("singleuser.image.pullSecrets") or [])
    if secrets:
        c.KubeSpawner.image_pull_secrets = secrets


def _apply_scheduling(chart: ChartContext, c: Any) -> None:
    if chart.get("scheduling.userScheduler.enabled"):
        c.KubeSpawner.scheduler_name = chart.name("user-scheduler")
    if chart.get("scheduling.podPriority.enabled"):
        c.KubeSpawner.priority_class_name = chart.name("priority")
    purpose = chart.get("scheduling.userPods.nodeAffinity.matchNodePurpose")
    if purpose == "prefer":
        preferred = chart.get("singleuser.extraNodeAffinity.preferred") or []
        c.KubeSpawner.node_affinity_preferred = [*preferred, {"weight": 100, "preference": NODE_PURPOSE}]
    elif purpose == "require":
        required = chart.get("singleuser.extraNodeAffinity.required") or []
        c.KubeSpawner.node_affinity_required = [*required, NODE_PURPOSE]
    elif purpose not in (None, "ignore"):
        raise ValueError(f"scheduling.userPods.nodeAffinity.matchNodePurpose: unknown value {purpose!r}")
    tolerations = (chart.get("scheduling.userPods.tolerations") or []) + (
        chart.get("singleuser.extraTolerations") or []
    )
    if tolerations:
        c.KubeSpawner.tolerations = tolerations


def _apply_storage(chart: ChartContext, c: Any) -> None:
    get = chart.get
    volumes: dict[str, Any] = {}
    mounts: dict[str, Any] = {}
    storage_type = get("singleuser.storage.type")
    if storage_type == "dynamic":
        if get("singleuser.storage.dynamic.pvcNameTemplate"):
            c.KubeSpawner.pvc_name_template = get("singleuser.storage.dynamic.pvcNameTemplate")
        volume = get("singleuser.storage.dynamic.volumeNameTemplate")
        c.KubeSpawner.storage_pvc_ensure = True
        for trait, key in (
            ("storage_class", "dynamic.storageClass"),
            ("storage_access_modes", "dynamic.storageAccessModes"),
            ("storage_capacity", "capacity"),
        ):
            if get(f"singleuser.storage.{key}") is not None:
                setattr(c.KubeSpawner, trait, get(f"singleuser.storage.{key}"))
        volumes[volume] = {"name": volume, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        mounts[volume] = {
            "mountPath": get("singleuser.storage.homeMountPath"),
            "name": volume,
            "subPath": get("singleuser.storage.dynamic.subPath"),
        }
    elif storage_type == "static":
        volumes["home"] = {
            "name": "home",
            "persistentVolumeClaim": {"claimName": get("singleuser.storage.static.pvcName")},
        }
        mounts["home"] = {
            "mountPath": get("singleuser.storage.homeMountPath"),
            "name": "home",
            "subPath": get("singleuser.storage.static.subPath"),
        }
    extra_volumes = get("singleuser.storage.extraVolumes") or {}
    volumes.update(extra_volumes if isinstance(extra_volumes, dict) else {v["name"]: v for v in extra_volumes})
    extra_mounts = get("singleuser.storage.extraVolumeMounts") or {}
    mounts.update(
        extra_mounts if isinstance(extra_mounts, dict) else {f"{i}-{m['name']}": m for i, m in enumerate(extra_mounts)}
    )
    c.KubeSpawner.volumes = volumes
    c.KubeSpawner.volume_mounts = mounts


def _iptables_container(chart: ChartContext) -> dict[str, Any]:
    """The chart's privileged init container that blocks the cloud metadata server."""
    image = f"{chart.get('singleuser.networkTools.image.name')}:{chart.get('singleuser.networkTools.image.tag')}"
    ip = (chart.get("singleuser.cloudMetadata") or {}).get("ip")
    return {
        "name": "block-cloud-metadata",
        "image": image,
        "command": [
            "iptables",
            "--append",
            "OUTPUT",
            "--protocol",
            "tcp",
            "--destination",
            ip,
            "--destination-port",
            "80",
            "--jump",
            "DROP",
        ],
        "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
        "resources": chart.get("singleuser.networkTools.resources"),
    }


#: The project's values files, as the documented ``helm upgrade --install`` gives them, from a checkout.
PROJECT_VALUES = (Path("helm-values/jupyterhub.yaml"), Path("helm-values/generated/catalog.yaml"))
#: The chart's defaults beside this project's working copies (../shared/peers/README.md).
PEER_DEFAULTS = Path("../shared/peers/z2jh/values.yaml")


def for_render(
    files: Sequence[Path] = (),
    defaults: Path | None = None,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    cwd: Path | None = None,
    hub_root: Path = HUB_CHART_DIR,
) -> ChartContext:
    """The chart configuration ``mlopshub profiles render`` uses: the hub's own in the hub pod, else
    ``files`` (default: the checkout's values files in ``cwd``) over ``defaults`` (default: the chart's
    values.yaml in ../shared/peers when present)."""
    cwd = cwd or Path.cwd()
    if not files:
        hub = in_hub(hub_root)
        if hub is not None:
            return hub
        files = [cwd / path for path in PROJECT_VALUES if (cwd / path).exists()]
        if not files:
            raise ValueError(
                f"no chart values: {PROJECT_VALUES[0]} is not in {cwd}; give the values files the chart is "
                "installed with (--values FILE, repeated in helm's -f order)"
            )
    if defaults is None and (cwd / PEER_DEFAULTS).exists():
        defaults = cwd / PEER_DEFAULTS
    return offline(files, defaults, release, namespace)


__all__ = [
    "ChartContext",
    "apply_chart_values",
    "for_render",
    "in_hub",
    "merge_values",
    "offline",
    "resource_names",
]
