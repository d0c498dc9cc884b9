"""Every pod the project renders passes the `restricted` Pod Security standard its namespaces enforce.

Issue 13, item 4: user pods (every team and profile, built as the chart's hub builds them), the
platform's manifests, the MLflow and JupyterHub charts' pods as far as their values say, and the
InferenceServices, Jobs and CronJobs the serving code writes. The checker is tests/pod_security.py.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from pod_security import has_pod_spec, pod_violations, violations

from mlopshub import catalog, chart, kubernetes
from mlopshub.serving import kserve

REPO = Path(__file__).resolve().parents[2]
CATALOG = catalog.load(REPO / "profiles")
MANIFESTS = sorted((REPO / "helm-values" / "platform" / "manifests").glob("*.yaml"))
PEERS = REPO.parent / "shared" / "peers"
Z2JH_DEFAULTS = PEERS / "z2jh" / "values.yaml"
MLFLOW_DEFAULTS = PEERS / "mlflow-chart" / "values.yaml"
ENFORCE = "pod-security.kubernetes.io/enforce"


def choices_of(slug: str) -> list[dict[str, str]]:
    """No choice (the defaults), then every choice of every option."""
    profile = CATALOG.profiles[slug]
    return [{}] + [{name: choice} for name, option in profile.options.items() for choice in option["choices"]]


USER_PODS = [
    (team, slug, choice)
    for team, spec in CATALOG.teams.items()
    for slug in spec.profiles
    for choice in choices_of(slug)
]


def render_user_pod(team: str, slug: str, choices: dict[str, str]) -> dict[str, Any]:
    context = chart.for_render(cwd=REPO)
    coroutine = kubernetes.render(CATALOG, team, slug, "alice", choices, chart=context)
    # A thread of its own: another test's browser may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()[0]


@pytest.mark.parametrize(("team", "slug", "choices"), USER_PODS)
def test_every_user_pod_is_restricted(team, slug, choices):
    pod = render_user_pod(team, slug, choices)
    assert violations(pod) == []


def platform_objects() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_platform_manifest_pod_is_restricted(path):
    objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert [v for obj in objects for v in violations(obj)] == []


def test_the_platform_manifests_hold_pods_to_check():
    assert any(has_pod_spec(obj) for obj in platform_objects()), "no Deployment found in helm-values/platform/"


def test_every_namespace_the_platform_creates_enforces_restricted():
    namespaces = [obj for obj in platform_objects() if obj.get("kind") == "Namespace"]
    assert namespaces, "helm-values/platform/manifests creates the models' namespace"
    for namespace in namespaces:
        assert namespace["metadata"].get("labels", {}).get(ENFORCE) == "restricted", namespace["metadata"]["name"]


def test_the_install_guide_labels_the_hubs_namespace_restricted():
    guide = (REPO / "docs" / "kubernetes.md").read_text()
    assert f"kubectl label namespace mlopshub {ENFORCE}=restricted" in guide


def chart_pods(values: Any, where: str = "") -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """A pod for every (podSecurityContext, containerSecurityContext or securityContext) the values set:
    what a chart's pod templates put in a pod's and its containers' securityContext."""
    found = []
    if isinstance(values, dict):
        container = values.get("containerSecurityContext")
        if container is None and isinstance(values.get("podSecurityContext"), dict):
            container = values.get("securityContext")
        if isinstance(container, dict):
            pod = {"securityContext": values.get("podSecurityContext") or {}}
            pod["containers"] = [{"name": where or "main", "securityContext": container}]
            pod["initContainers"] = [c for c in values.get("initContainers") or [] if isinstance(c, dict)]
            pod["volumes"] = [v for v in values.get("extraVolumes") or [] if isinstance(v, dict)]
            found.append((where or "(top level)", {}, pod))
        for key, value in values.items():
            found.extend(chart_pods(value, f"{where}.{key}" if where else key))
    return found


def test_the_mlflow_charts_pod_is_restricted_as_far_as_its_values_say():
    values = [REPO / "helm-values" / "platform" / "mlflow.yaml"]
    merged = chart.merge_values(
        *(chart.read_values(p) for p in ([MLFLOW_DEFAULTS] if MLFLOW_DEFAULTS.exists() else [])),
        *(chart.read_values(p) for p in values),
    )
    pods = chart_pods(merged)
    assert pods, "helm-values/platform/mlflow.yaml sets no podSecurityContext/securityContext"
    assert [f"{where}: {v}" for where, meta, pod in pods for v in pod_violations(meta, pod)] == []


@pytest.mark.skipif(not Z2JH_DEFAULTS.exists(), reason=f"the z2jh chart's defaults are not at {Z2JH_DEFAULTS}")
def test_the_jupyterhub_charts_own_pods_are_restricted_as_far_as_its_values_say():
    context = chart.for_render(cwd=REPO)
    pods = chart_pods(context.values)
    assert {"hub", "proxy.chp", "scheduling.userScheduler"} <= {where for where, _, _ in pods}
    assert [f"{where}: {v}" for where, meta, pod in pods for v in pod_violations(meta, pod)] == []
    assert context.get("singleuser.cloudMetadata.blockWithIptables") is False, (
        "the chart's iptables init container is privileged"
    )


SERVING = {
    "InferenceService staging": lambda: kserve.inference_service("credit", "3", "s3://m/3", "sme-credit", "staging"),
    "InferenceService production": lambda: kserve.inference_service(
        "credit", "3", "s3://m/3", "sme-credit", "production"
    ),
    "batch CronJob": lambda: kserve.batch_cronjob(
        "churn", "2", "models:/churn/2", "retail-scoring", "data/in.csv", "v1", "/out", "0 2 * * *"
    ),
    "batch Job": lambda: kserve.batch_job(
        "churn", "2", "models:/churn/2", "retail-scoring", "data/in.csv", "v1", "/out"
    ),
}


@pytest.mark.parametrize("name", SERVING)
def test_every_serving_object_is_restricted(name):
    obj = SERVING[name]()
    assert has_pod_spec(obj)
    assert violations(obj) == []
