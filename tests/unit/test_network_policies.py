"""NetworkPolicies: the paths the platform needs are open, and nothing else between teams.

The policies evaluated are the Zero to JupyterHub chart's (rendered from
helm-values/jupyterhub.yaml over the chart's defaults, see
tests/network_policy.py) and ours (helm-values/platform/manifests/
networkpolicies.yaml). The pods carry the labels their charts and builders
give them: the chart's labels on the hub, proxy and user pods, the MLflow
chart's on MLflow, pipeline.yaml's on the pipeline, and
mlopshub.serving.kserve's on predictors and scoring Jobs.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from chart_values import MLFLOW, VALUES_DIR, Z2JH, load_yaml
from network_policy import Pod, allowed, z2jh_policies

from mlopshub.serving import kserve

RELEASE, NAMESPACE, MODELS = "mlopshub", "mlopshub", kserve.NAMESPACE
MANIFESTS = VALUES_DIR / "platform" / "manifests"
PIPELINE = VALUES_DIR / "platform" / "manifests" / "pipeline.yaml"

pytestmark = pytest.mark.skipif(
    (Z2JH.missing() or MLFLOW.missing()) is not None, reason=str(Z2JH.missing() or MLFLOW.missing())
)


def chart_pod_labels(component: str, extra: dict[str, str]) -> dict[str, str]:
    return {"app": "jupyterhub", "release": RELEASE, "component": component, **extra}


@cache
def z2jh_values() -> dict[str, Any]:
    return Z2JH.values(VALUES_DIR / "jupyterhub.yaml", VALUES_DIR / "generated" / "catalog.yaml")


@cache
def policies() -> list[dict[str, Any]]:
    ours = [
        doc
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "NetworkPolicy"
    ]
    for policy in ours:
        policy["metadata"].setdefault("namespace", NAMESPACE)  # kubectl apply in the hub's namespace
    return z2jh_policies(z2jh_values(), RELEASE, NAMESPACE) + ours


def workspace(team: str, ip: str) -> Pod:
    # KubeSpawner's common labels from the chart, its component label, singleuser.extraLabels.
    extra = {str(k): str(v) for k, v in (z2jh_values()["singleuser"].get("extraLabels") or {}).items()}
    labels = chart_pod_labels("singleuser-server", {**extra, "hub.jupyter.org/username": f"user-of-{team}"})
    return Pod(f"workspace-{team}", NAMESPACE, labels, ip, {"notebook-port": 8888})


def mlflow_pod() -> Pod:
    values = MLFLOW.values(VALUES_DIR / "platform" / "mlflow.yaml")
    name = values["fullnameOverride"]
    labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    labels.update({str(k): str(v) for k, v in (values.get("extraPodLabels") or {}).items()})
    return Pod("mlflow", NAMESPACE, labels, "10.1.0.5", {"mlflow": 5000})


def pipeline_pod() -> Pod:
    deployment = next(d for d in yaml.safe_load_all(PIPELINE.read_text()) if d and d["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return Pod("pipeline", NAMESPACE, labels, "10.1.0.6", {"http": 8080})


def scoring_job(team: str, ip: str) -> Pod:
    job = kserve.batch_job("credit", "3", "models:/credit/3", team, "data/in.csv", "v1", "/scores/credit/staging")
    name = job["metadata"]["name"]
    # The Job controller adds these to the pods it creates.
    labels = {**job["spec"]["template"]["metadata"]["labels"], "batch.kubernetes.io/job-name": name, "job-name": name}
    return Pod(f"job-{team}", MODELS, labels, ip)


def predictor(team: str, ip: str) -> Pod:
    service = kserve.inference_service("credit", "3", "s3://b/m", team, "production")
    labels = {**service["metadata"]["labels"], "serving.kserve.io/inferenceservice": service["metadata"]["name"]}
    return Pod(f"predictor-{team}", MODELS, labels, ip, {"http": 8080})


HUB = Pod(
    "hub",
    NAMESPACE,
    chart_pod_labels(
        "hub",
        {
            "hub.jupyter.org/network-access-proxy-api": "true",
            "hub.jupyter.org/network-access-proxy-http": "true",
            "hub.jupyter.org/network-access-singleuser": "true",
        },
    ),
    "10.1.0.2",
    {"http": 8081},
)
PROXY = Pod(
    "proxy",
    NAMESPACE,
    chart_pod_labels(
        "proxy", {"hub.jupyter.org/network-access-hub": "true", "hub.jupyter.org/network-access-singleuser": "true"}
    ),
    "10.1.0.3",
    {"http": 8000, "api": 8001},
)
DATABASE = Pod(
    "mlopshub-db-1", NAMESPACE, {"cnpg.io/cluster": "mlopshub-db"}, "10.1.0.7", {"postgresql": 5432, "status": 8000}
)
DATABASE_REPLICA = Pod("mlopshub-db-2", NAMESPACE, {"cnpg.io/cluster": "mlopshub-db"}, "10.1.0.8")
OPERATOR = Pod("cnpg", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}, "10.9.0.2")
STRANGER = Pod("stranger", "default", {"app": "curl"}, "10.9.0.9")


@cache
def pods() -> dict[str, Pod]:
    return {
        "hub": HUB,
        "proxy": PROXY,
        "workspace-a": workspace("sme-credit", "10.2.0.11"),
        "workspace-b": workspace("retail-scoring", "10.2.0.12"),
        "mlflow": mlflow_pod(),
        "pipeline": pipeline_pod(),
        "job-a": scoring_job("sme-credit", "10.3.0.21"),
        "job-b": scoring_job("retail-scoring", "10.3.0.22"),
        "predictor-a": predictor("sme-credit", "10.3.0.31"),
        "predictor-b": predictor("retail-scoring", "10.3.0.32"),
        "database": DATABASE,
        "database-replica": DATABASE_REPLICA,
        "operator": OPERATOR,
        "stranger": STRANGER,
    }


#: (from, to, port, allowed?, why)
PATHS = [
    ("workspace-a", "mlflow", 5000, True, "the MLflow client in a notebook, in-cluster"),
    ("workspace-a", "pipeline", 8080, True, "the Lab sidebar publishes, in-cluster"),
    ("workspace-a", "hub", 8081, True, "the chart's rule: the server reports to the hub"),
    ("workspace-a", "workspace-b", 8888, False, "a workspace of another team"),
    ("workspace-b", "workspace-a", 8888, False, "a workspace of another team"),
    ("workspace-a", "predictor-b", 8080, False, "models are reached through /services/models/ only"),
    ("workspace-a", "job-b", 8080, False, "another team's scoring Job"),
    ("workspace-a", "database", 5432, False, "the platform's database"),
    ("workspace-a", "mlflow", 8080, False, "MLflow on another port"),
    ("job-a", "mlflow", 5000, True, "a scoring Job loads its model version"),
    ("job-b", "mlflow", 5000, True, "a scoring Job loads its model version"),
    ("job-a", "workspace-b", 8888, False, "a Job never reaches a workspace"),
    ("job-a", "pipeline", 8080, False, "a Job never calls the pipeline"),
    ("job-a", "predictor-b", 8080, False, "another team's model"),
    ("job-a", "job-b", 8080, False, "another team's Job"),
    ("predictor-a", "mlflow", 5000, False, "predictors read S3, not MLflow"),
    ("hub", "mlflow", 5000, True, "the hub checks MLflow as its service"),
    ("hub", "pipeline", 8080, True, "the hub's service"),
    ("hub", "workspace-a", 8888, True, "the chart's rule"),
    ("proxy", "mlflow", 5000, True, "/services/mlflow/"),
    ("proxy", "pipeline", 8080, True, "/services/pipeline/ and /services/models/"),
    ("proxy", "workspace-b", 8888, True, "/user/<name>/"),
    ("proxy", "hub", 8081, True, "the chart's rule"),
    ("pipeline", "mlflow", 5000, True, "registers versions, sets aliases"),
    ("pipeline", "hub", 8081, True, "HubAuth checks tokens at the hub API"),
    ("mlflow", "hub", 8081, True, "MLflow's auth function checks tokens at the hub API"),
    ("pipeline", "predictor-a", 8080, True, "forwards /services/models/ to the predictor"),
    ("stranger", "mlflow", 5000, False, "a pod of another namespace"),
    ("stranger", "pipeline", 8080, False, "a pod of another namespace"),
    ("stranger", "hub", 8081, False, "a pod of another namespace"),
    ("stranger", "predictor-a", 8080, False, "a pod of another namespace"),
    ("hub", "database", 5432, True, "the hub's database"),
    ("mlflow", "database", 5432, True, "MLflow's tracking and auth databases"),
    ("database-replica", "database", 5432, True, "streaming replication"),
    ("operator", "database", 8000, True, "CloudNativePG reads the instances' status"),
    ("operator", "database", 5432, False, "the operator needs the status port only"),
    ("job-a", "database", 5432, False, "a Job never reaches the database"),
    ("pipeline", "database", 5432, False, "the pipeline keeps its own SQLite file"),
    ("stranger", "database", 5432, False, "a pod of another namespace"),
]


@pytest.mark.parametrize(("source", "destination", "port", "expected", "why"), PATHS, ids=lambda v: str(v))
def test_path(source, destination, port, expected, why):
    everyone = pods()
    assert allowed(policies(), everyone[source], everyone[destination], port) is expected, why


def test_a_workspace_reaches_mlflow_and_the_pipeline_with_private_ips_closed():
    # The public host may resolve to a private address: the in-cluster Services must not depend on privateIPs.
    values = z2jh_values()
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["privateIPs"] is False


def rendered_workspace_env() -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "mlopshub.cli", "profiles", "render", "--user", "alice", "--team", "sme-credit",
         "--profile", "python-cpu"],
        capture_output=True, text=True, cwd=VALUES_DIR.parent, check=True,
    )  # fmt: skip
    pod = next(yaml.safe_load_all(done.stdout))
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def service_target(name: str, port: int) -> tuple[str, int]:
    """The pod and port behind Service ``name``:``port`` (MLflow chart's Service, or pipeline.yaml's)."""
    mlflow = MLFLOW.values(VALUES_DIR / "platform" / "mlflow.yaml")
    if name == mlflow["fullnameOverride"]:
        assert port == mlflow["service"]["port"]
        return "mlflow", mlflow["service"]["containerPort"]
    service = next(d for d in yaml.safe_load_all(PIPELINE.read_text()) if d and d["kind"] == "Service")
    assert name == service["metadata"]["name"], f"no Service {name}"
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == port]
    return "pipeline", pipeline_pod().ports[entry["targetPort"]]


def test_a_workspace_is_given_in_cluster_urls_under_the_served_prefix_that_the_policies_allow():
    env = rendered_workspace_env()
    mlflow_url, pipeline_url = urlsplit(env["MLFLOW_TRACKING_URI"]), urlsplit(env["MLOPSHUB_PIPELINE_URL"])
    public = urlsplit(load_yaml(VALUES_DIR / "jupyterhub.yaml")["hub"]["extraEnv"]["MLOPSHUB_PUBLIC_URL"])
    assert public.hostname not in (mlflow_url.hostname, pipeline_url.hostname)
    # MLflow answers under its --static-prefix; the pipeline under its JUPYTERHUB_SERVICE_PREFIX.
    assert mlflow_url.path == MLFLOW.values(VALUES_DIR / "platform" / "mlflow.yaml")["extraArgs"]["staticPrefix"]
    assert pipeline_url.path == "/services/pipeline/api"
    user = pods()["workspace-a"]
    for url in (mlflow_url, pipeline_url):
        assert url.hostname is not None and url.port is not None
        target, port = service_target(url.hostname, url.port)
        assert allowed(policies(), user, pods()[target], port), f"{url.geturl()} is closed to workspaces"


# --- the evaluator itself ------------------------------------------------------------

A = Pod("a", "ns", {"role": "a"}, "10.0.0.1", {"web": 80})
B = Pod("b", "ns", {"role": "b"}, "10.0.0.2", {"web": 80})
C = Pod("c", "other", {"role": "a"}, "10.0.0.3", {"web": 80})


def policy(kind: str, selector: dict, rules: list, namespace: str = "ns") -> dict:
    key = "ingress" if kind == "Ingress" else "egress"
    spec = {"podSelector": {"matchLabels": selector}, "policyTypes": [kind], key: rules}
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def test_evaluator_without_policies_everything_is_open():
    assert allowed([], A, B, 80)


def test_evaluator_a_selected_pod_is_isolated_and_only_matching_rules_open_it():
    only_a = [policy("Ingress", {"role": "b"}, [{"from": [{"podSelector": {"matchLabels": {"role": "a"}}}]}])]
    assert allowed(only_a, A, B, 80)
    assert not allowed(only_a, C, B, 80), "a podSelector alone means the policy's namespace"
    assert not allowed(only_a, B, B, 80)


def test_evaluator_namespace_and_pod_selectors_in_one_peer_are_anded_and_named_ports_resolve():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}, "podSelector": {}}
    rules = [{"from": [peer], "ports": [{"port": "web"}]}]
    assert allowed([policy("Ingress", {"role": "b"}, rules)], C, B, 80)
    assert not allowed([policy("Ingress", {"role": "b"}, rules)], C, B, 81)
    assert not allowed([policy("Ingress", {"role": "b"}, rules)], A, B, 80)


def test_evaluator_egress_isolation_and_ip_blocks_with_exceptions():
    rules = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.2/32"]}}]}]
    isolated = [policy("Egress", {"role": "a"}, rules)]
    assert allowed(isolated, A, C, 80)
    assert not allowed(isolated, A, B, 80)
    assert allowed(isolated, B, A, 80), "B is not selected: not isolated for egress"


def test_a_policy_in_the_models_namespace_is_applied_after_the_namespace_is_created():
    # `kubectl apply -f helm-values/platform/manifests/` applies the files in name order.
    order = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        order += [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in yaml.safe_load_all(
            path.read_text()) if d]  # fmt: skip
    created = order.index(("Namespace", MODELS, None))
    for index, (kind, name, namespace) in enumerate(order):
        assert namespace != MODELS or index > created, f"{kind} {name} is applied before its namespace exists"
        assert kind != "NetworkPolicy" or namespace in (None, NAMESPACE, MODELS)
    assert load_yaml(VALUES_DIR / "jupyterhub.yaml")["singleuser"]["networkPolicy"]["enabled"] is True
