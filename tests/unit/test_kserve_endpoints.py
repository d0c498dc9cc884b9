"""Kubernetes endpoints without a cluster: real files, a Kubernetes API stand-in, a real model server.

The cluster's API is stood in for by a loopback HTTP peer (``kube_api_peer``)
that answers server-side apply, delete and watch as the API server does and
records each request (and can be told to refuse an object or to keep it from
getting Ready); the InferenceService's predictor is stood in for by a real
local MLflow model server (:class:`mlopshub.serving.ModelServer`), which the
URL template points at. What is real: the InferenceService file (validated
against KServe's schema), the API requests, the readiness watch, the switch,
and the proxy forwarding ``/invocations`` over HTTP.
"""

import socket
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from kube_api_peer import ApiPeer, kubeconfig
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from testing_support import Loop, kserve_errors
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from mlopshub.pipeline import Conflict, Release, ReleaseStore
from mlopshub.services.pipeline.registry import Registry
from mlopshub.services.pipeline.runner import Cluster, ReleaseRunner
from mlopshub.services.pipeline.service import build_runner
from mlopshub.serving import Endpoints, KServeEndpoints, ModelServer, NotReady, endpoint_routes
from mlopshub.serving.apply import ServerSideApply
from mlopshub.serving.kserve import NAMESPACE
from mlopshub.serving.manifests import ManifestDeployer
from mlopshub.serving.names import inference_service_name

COLUMNS = ["income", "debt", "age", "tenure"]
STORAGE = "s3://mlopshub-mlflow/artifacts/1/models/m-0123/artifacts"
SERVICES = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"


def service_path(model: str, stage: str) -> str:
    """Where the API serves the InferenceService of ``model`` at ``stage``."""
    return f"{SERVICES}/{inference_service_name(model, stage, NAMESPACE)}"


def applied_then_awaited(model: str, stage: str) -> list[tuple[str, str]]:
    """The requests of a deploy: the server-side apply, then the watch until KServe reports Ready."""
    return [("PATCH", service_path(model, stage)), ("GET", SERVICES)]


@pytest.fixture(scope="module")
def loop():
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, loop):
    """A real MLflow model server standing in for the InferenceService's predictor."""
    features, label = make_classification(n_samples=200, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    x = pd.DataFrame(features, columns=COLUMNS)
    classifier = LogisticRegression().fit(x, label)
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        classifier, path, signature=infer_signature(x, classifier.predict(x)), pip_requirements=["scikit-learn"]
    )
    server = ModelServer(path, label="predictor", log_path=path.parent / "predictor.log", start_method="spawn")
    loop.call(server.start())
    yield {"url": server.url, "body": {"dataframe_split": x.head(2).to_dict(orient="split")}}
    loop.call(server.stop())


@pytest.fixture
def api():
    """The Kubernetes API stand-in (see ``kube_api_peer``)."""
    with ApiPeer() as peer:
        yield peer


@pytest.fixture
def cluster(tmp_path, loop, predictor, api):
    """KServeEndpoints applying through the API stand-in, predictors at the local model server, a proxy."""
    deployer = ManifestDeployer(tmp_path / "manifests", ServerSideApply(api.kubeconfig(tmp_path)))
    endpoints = KServeEndpoints(deployer, url_template=predictor["url"], ready_timeout=20, poll_interval=0.1)

    async def start_proxy() -> tuple[HTTPServer, int]:
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(web.Application(endpoint_routes("/services/models/", endpoints, None)))
        server.add_sockets(sockets)
        return server, sockets[0].getsockname()[1]

    server, port = loop.call(start_proxy())
    yield endpoints, api, f"http://127.0.0.1:{port}/services/models"
    server.stop()
    loop.call(endpoints.close())


