"""Kubernetes mode without a cluster: the real KubeSpawner builds every team x profile manifest."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate
import pytest
from tornado.web import HTTPError

from mlopshub import catalog, chart, kubernetes

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "profiles"
CATALOG = catalog.load(SAMPLE)
#: The hub's configuration: the project's values files over the chart's defaults (when beside the checkout).
CHART = chart.for_render(cwd=REPO)
VERSIONS = ["1.33", kubernetes_validate.latest_version()]
ALLOWED = [(team, slug) for team, spec in CATALOG.teams.items() for slug in spec.profiles]
FORBIDDEN = [
    (team, slug) for team, spec in CATALOG.teams.items() for slug in CATALOG.profiles if slug not in spec.profiles
]


def render(team, slug, user="alice", **choices):
    # A thread of its own: another test's browser may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, kubernetes.render(CATALOG, team, slug, user, choices, chart=CHART)).result()


@pytest.fixture(scope="module")
def rendered():
    return {(team, slug): render(team, slug) for team, slug in ALLOWED}


@pytest.mark.parametrize(("team", "slug"), ALLOWED)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_allowed_combination_renders_valid_manifests(rendered, team, slug, version):
    pod, pvc = rendered[(team, slug)]
    assert (pod["kind"], pvc["kind"]) == ("Pod", "PersistentVolumeClaim")
    for manifest in (pod, pvc):
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize(("team", "slug"), ALLOWED)
def test_gpu_profiles_carry_gpu_limit_and_toleration_cpu_profiles_do_not(rendered, team, slug):
    pod, _ = rendered[(team, slug)]
    container = pod["spec"]["containers"][0]
    limits = container["resources"]["limits"]
    tolerations = pod["spec"].get("tolerations") or []
    env = {item["name"]: item.get("value") for item in container["env"]}
    if CATALOG.profiles[slug].gpu:
        assert limits["nvidia.com/gpu"] == "1"
        assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations)
        assert pod["spec"]["nodeSelector"] == {"mlopshub.io/node-pool": "gpu"}
    else:
        assert "nvidia.com/gpu" not in limits
        assert not any(t.get("key") == "nvidia.com/gpu" for t in tolerations)
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_pod_has_image_from_tags_resources_volumes_and_workspace_env(rendered):
    pod, pvc = rendered[("retail-scoring", "r-cpu")]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example-bank.internal/mlopshub/workspace-r-cpu:2026.11.1"
    assert container["resources"]["requests"]["memory"] == 1 * 2**30
    assert container["resources"]["limits"]["memory"] == 4 * 2**30
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLFLOW_WORKSPACE"] == "retail-scoring"
    assert env["MLFLOW_TRACKING_URI"].endswith("/services/mlflow")
    assert env["MLOPSHUB_DEFAULT_KERNEL"] == "ir"
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"volume-alice": "claim-alice", "team-retail-scoring": "team-retail-scoring"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert (
        mounts["volume-alice"] == "/home/jovyan"
        and mounts["team-retail-scoring"] == "/home/jovyan/teams/retail-scoring"
    )
    assert pvc["metadata"]["name"] == "claim-alice"


def test_option_choice_overrides_resources():
    pod, _ = render("sme-credit", "python-cpu", size="large")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == 16 * 2**30 and float(limits["cpu"]) == 4.0


@pytest.mark.parametrize(("team", "slug"), FORBIDDEN)
def test_forbidden_profile_is_refused_naming_it(team, slug):
    with pytest.raises(HTTPError) as raised:
        render(team, slug)
    assert raised.value.status_code == 403
    assert slug in raised.value.log_message


def test_profile_list_offers_only_the_teams_profiles():
    offered = kubernetes.profile_list_for(CATALOG, list(CATALOG.teams["sme-credit"].profiles))
    assert [p["slug"] for p in offered] == ["python-cpu", "python-gpu"]
    assert [p["default"] for p in offered] == [True, False]
    assert offered[0]["profile_options"]["size"]["choices"]["small"]["default"] is True
