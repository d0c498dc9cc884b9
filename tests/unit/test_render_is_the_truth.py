"""`mlopshub profiles render` shows the pod the chart's hub creates (issue 13, item 5).

The hub builds user pods from the chart's values (its jupyterhub_config.py) and then mlopshub.configure;
render goes through the same two steps with the same values files, merged over the chart's defaults
(``../shared/peers/z2jh/values.yaml``) as Helm merges them.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from mlopshub import catalog, chart, kubernetes
from mlopshub.configure import apply_kubernetes_mode, kubernetes_runtime
from mlopshub.settings import from_env

REPO = Path(__file__).resolve().parents[2]
CHART_DEFAULTS = REPO.parent / "shared" / "peers" / "z2jh" / "values.yaml"
VALUES = [REPO / "helm-values" / "jupyterhub.yaml", REPO / "helm-values" / "generated" / "catalog.yaml"]
CATALOG = catalog.load(REPO / "profiles")
needs_chart_defaults = pytest.mark.skipif(
    not CHART_DEFAULTS.exists(),
    reason=f"the chart's defaults are not at {CHART_DEFAULTS} (zero-to-jupyterhub-k8s jupyterhub/values.yaml, "
    "commit 48ea50e3; see ../shared/peers/README.md)",
)


def render_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlopshub.cli", "profiles", "render", "--user", "alice", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@functools.cache
def rendered_pod(team: str, slug: str) -> tuple[dict, dict, str]:
    done = render_cli("--team", team, "--profile", slug)
    assert done.returncode == 0, done.stderr
    pod, pvc = yaml.safe_load_all(done.stdout)
    return pod, pvc, done.stdout


def hub_spawner_config() -> Config:
    """What the hub's mlopshub.configure sets, with the hub's environment from the values file."""
    values = chart.offline(VALUES, None)
    settings = from_env({**values.hub_environment(), "MLOPSHUB_MODE": "kubernetes"})
    c = Config()
    chart.apply_chart_values(values, c)  # the chart's jupyterhub_config.py runs first (hub.services, ...)
    apply_kubernetes_mode(settings, kubernetes_runtime(settings, {}), CATALOG, c)
    return c


@needs_chart_defaults
@pytest.mark.parametrize(("team", "slug"), [("sme-credit", "python-cpu"), ("sme-credit", "python-gpu")])
def test_render_shows_the_charts_identity_scheduling_and_labels(team, slug):
    pod, _, _ = rendered_pod(team, slug)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["fsGroup"] == 100
    assert spec["schedulerName"] == "user-scheduler"
    assert spec["priorityClassName"] == "mlopshub-default-priority"
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    keys = [t["key"] for t in spec["tolerations"]]
    assert "hub.jupyter.org/dedicated" in keys and "hub.jupyter.org_dedicated" in keys
    if CATALOG.profiles[slug].gpu:
        assert "nvidia.com/gpu" in keys
    preferred = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0]["preference"]["matchExpressions"][0]["key"] == "hub.jupyter.org/node-purpose"


def test_render_gives_the_workspace_the_urls_the_hub_gives():
    pod, _, _ = rendered_pod("retail-scoring", "r-cpu")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    hub = hub_spawner_config().CatalogKubeSpawner
    assert env["MLFLOW_TRACKING_URI"] == hub.mlflow_url
    assert "proxy-public" not in env["MLFLOW_TRACKING_URI"] + env["MLOPSHUB_PIPELINE_URL"]
    assert env["MLOPSHUB_PIPELINE_URL"] == hub.pipeline_url


def test_render_keeps_the_charts_home_storage():
    pod, pvc, _ = rendered_pod("retail-scoring", "r-cpu")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["metadata"]["name"] == "claim-alice"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]}
    assert claims == {"volume-alice": "claim-alice", "team-retail-scoring": "team-retail-scoring"}


def test_render_says_which_chart_settings_it_could_not_know_offline():
    _, _, output = rendered_pod("sme-credit", "python-cpu")
    header = output.split("apiVersion", 1)[0]
    assert header.startswith("# Rendered offline")
    assert "release name" in header and "existingSecret" in header


def test_render_without_values_files_names_the_option(tmp_path):
    done = render_cli("--team", "sme-credit", "--profile", "python-cpu", "--dir", str(REPO / "profiles"), cwd=tmp_path)
    assert done.returncode != 0
    assert "--values" in done.stderr and "helm-values/jupyterhub.yaml" in done.stderr


def test_configure_leaves_the_charts_storage_settings_alone():
    c = Config()
    c.KubeSpawner.storage_capacity = "20Gi"
    c.KubeSpawner.pvc_name_template = "claim-{user_server}"
    c.KubeSpawner.volumes = {"volume-{user_server}": {"name": "volume-{user_server}"}}
    kubernetes.apply_kubernetes(CATALOG, "http://mlflow", c)
    assert c.KubeSpawner.storage_capacity == "20Gi"
    assert c.KubeSpawner.pvc_name_template == "claim-{user_server}"
    assert list(c.KubeSpawner.volumes) == ["volume-{user_server}"]


def test_in_the_hub_pod_render_uses_the_hubs_mounted_values_and_names(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "config").mkdir()
    values = chart.merge_values(*(chart.read_values(path) for path in VALUES))
    values["singleuser"]["storage"]["capacity"] = "50Gi"
    values["scheduling"]["podPriority"] = {"enabled": True}
    (tmp_path / "secret" / "values.yaml").write_text(yaml.safe_dump(values))
    for short, name in chart.resource_names(values, "bank").items():
        (tmp_path / "config" / short).write_text(name)
    (tmp_path / "config" / "priority").write_text("bank-users")
    context = chart.for_render(hub_root=tmp_path, cwd=tmp_path)
    assert context.unknown == []
    pod, pvc = kubernetes_render(context)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pod["spec"]["priorityClassName"] == "bank-users"


def kubernetes_render(context: chart.ChartContext) -> list[dict]:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    coroutine = kubernetes.render(CATALOG, "sme-credit", "python-cpu", "alice", {}, chart=context)
    # A thread of its own: another test's browser may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_values_merge_as_helm_merges_them():
    merged = chart.merge_values({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": None})
    assert merged == {"a": {"b": 1, "c": [2]}}


def test_a_values_file_that_is_not_a_mapping_is_refused_naming_it(tmp_path):
    bad = tmp_path / "values.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="values.yaml: expected a mapping"):
        chart.read_values(bad)