def dead_url() -> str:
    """An address nothing listens on: a predictor that never gets ready."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def score(proxy: str, model: str, stage: str, body: dict) -> requests.Response:
    return requests.post(f"{proxy}/{model}/{stage}/invocations", json=body, timeout=60)


def test_deploy_applies_a_valid_inference_service_waits_until_ready_and_the_proxy_forwards_to_it(
    cluster, loop, predictor
):
    endpoints, api, proxy = cluster
    endpoint = loop.call(
        endpoints.deploy("Credit_Default", "staging", "3", None, team="sme-credit", storage_uri=STORAGE)
    )

    written = endpoints.deployer.path("Credit_Default", "staging")
    (service,) = list(yaml.safe_load_all(written.read_text()))
    assert kserve_errors(service) == []
    assert service["metadata"]["name"] == inference_service_name("Credit_Default", "staging", NAMESPACE)
    assert service["spec"]["predictor"]["model"]["storageUri"] == STORAGE
    assert service["metadata"]["labels"]["mlopshub.io/model-version"] == "3"
    assert api.calls() == applied_then_awaited("Credit_Default", "staging"), "applied, then KServe's Ready awaited"
    patch, watch = api.requests
    assert patch["type"] == "application/apply-patch+yaml", "server-side apply"
    assert patch["query"]["fieldManager"] == ["mlopshub-pipeline"] and patch["query"]["force"][0] in ("true", "True")
    assert patch["body"] == service, "the API gets exactly what the file says"
    assert watch["query"]["watch"][0] in ("true", "True")
    assert watch["query"]["fieldSelector"] == [f"metadata.name={service['metadata']['name']}"]
    assert (endpoint.version, endpoint.server.url, endpoint.server.pid) == ("3", predictor["url"], None)
    assert endpoint.to_dict() == {"model": "Credit_Default", "stage": "staging", "version": "3", "pid": None,
                                  "restarts": 0}  # fmt: skip

    response = score(proxy, "Credit_Default", "staging", predictor["body"])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2
    assert response.headers["X-Mlopshub-Model-Version"] == "3"
    assert endpoint.server.active == 0, "the proxy counts requests in flight on the predictor"

    again = loop.call(endpoints.deploy("Credit_Default", "staging", "3", None, team="sme-credit", storage_uri=STORAGE))
    assert again is endpoint and len(api.calls()) == 2, "the version already served: nothing applied"


def test_the_default_predictor_address_is_the_inference_services_cluster_service(tmp_path):
    endpoints = KServeEndpoints(ManifestDeployer(tmp_path))
    assert endpoints.url("credit-default", "production") == (
        "http://credit-default-production-predictor.mlopshub-models.svc.cluster.local"
    )
    assert endpoints.run_as == {}


def test_undeploy_drains_then_deletes_the_inference_service(cluster, loop, predictor):
    endpoints, api, proxy = cluster
    loop.call(endpoints.deploy("loans", "production", "1", None, team="sme-credit", storage_uri=STORAGE))
    written = endpoints.deployer.path("loans", "production")

    loop.call(endpoints.undeploy("loans", "production"))
    assert api.calls()[-1] == ("DELETE", service_path("loans", "production"))
    assert api.requests[-1]["query"]["propagationPolicy"] == ["Background"]
    assert api.objects == {}, "the InferenceService is gone from the cluster"
    assert not written.exists()
    assert endpoints.get("loans", "production") is None
    assert score(proxy, "loans", "production", predictor["body"]).status_code == 404


def test_a_predictor_that_never_gets_ready_fails_the_deploy_and_the_previous_version_keeps_serving(
    cluster, loop, predictor
):
    endpoints, api, proxy = cluster
    loop.call(endpoints.deploy("loans", "production", "1", None, team="sme-credit", storage_uri=STORAGE))
    written = endpoints.deployer.path("loans", "production")
    serving = written.read_text()

    # Version 2's predictor never answers (a bad model, an image that does not pull).
    endpoints.url_template, endpoints.ready_timeout = dead_url(), 1.0
    with pytest.raises(NotReady, match=r"loans version 2 at production .* did not answer /v2/health/ready or /ping"):
        loop.call(endpoints.deploy("loans", "production", "2", None, team="sme-credit", storage_uri=STORAGE + "2"))

    assert endpoints.get("loans", "production").version == "1"
    assert written.read_text() == serving, "the file is version 1's again"
    assert api.calls()[-3:] == [
        *applied_then_awaited("loans", "production"),
        ("PATCH", service_path("loans", "production")),
    ], "version 2 applied and awaited, then version 1 applied again"
    assert api.objects[service_path("loans", "production")]["metadata"]["labels"]["mlopshub.io/model-version"] == "1"
    response = score(proxy, "loans", "production", predictor["body"])
    assert response.status_code == 200 and response.headers["X-Mlopshub-Model-Version"] == "1"


def test_a_first_deploy_that_never_gets_ready_deletes_what_it_applied(cluster, loop):
    endpoints, api, _ = cluster
    endpoints.url_template, endpoints.ready_timeout = dead_url(), 0.5
    with pytest.raises(NotReady, match="describe inferenceservice cards-staging"):
        loop.call(endpoints.deploy("cards", "staging", "1", None, team="retail-scoring", storage_uri=STORAGE))
    written = endpoints.deployer.path("cards", "staging")
    assert api.calls() == [*applied_then_awaited("cards", "staging"), ("DELETE", service_path("cards", "staging"))]
    assert api.objects == {}
    assert not written.exists() and endpoints.get("cards", "staging") is None


def test_an_inference_service_that_never_becomes_ready_fails_the_deploy_before_any_switch(cluster, loop, predictor):
    endpoints, api, proxy = cluster
    loop.call(endpoints.deploy("rates", "production", "1", None, team="sme-credit", storage_uri=STORAGE))
    # KServe never reports version 2's revision Ready (the watch still shows version 1's Ready first).
    name = inference_service_name("rates", "production", NAMESPACE)
    api.stuck[name] = [{"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "image pull"}]
    endpoints.ready_timeout = 1.5
    with pytest.raises(NotReady, match="rates version 2 at production did not become Ready") as refused:
        loop.call(endpoints.deploy("rates", "production", "2", None, team="sme-credit", storage_uri=STORAGE + "2"))
    assert f"InferenceService {NAMESPACE}/{name} did not become Ready within 1.5 s" in str(refused.value)
    assert "its last conditions: Ready=False (RevisionMissing: image pull)" in str(refused.value)
    del api.stuck[name]
    assert endpoints.get("rates", "production").version == "1"
    calls = api.calls()
    assert calls[2] == ("PATCH", service_path("rates", "production")) and calls[-1] == calls[2]
    assert set(calls[3:-1]) == {("GET", SERVICES)}, "version 2 watched (again when a watch ends), then 1 applied"
    response = score(proxy, "rates", "production", predictor["body"])
    assert response.status_code == 200 and response.headers["X-Mlopshub-Model-Version"] == "1"


def test_a_refused_apply_fails_the_deploy_with_the_apis_message(cluster, loop):
    endpoints, api, _ = cluster
    api.refuse["loans-staging"] = 'admission webhook "inferenceservice.kserve-webhook-server" denied the request'
    with pytest.raises(
        RuntimeError, match=f"InferenceService {NAMESPACE}/loans-staging: the Kubernetes API answered 422 .*denied"
    ):
        loop.call(endpoints.deploy("loans", "staging", "1", None, team="sme-credit", storage_uri=STORAGE))
    assert endpoints.get("loans", "staging") is None
    assert api.calls() == [("PATCH", service_path("loans", "staging"))], "nothing awaited after a refusal"


def test_an_unreachable_api_fails_the_deploy_naming_the_inference_service(tmp_path, loop):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    deployer = ManifestDeployer(tmp_path / "manifests", ServerSideApply(kubeconfig(tmp_path, nowhere)))
    endpoints = KServeEndpoints(deployer)
    with pytest.raises(
        RuntimeError,
        match=f"InferenceService {NAMESPACE}/loans-staging: could not reach the Kubernetes API at {nowhere}",
    ):
        loop.call(endpoints.deploy("loans", "staging", "1", None, team="sme-credit", storage_uri=STORAGE))
    assert endpoints.get("loans", "staging") is None


def test_an_online_deploy_without_storage_uri_names_what_is_missing(cluster, loop):
    endpoints, api, _ = cluster
    with pytest.raises(ValueError, match="storage URI of loans version 1"):
        loop.call(endpoints.deploy("loans", "staging", "1", "/local/copy", team="sme-credit"))
    assert api.calls() == []


# --- the service in Kubernetes mode ----------------------------------------------


def test_build_runner_in_kubernetes_mode_serves_with_kserve_endpoints(tmp_path):
    env = {"MLOPSHUB_KUBECONFIG": "/etc/bank/kubeconfig", "MLOPSHUB_ARTIFACTS_DESTINATION": "s3://bucket/artifacts"}
    common = {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "teams": {}, "public_url": "https://hub"}
    runner = build_runner(data_dir=tmp_path / "k8s", mode="kubernetes", env=env, **common)
    assert isinstance(runner.endpoints, KServeEndpoints)
    assert runner.endpoints.deployer.api.kubeconfig == "/etc/bank/kubeconfig", "applied through the API"
    in_cluster = build_runner(data_dir=tmp_path / "pod", mode="kubernetes", env={}, **common)
    assert in_cluster.endpoints.deployer.api.kubeconfig is None, "the pod's ServiceAccount"
    written_only = build_runner(data_dir=tmp_path / "git", mode="kubernetes", env={"MLOPSHUB_APPLY": "false"}, **common)
    assert written_only.endpoints.deployer.api is None, "only written, for GitOps"
    assert runner.endpoints.deployer.folder == tmp_path / "k8s" / "manifests"
    assert runner.cluster == Cluster(
        runner.endpoints.deployer, artifacts_destination="s3://bucket/artifacts", kubeconfig="/etc/bank/kubeconfig"
    ), "the gates reach the API as the deployer does"

    local = build_runner(data_dir=tmp_path / "local", **common)
    assert isinstance(local.endpoints, Endpoints) and local.cluster is None
    with pytest.raises(ValueError, match="MLOPSHUB_MODE='openshift'"):
        build_runner(data_dir=tmp_path / "other", mode="openshift", **common)


class DownloadUris:
    """The one registry call storage_uri makes, answering what MLflow would."""

    def __init__(self, uri: str):
        self.uri = uri

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return self.uri


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("mlflow-artifacts:/1/models/m-0123/artifacts", "s3://mlopshub-mlflow/artifacts/1/models/m-0123/artifacts"),
        ("mlflow-artifacts://mlflow:5000/1/models/m-0123/artifacts", "s3://mlopshub-mlflow/artifacts/1/models/m-0123/artifacts"),
        ("s3://other-bucket/1/abc/artifacts/model", "s3://other-bucket/1/abc/artifacts/model"),
    ],
)  # fmt: skip
def test_storage_uri_is_an_address_the_predictor_can_fetch(tmp_path, source, expected):
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "cache")
    registry.client = DownloadUris(source)
    assert registry.storage_uri("sme-credit", "loans", "3", "s3://mlopshub-mlflow/artifacts/") == expected


def test_storage_uri_served_by_mlflow_needs_the_artifacts_destination(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "cache")
    registry.client = DownloadUris("mlflow-artifacts:/1/models/m-0123/artifacts")
    with pytest.raises(ValueError, match="set MLOPSHUB_ARTIFACTS_DESTINATION"):
        registry.storage_uri("sme-credit", "loans", "3")


# --- the runner in Kubernetes mode ------------------------------------------------


class StorageRegistry:
    """The one registry call the runner makes to serve a version in Kubernetes."""

    def storage_uri(self, team: str, name: str, version: str, artifacts_destination: str = "") -> str:
        return f"{artifacts_destination}/{team}/{name}/{version}"


def a_release(kind: str, version: str = "3", schedule: str | None = "0 6 * * 1-5") -> Release:
    batch = {"input": "data/loans.csv", "rev": "v1", "schedule": schedule, "repo": None} if kind == "batch" else None
    return Release(id=f"rel-{kind}{version}", model_name="loans", version=version, model_uri="runs:/r/model",
                   run_id="r", team="sme-credit", kind=kind, description="", publisher="ana", state="approved",
                   steps=[], batch=batch)  # fmt: skip


@pytest.fixture
def cluster_runner(cluster, tmp_path):
    endpoints, api, _ = cluster
    runner = ReleaseRunner(
        store=ReleaseStore(tmp_path / "pipeline.sqlite"),
        registry=StorageRegistry(),
        endpoints=endpoints,
        teams={},
        load_holdout=lambda team, spec: None,
        endpoint_url=lambda model, stage: f"https://hub/services/models/{model}/{stage}/invocations",
        cluster=Cluster(endpoints.deployer, artifacts_destination="s3://mlopshub-mlflow/artifacts"),
    )
    return runner, api


def kinds(path: Path) -> list[str]:
    return [document["kind"] for document in yaml.safe_load_all(path.read_text()) if document]


def test_runner_serves_an_online_version_from_its_storage_uri(cluster_runner, loop):
    runner, api = cluster_runner
    loop.call(runner._serve(a_release("online"), "staging"))
    written = runner.cluster.deployer.path("loans", "staging")
    (service,) = yaml.safe_load_all(written.read_text())
    assert service["spec"]["predictor"]["model"]["storageUri"] == "s3://mlopshub-mlflow/artifacts/sme-credit/loans/3"
    assert runner.endpoints.get("loans", "staging").version == "3"
    assert api.calls() == applied_then_awaited("loans", "staging"), "applied, then KServe's Ready awaited"


def test_runner_applies_a_job_in_staging_and_a_cronjob_in_production_and_runs_nothing_itself(cluster_runner, loop):
    runner, api = cluster_runner
    deployer = runner.cluster.deployer
    assert loop.call(runner.placement.stage_batch(a_release("batch"))) == "/scores/loans/staging"
    assert kinds(deployer.path("loans", "staging")) == ["Job"]
    assert loop.call(runner.placement.schedule_batch(a_release("batch"))) == "/scores/loans/production"
    assert kinds(deployer.path("loans", "production")) == ["CronJob"]
    batch = f"/apis/batch/v1/namespaces/{NAMESPACE}"
    assert api.calls() == [("PATCH", f"{batch}/jobs/loans-v3-staging"), ("PATCH", f"{batch}/cronjobs/loans-batch")]
    for request in api.requests:
        assert request["type"] == "application/apply-patch+yaml"
        assert request["query"]["fieldManager"] == ["mlopshub-pipeline"]
    assert [r["body"]["kind"] for r in api.requests] == ["Job", "CronJob"]

    # A version run on demand only keeps nothing in the cluster: the previous CronJob goes.
    loop.call(runner.placement.schedule_batch(a_release("batch", "4", schedule=None)))
    assert api.calls()[-1] == ("DELETE", f"{batch}/cronjobs/loans-batch")
    assert api.requests[-1]["query"]["propagationPolicy"] == ["Background"], "its Jobs' pods go too"
    assert not deployer.path("loans", "production").exists()
    assert [e.action for e in runner.store.audit.entries()] == ["batch applied"] * 3

    with pytest.raises(Conflict, match="create job --from=cronjob/loans-batch"):
        runner.start_batch(a_release("batch"), "production", "ana")
