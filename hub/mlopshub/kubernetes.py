"""Kubernetes mode: KubeSpawner profiles from the catalog, per user.

``c.KubeSpawner.profile_list`` is a callable that returns only the profiles
the user's groups allow (what kubespawner#889 and #589 ask for); the same
``apply_profile`` hook as on one machine refuses any other slug before a pod
is made, and KubeSpawner's own ``_get_profile`` refuses it again.

:func:`render` builds the Pod and PVC manifests the real KubeSpawner would
create, with its own ``get_pod_manifest``/``get_pvc_manifest``, no cluster.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Instance, Unicode, default

from . import access
from .catalog import Catalog, Profile, allowed_profiles
from .chart import ChartContext, apply_chart_values
from .configure import apply_kubernetes_mode, kubernetes_runtime
from .images import image_ref
from .settings import from_env
from .spawners import (
    PlatformState,
    entitlements_for,
    make_apply_profile,
    remember_email,
    user_teams,
    workspace_environment,
)

TEAMS_MOUNT = "/home/jovyan/teams"
#: Keeps a CPU pod from seeing a GPU node's devices should it ever land on one.
NO_GPU_ENV = {"NVIDIA_VISIBLE_DEVICES": "void"}


def _override(settings: Mapping[str, Any], image_key: str | None = None) -> dict[str, Any]:
    """Catalog settings -> KubeSpawner trait overrides (only the keys given)."""
    override: dict[str, Any] = {}
    if image_key:
        override["image"] = image_ref(image_key)
    cpu = settings.get("cpu") or {}
    if "guarantee" in cpu:
        override["cpu_guarantee"] = float(cpu["guarantee"])
    if "limit" in cpu:
        override["cpu_limit"] = float(cpu["limit"])
    memory = settings.get("memory") or {}
    if "guarantee" in memory:
        override["mem_guarantee"] = memory["guarantee"]
    if "limit" in memory:
        override["mem_limit"] = memory["limit"]
    if "gpu" in settings:
        gpus = int(settings["gpu"] or 0)
        override["extra_resource_guarantees"] = {"nvidia.com/gpu": str(gpus)} if gpus else {}
        override["extra_resource_limits"] = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    if settings.get("node_selector"):
        override["node_selector"] = dict(settings["node_selector"])
    if settings.get("tolerations"):
        override["tolerations"] = _adding_tolerations([dict(t) for t in settings["tolerations"]])
    if "default_kernel" in settings:
        override["environment"] = {
            **override.get("environment", {}),
            "MLOPSHUB_DEFAULT_KERNEL": settings["default_kernel"],
        }
    return override


def _adding_tolerations(extra: list[dict[str, Any]]) -> Callable[[Any], list[dict[str, Any]]]:
    """A ``tolerations`` override that adds ``extra`` to the spawner's (the chart's user-pod tolerations),
    where a plain list would replace them."""

    def tolerations(spawner: Any) -> list[dict[str, Any]]:
        current = spawner.tolerations
        current = list(current.values()) if isinstance(current, dict) else list(current)
        return [*current, *(t for t in extra if t not in current)]

    return tolerations


def kubespawner_profile(profile: Profile, default: bool) -> dict[str, Any]:
    """One catalog profile as a KubeSpawner ``profile_list`` entry."""
    settings = dict(profile.settings)
    override = _override({**settings, "gpu": profile.gpu}, profile.image)
    environment = dict(settings.get("environment") or {})
    if not profile.gpu:
        environment.update(NO_GPU_ENV)
    environment["MLOPSHUB_DEFAULT_KERNEL"] = settings["default_kernel"]
    override["environment"] = environment
    entry: dict[str, Any] = {
        "display_name": profile.display_name,
        "slug": profile.slug,
        "description": profile.description,
        "default": default,
        "kubespawner_override": override,
    }
    if profile.options:
        entry["profile_options"] = {
            name: {
                "display_name": option["display_name"],
                "choices": {
                    slug: {
                        "display_name": choice["display_name"],
                        "default": profile.default_choices()[name] == slug,
                        "kubespawner_override": _override(
                            choice.get("override") or {}, (choice.get("override") or {}).get("image")
                        ),
                    }
                    for slug, choice in option["choices"].items()
                },
            }
            for name, option in profile.options.items()
        }
    return entry


def profile_list_for(catalog: Catalog, entitled: list[str]) -> list[dict[str, Any]]:
    """KubeSpawner profiles for a user entitled to ``entitled`` (GPU node pools assumed)."""
    profiles = allowed_profiles(catalog, entitled, gpu_available=True)
    default = next((p.slug for p in profiles if p.settings.get("default")), profiles[0].slug if profiles else None)
    return [kubespawner_profile(p, p.slug == default) for p in profiles]


def make_profile_list(catalog: Catalog) -> Callable[[Any], list[dict[str, Any]]]:
    """``c.KubeSpawner.profile_list``: the calling user's allowed profiles, read at spawn time."""

    def profile_list(spawner: Any) -> list[dict[str, Any]]:
        return profile_list_for(catalog, entitlements_for(spawner, catalog))

    return profile_list


def team_volumes(teams: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A shared volume per team (PVC ``team-<team>``, ReadWriteMany) mounted at ~/teams/<team>."""
    volumes = [{"name": f"team-{team}", "persistentVolumeClaim": {"claimName": f"team-{team}"}} for team in teams]
    mounts = [{"name": f"team-{team}", "mountPath": f"{TEAMS_MOUNT}/{team}"} for team in teams]
    return volumes, mounts


class CatalogKubeSpawner(PlatformState, KubeSpawner):
    """KubeSpawner with the catalog's profiles, team volumes and the workspace environment."""

    catalog = Instance(Catalog, allow_none=True, help="The catalog profiles resolve against.").tag(config=True)
    mlflow_url = Unicode(help="The MLflow service URL workspaces use.").tag(config=True)
    pipeline_url = Unicode(
        help="The pipeline API URL workspaces use (MLOPSHUB_PIPELINE_URL); empty: beside mlflow_url."
    ).tag(config=True)
    resolved = None
    #: The user's email claim, set by :func:`~mlopshub.spawners.remember_email` before the start.
    git_email: str | None = None

    @default("auth_state_hook")
    def _auth_state_hook_default(self) -> Any:
        return remember_email

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        teams = user_teams(self, self.catalog) if self.catalog else []
        if self.resolved is not None:
            workspace = workspace_environment(
                self.resolved,
                teams,
                self.mlflow_url,
                self.api_token,
                self.user.name,
                self.git_email,
                pipeline_url=self.pipeline_url or None,
            )
            # MEM_LIMIT/CPU_LIMIT come from KubeSpawner itself on Kubernetes.
            workspace.pop("MEM_LIMIT", None)
            workspace.pop("CPU_LIMIT", None)
            env.update(workspace)
        if teams:
            # The team volume doubles as the team's default DVC remote.
            env["MLOPSHUB_DVC_REMOTE"] = f"{TEAMS_MOUNT}/{teams[0]}/dvc-remote"
        return env


def _added(existing: list[dict[str, Any]] | dict[str, Any], items: list[dict[str, Any]]) -> Any:
    """``items`` added to a KubeSpawner volume or mount setting, a list or (as the chart sets it) a dict."""
    if isinstance(existing, dict):
        return {**existing, **{f"mlopshub-{item['name']}": item for item in items}}
    return [*existing, *items]


def make_apply_kubernetes_profile(catalog: Catalog) -> Callable[[Any, dict[str, Any]], None]:
    """The shared refusal hook, plus the user's team volumes (per user, so not in the profile list)."""
    apply_profile = make_apply_profile(catalog, gpu_available=True)

    def apply(spawner: Any, user_options: dict[str, Any]) -> None:
        apply_profile(spawner, user_options)
        teams = user_teams(spawner, catalog)
        spawner.started_teams = teams
        volumes, mounts = team_volumes(teams)
        spawner.volumes = _added(spawner.volumes, volumes)
        spawner.volume_mounts = _added(spawner.volume_mounts, mounts)

    return apply


def apply_kubernetes(catalog: Catalog, mlflow_url: str, c: Any, pipeline_url: str = "") -> None:
    """Configure KubeSpawner from the catalog.

    The chart's own settings (home storage, uid and fsGid, labels, scheduling, security contexts) stay as
    the chart's ``jupyterhub_config.py`` set them from the values: this runs after it, in ``hub.extraConfig``.
    """
    c.JupyterHub.spawner_class = "mlopshub.kubernetes.CatalogKubeSpawner"
    c.KubeSpawner.profile_list = make_profile_list(catalog)
    c.Spawner.apply_user_options = make_apply_kubernetes_profile(catalog)
    c.CatalogKubeSpawner.catalog = catalog
    c.CatalogKubeSpawner.mlflow_url = mlflow_url
    c.CatalogKubeSpawner.pipeline_url = pipeline_url
    c.KubeSpawner.default_url = "/lab"


# --- offline rendering --------------------------------------------------------


class _RenderGroup:
    def __init__(self, name: str, properties: dict[str, Any]):
        self.name = name
        self.properties = properties


class _RenderUser:
    """The hub user record KubeSpawner reads (name, id, url, groups), for rendering without a hub."""

    def __init__(self, name: str, groups: list[_RenderGroup]):
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self.groups = groups
        self.escaped_name = name
        self.json_escaped_name = name
        self.spawners: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}


def _offline_kubeconfig() -> str:
    """A kubeconfig for a cluster that is never contacted (KubeSpawner loads one at construction)."""
    path = Path(tempfile.mkdtemp(prefix="mlopshub-render-")) / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: offline\n"
        "clusters: [{name: offline, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: offline, context: {cluster: offline, user: offline, namespace: mlopshub}}]\n"
        "users: [{name: offline, user: {token: offline}}]\n"
    )
    return str(path)


def hub_config(catalog: Catalog, chart: ChartContext) -> Any:
    """The hub's KubeSpawner configuration: the chart's settings from its values, then ``mlopshub.configure``'s
    Kubernetes part with the hub's environment (the order of the chart's ``jupyterhub_config.py``)."""
    from traitlets.config import Config

    config = Config()
    apply_chart_values(chart, config)
    settings = from_env({**chart.hub_environment(), "MLOPSHUB_MODE": "kubernetes"})
    apply_kubernetes_mode(settings, kubernetes_runtime(settings, {}), catalog, config)
    return config


async def render(
    catalog: Catalog,
    team: str,
    slug: str,
    username: str,
    choices: dict[str, str] | None = None,
    mlflow_url: str = "http://proxy-public/services/mlflow",
    chart: ChartContext | None = None,
) -> list[dict[str, Any]]:
    """The Pod and PVC manifests KubeSpawner would create for ``username`` of ``team`` starting ``slug``.

    With ``chart`` (:mod:`mlopshub.chart`), the configuration is the hub's (:func:`hub_config`); without
    it, only what mlopshub adds to KubeSpawner's defaults, with ``mlflow_url``.
    Raises :class:`tornado.web.HTTPError` (403/400) naming the profile when the team may not use it.
    """
    from jupyterhub.objects import Hub
    from kubernetes_asyncio.client import ApiClient
    from traitlets.config import Config

    if team not in catalog.teams:
        raise ValueError(f"unknown team {team!r}; expected one of: {', '.join(catalog.teams)}")
    from kubernetes_asyncio.config import kube_config

    # KubeSpawner loads a kubeconfig when constructed; give it one for a cluster never contacted.
    # (kubernetes_asyncio reads $KUBECONFIG at import, so point its default location at ours.)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = os.environ.get("MLOPSHUB_RENDER_KUBECONFIG") or _offline_kubeconfig()
    if chart is not None:
        config = hub_config(catalog, chart)
        namespace = chart.namespace
    else:
        config = Config()
        apply_kubernetes(catalog, mlflow_url, config)
        namespace = "mlopshub"
    seeded = access.seed_groups(catalog, {})[team]["properties"]
    user = _RenderUser(username, [_RenderGroup(team, seeded)])
    spawner = CatalogKubeSpawner(config=config, user=user, hub=Hub(ip="hub", port=8081), namespace=namespace)
    spawner.api_token = "<the workspace's hub token, set at spawn>"
    spawner.user_options = {"profile": slug, **(choices or {})}
    await spawner._run_apply_user_options(spawner.user_options)
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    pvc = spawner.get_pvc_manifest()
    client = ApiClient()
    try:
        manifests = [client.sanitize_for_serialization(pod), client.sanitize_for_serialization(pvc)]
    finally:
        await client.close()
    manifests[0].setdefault("apiVersion", "v1")
    manifests[0].setdefault("kind", "Pod")
    manifests[1].setdefault("apiVersion", "v1")
    manifests[1].setdefault("kind", "PersistentVolumeClaim")
    return manifests


__all__ = [
    "CatalogKubeSpawner",
    "apply_kubernetes",
    "hub_config",
    "kubespawner_profile",
    "make_profile_list",
    "profile_list_for",
    "render",
    "team_volumes",
]
