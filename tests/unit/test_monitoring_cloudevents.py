"""The capture on Kubernetes: KServe's payload logger posts CloudEvents to the pipeline's sink, which pairs them and
writes captures into the team's store as the one-machine capture does; the InferenceService asks for it, and the
NetworkPolicy lets the predictors (and nothing more) reach it.

The sink runs as a real tornado server on loopback, with a real :class:`Capture` writing real SQLite stores; the
events are sent as KServe's agent sends them (binary mode, ``pkg/logger/worker.go`` at KServe's commit aaac4e29).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from chart_values import VALUES_DIR, load_yaml
from network_policy import Pod, allowed
from prometheus_client import REGISTRY
from testing_support import KSERVE_SCHEMA_FILE, Loop, kserve_errors, until
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from mlopshub.monitoring import cloudevents
from mlopshub.monitoring.capture import Capture
from mlopshub.monitoring.cloudevents import REQUEST, RESPONSE, ReleaseRoutes, capture_sink_routes, event_time
from mlopshub.monitoring.monitor import Monitor
from mlopshub.monitoring.store import Settings
from mlopshub.pipeline import ReleaseStore, validate_publish
from mlopshub.pipeline.gates import GateResult
from mlopshub.services.pipeline import service
from mlopshub.services.pipeline.monitoring import ModelMonitoring
from mlopshub.services.pipeline.service import CAPTURE_PORT, build_runner
from mlopshub.serving import kserve
from mlopshub.serving.names import inference_service_name

TEAM, MODEL, VERSION = "sme-credit", "credit-default", "3"
ISVC = inference_service_name(MODEL, "production", kserve.NAMESPACE)
ROUTES = {ISVC: (MODEL, "production", VERSION, TEAM)}
CHART_TEMPLATES = VALUES_DIR.parent / "deploy" / "mlopshub" / "templates"

V2_REQUEST = {
    "inputs": [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [41, 29]},
        {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[52000.0], [31000.5]]},
        {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["north", "south"]},
    ]
}
V2_ANSWER = {
    "model_name": ISVC,
    "outputs": [{"name": "output-1", "shape": [2, 1], "datatype": "INT64", "data": [0, 1]}],
}
SPLIT = {"dataframe_split": {"columns": ["age", "income"], "data": [[41, 52000.0]]}}


class FakeClock:
    """The sink's monotonic clock, moved by the test: a half expires without a minute's wait."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def stamp(epoch: float) -> str:
    """``ce-time`` as the CloudEvents Go SDK writes it (RFC 3339, nanoseconds, UTC)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"


def send_event(url, kind, event_id, body, *, at=None, isvc=ISVC, content_type="application/json", **changes):
    """Post one event to ``url`` as KServe's agent does; ``changes`` replace or (with None) remove headers."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": kind,
        "ce-source": f"{isvc}-predictor-7d9f8c-x2x8q",
        "ce-time": stamp(time.time() if at is None else at),
        "ce-recordedtime": stamp(time.time()),
        "ce-inferenceservicename": isvc,
        "ce-namespace": kserve.NAMESPACE,
        "ce-component": "predictor",
        "ce-endpoint": "",
        "ce-metadata": "{}",
        "Content-Type": content_type,
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, data=data, headers=headers, timeout=30)


class Sink:
    """The capture sink on loopback, its capture writing into ``folder``."""

    def __init__(self, folder, route=ROUTES.get):
        self.clock = FakeClock()
        self.capture = Capture(folder)
        routes = capture_sink_routes("/services/pipeline/", self.capture, route, clock=self.clock)
        self.sink = routes[0][2]["sink"]
        self.loop = Loop()
        sock, port = bind_unused_port()

        async def start() -> HTTPServer:
            server = HTTPServer(web.Application(routes))
            server.add_sockets([sock])
            return server

        self.server = self.loop.call(start())
        self.port = port
        self.url = f"http://127.0.0.1:{port}/services/pipeline/capture"

    def send(self, kind, event_id, body, **options):
        """Post one event as KServe's agent does (see :func:`send_event`)."""
        return send_event(self.url, kind, event_id, body, **options)

    def pair(self, event_id, request, answer, *, latency=0.042, **changes):
        at = time.time()
        first = self.send(REQUEST, event_id, request, at=at, **changes)
        second = self.send(RESPONSE, event_id, answer, at=at + latency, **changes)
        return first, second

    def captures(self, team=TEAM):
        """Every capture written to ``team``'s store, as dicts (after the writer has written what is queued)."""
        assert self.capture.flush()
        path = self.capture.folder / f"{team}.sqlite"
        if not path.exists():
            return []
        with sqlite3.connect(path) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute("SELECT * FROM captures ORDER BY id")]

    def close(self):
        self.loop.call(_stop(self.server))
        self.capture.close()
        self.loop.close()


async def _stop(server: HTTPServer) -> None:
    server.stop()
    await server.close_all_connections()


@pytest.fixture
def sink(tmp_path):
    running = Sink(tmp_path / "monitoring")
    yield running
    running.close()


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("mlopshub_capture_refused_total", {"reason": reason}) or 0.0


def dropped(model=MODEL, stage="production") -> float:
    return REGISTRY.get_sample_value("mlopshub_capture_dropped_total", {"model": model, "stage": stage}) or 0.0


# --- pairing ------------------------------------------------------------------------------------------------------


def requests_counted() -> float:
    labels = {"model": MODEL, "version": VERSION, "stage": "production", "code": "200"}
    return REGISTRY.get_sample_value("mlopshub_model_requests_total", labels) or 0.0


def test_a_request_then_its_answer_become_one_capture_with_the_rows_predictions_and_latency(sink):
    counted = requests_counted()
    event_id = str(uuid.uuid4())
    first, second = sink.pair(event_id, V2_REQUEST, V2_ANSWER, latency=0.042)
    assert (first.status_code, second.status_code) == (200, 200)
    (capture,) = sink.captures()
    assert capture["request_id"] == event_id
    assert (capture["model"], capture["version"], capture["stage"], capture["source"]) == (
        MODEL, VERSION, "production", "online")  # fmt: skip
    assert capture["status"] == 200 and capture["rows"] == 2
    assert capture["latency_ms"] == pytest.approx(42.0, abs=0.01)
    assert json.loads(capture["inputs"]) == {
        "columns": ["age", "income", "region"],
        "data": [[41, 52000.0, "north"], [29, 31000.5, "south"]],
    }
    assert json.loads(capture["outputs"]) == [0, 1]
    assert sink.sink.waiting == 0
    assert requests_counted() == counted + 1


def test_an_answer_that_arrives_before_its_request_is_paired_all_the_same(sink):
    at = time.time()
    assert sink.send(RESPONSE, "r-late", {"predictions": [0.7]}, at=at + 0.010).status_code == 200
    assert sink.sink.waiting == 1
    assert sink.send(REQUEST, "r-late", SPLIT, at=at).status_code == 200
    (capture,) = sink.captures()
    assert capture["latency_ms"] == pytest.approx(10.0, abs=0.01)
    assert json.loads(capture["inputs"]) == {"columns": ["age", "income"], "data": [[41, 52000.0]]}
    assert json.loads(capture["outputs"]) == [0.7]
    assert sink.sink.waiting == 0


def test_the_models_capture_settings_apply_excluded_columns_are_never_written(sink):
    sink.capture.store(TEAM).set_settings(MODEL, Settings(exclude_columns=("income",)), "carol")
    sink.capture._read_settings()  # as the writer does every few seconds
    sink.pair("r-excluded", V2_REQUEST, V2_ANSWER)
    (capture,) = sink.captures()
    assert json.loads(capture["inputs"])["columns"] == ["age", "region"]
    for file in sink.capture.folder.glob(f"{TEAM}.sqlite*"):
        assert b"31000.5" not in file.read_bytes()


def test_a_lone_half_expires_is_counted_as_dropped_and_its_late_other_half_makes_no_capture(sink):
    before = dropped()
    assert sink.send(REQUEST, "r-failed", SPLIT).status_code == 200
    assert sink.sink.waiting == 1
    sink.clock.value += cloudevents.PAIR_SECONDS + 1
    # The next event sweeps the table: the lone request goes, counted, and the new one waits.
    assert sink.send(REQUEST, "r-next", SPLIT).status_code == 200
    assert sink.sink.waiting == 1
    assert dropped() == before + 1
    store = sink.capture.store(TEAM)
    until(lambda: store.counts(MODEL, "production")["dropped"] == 1, "the dropped half in the team's store", 10, 0.05)
    assert sink.send(RESPONSE, "r-failed", V2_ANSWER).status_code == 200
    assert sink.captures() == []


def test_the_waiting_table_is_bounded_the_oldest_half_goes_first(tmp_path):
    running = Sink(tmp_path / "monitoring")
    running.sink.max_pending = 3
    try:
        for number in range(5):
            assert running.send(REQUEST, f"r{number}", SPLIT).status_code == 200
        assert running.sink.waiting == 3
        assert running.send(RESPONSE, "r0", V2_ANSWER).status_code == 200  # r0 was dropped: this waits alone
        assert running.send(RESPONSE, "r4", {"predictions": [1]}).status_code == 200
        assert [c["request_id"] for c in running.captures()] == ["r4"]
    finally:
        running.close()


def test_a_second_event_of_the_same_kind_and_id_is_refused_and_the_first_still_pairs(sink):
    before = refused("duplicate")
    assert sink.send(REQUEST, "r-twice", SPLIT).status_code == 200
    again = sink.send(REQUEST, "r-twice", V2_REQUEST)
    assert again.status_code == 409 and "ce-id r-twice" in again.json()["message"]
    assert refused("duplicate") == before + 1
    assert sink.send(RESPONSE, "r-twice", {"predictions": [1]}).status_code == 200
    (capture,) = sink.captures()
    assert json.loads(capture["inputs"])["columns"] == ["age", "income"]


def test_an_unknown_inference_service_is_refused_404_counted_and_nothing_is_stored(sink):
    before = refused("unknown_service")
    other = inference_service_name("someone-elses", "production", kserve.NAMESPACE)
    answer = sink.send(REQUEST, "r-unknown", SPLIT, isvc=other)
    assert answer.status_code == 404 and other in answer.json()["message"]
    assert sink.send(RESPONSE, "r-unknown", V2_ANSWER, isvc=other).status_code == 404
    assert refused("unknown_service") == before + 2
    assert sink.sink.waiting == 0
    assert list(sink.capture.folder.glob("*.sqlite")) == []


# --- hostile events -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "header"),
    [
        ({"ce_specversion": None}, 400, "ce-specversion"),
        ({"ce_specversion": "0.3"}, 400, "ce-specversion"),
        ({"ce_type": "org.kubeflow.serving.inference.explain"}, 400, "ce-type"),
        ({"ce_id": None}, 400, "ce-id"),
        ({"ce_id": "a" * 101}, 400, "ce-id"),
        ({"ce_id": "a b"}, 400, "ce-id"),
        ({"ce_id": "'; DROP TABLE captures; --"}, 400, "ce-id"),
        ({"ce_source": None}, 400, "ce-source"),
        ({"ce_component": "transformer"}, 400, "ce-component"),
        ({"ce_inferenceservicename": "../../etc/passwd"}, 400, "ce-inferenceservicename"),
        ({"ce_inferenceservicename": "a" * 64}, 400, "ce-inferenceservicename"),
        ({"ce_namespace": "default"}, 404, "ce-namespace"),
        ({"ce_time": None}, 400, "ce-time"),
        ({"ce_time": "yesterday"}, 400, "ce-time"),
        ({"ce_time": "2026-13-45T25:61:00Z"}, 400, "ce-time"),
        ({"ce_time": "2099-01-01T00:00:00Z"}, 400, "ce-time"),
        ({"ce_time": "1" * 10_000}, 400, "ce-time"),
        ({"X_Forwarded_For": "203.0.113.9"}, 403, "proxy"),
    ],
)  # fmt: skip
def test_a_malformed_event_is_refused_naming_the_header_and_nothing_waits_or_is_stored(sink, changes, status, header):
    answer = sink.send(REQUEST, "r-bad", SPLIT, **changes)
    assert answer.status_code == status
    assert header in answer.json()["message"]
    assert sink.sink.waiting == 0
    assert sink.captures() == []


@pytest.mark.parametrize(
    ("request_body", "answer_body", "content_type"),
    [
        (b"not json", json.dumps(V2_ANSWER).encode(), "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, b"[" * 100_000, "application/json"),
        (b'{"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}',
         b'{"outputs": "nonsense"}', "application/json"),
        (b'{"inputs": [{"name": "a", "data": [1, 2]}, {"name": "b", "data": [1]}]}', b"{}", "application/json"),
        (b'{"inputs": [{"name": "a", "data": [{"x": 1}]}]}', b"\xff\xfe", "application/json"),
        (b'{"inputs": [{"name": "a", "shape": [3], "data": [1, 2]}]}', b"", "application/json"),
        (b"\xff\xfe\x00garbage", b"\x00", "text/csv"),
    ],
)  # fmt: skip
def test_a_body_that_is_no_table_is_captured_without_rows_keeping_latency_and_status(
    sink, request_body, answer_body, content_type
):
    first, second = sink.pair("r-odd", request_body, answer_body, latency=0.005, content_type=content_type)
    assert (first.status_code, second.status_code) == (200, 200)
    (capture,) = sink.captures()
    assert (capture["status"], capture["rows"]) == (200, 0)
    assert capture["latency_ms"] == pytest.approx(5.0, abs=0.01)
    assert capture["inputs"] is None or json.loads(capture["inputs"])["data"] == []


def test_a_body_beyond_the_limit_is_captured_without_its_rows(sink):
    rows = [[n, n] for n in range(cloudevents.MAX_BODY_BYTES // 8)]
    big = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": rows}}).encode()
    assert len(big) > cloudevents.MAX_BODY_BYTES
    sink.pair("r-big", big, {"predictions": [0]})
    (capture,) = sink.captures()
    assert (capture["rows"], capture["inputs"]) == (0, None)


def test_a_body_announced_beyond_the_transfer_limit_is_refused_before_it_is_read(sink):
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=30)
    connection.putrequest("POST", "/services/pipeline/capture")
    connection.putheader("Content-Length", str(cloudevents.MAX_TRANSFER_BYTES + 1))
    connection.putheader("ce-specversion", "1.0")
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status in (400, 413)  # tornado may refuse it before the handler does
    connection.close()
    assert sink.sink.waiting == 0


def test_a_fault_in_the_route_is_answered_as_a_refusal_never_a_500(tmp_path):
    def broken(name):
        raise RuntimeError("release store unreadable")

    running = Sink(tmp_path / "monitoring", route=broken)
    try:
        before = refused("unreadable")
        answer = running.send(REQUEST, "r-fault", SPLIT)
        assert answer.status_code == 422
        assert "could not be captured" in answer.json()["message"]
        assert refused("unreadable") == before + 1
    finally:
        running.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-21T14:26:03.123456789Z", 1787322363.123456789),
        ("2026-08-21T14:26:03Z", 1787322363.0),
        ("2026-08-21T16:26:03.5+02:00", 1787322363.5),
        ("2026-08-21 14:26:03z", 1787322363.0),
        ("2026-02-30T00:00:00Z", None),
        ("2026-08-21T14:26:03", None),
        ("", None),
    ],
)
def test_event_times_are_read_as_the_cloudevents_sdk_writes_them(text, expected):
    found = event_time(text)
    assert found == (pytest.approx(expected, abs=1e-6) if expected is not None else None)


# --- which InferenceService is which model ------------------------------------------------------------------------

RUN = "0123456789abcdef0123456789abcdef"
PASSED = [GateResult("model_loads", True, "the model loads")]


def released(store: ReleaseStore, version: int, *, approve: bool):
    body = {"model_uri": f"runs:/{RUN}/model", "name": MODEL, "kind": "online", "description": "gbm"}
    release = store.create(validate_publish(body, {RUN: TEAM}.get), version=version, publisher="pat")
    store.start_gating(release.id)
    store.record_gate_results(release.id, PASSED)
    release = store.mark_staging_ready(release.id, {"staging": f"/services/models/{MODEL}/staging/invocations"})
    if approve:
        store.approve(release.id, "val", "checked")
        release = store.mark_production(release.id, endpoints={"production": f"/services/models/{MODEL}/production"})
    return release


def test_release_routes_name_each_served_stage_and_see_a_promotion_after_their_refresh(tmp_path):
    store = ReleaseStore(tmp_path / "pipeline.db")
    released(store, 1, approve=True)
    staging = released(store, 2, approve=False)
    clock = FakeClock()
    route = ReleaseRoutes(store, refresh=5.0, clock=clock)
    staging_isvc = inference_service_name(MODEL, "staging", kserve.NAMESPACE)
    assert route(ISVC) == (MODEL, "production", "1", TEAM)
    assert route(staging_isvc) == (MODEL, "staging", "2", TEAM)
    assert route(inference_service_name("nobody", "production", kserve.NAMESPACE)) is None
    store.approve(staging.id, "val", "checked")
    store.mark_production(staging.id, endpoints={"production": f"/services/models/{MODEL}/production"})
    assert route(ISVC) == (MODEL, "production", "1", TEAM), "read again only after the refresh"
    clock.value += 5.0
    assert route(ISVC) == (MODEL, "production", "2", TEAM)
    assert route(staging_isvc) is None


# --- the InferenceService and the way to the sink -----------------------------------------------------------------


def test_the_inference_service_logs_every_request_and_answer_to_the_pipelines_capture_sink():
    service = kserve.inference_service(MODEL, VERSION, "s3://mlflow/3/abc/artifacts/model", TEAM, "production")
    assert service["spec"]["predictor"]["logger"] == {"mode": "all", "url": kserve.CAPTURE_URL}
    # The path is the one the sink's routes answer under the pipeline's prefix.
    (route,) = capture_sink_routes("/services/pipeline/", None, ROUTES.get)  # type: ignore[arg-type]
    assert urlsplit(kserve.CAPTURE_URL).path == route[0]


NO_SCHEMA = (
    f"KServe's schema not found at {KSERVE_SCHEMA_FILE} (peer artifact: kserve/kserve "
    "config/crd/full/serving.kserve.io_inferenceservices.yaml, commit aaac4e29; see ../shared/peers/README.md)"
)


@pytest.mark.skipif(not KSERVE_SCHEMA_FILE.exists(), reason=NO_SCHEMA)
@pytest.mark.parametrize("stage", kserve.STAGES)
def test_the_inference_service_with_its_logger_is_valid_for_kserve(stage):
    service = kserve.inference_service(MODEL, VERSION, "s3://mlflow/3/abc/artifacts/model", TEAM, stage)
    assert kserve_errors(service) == []
    schema = json.loads(KSERVE_SCHEMA_FILE.read_text())
    logger = schema["properties"]["spec"]["properties"]["predictor"]["properties"]["logger"]["properties"]
    assert service["spec"]["predictor"]["logger"]["mode"] in logger["mode"]["enum"]


def manifests(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(
    "pipeline", [VALUES_DIR / "platform" / "manifests" / "pipeline.yaml", CHART_TEMPLATES / "platform-pipeline.yaml"]
)
def test_the_capture_url_is_the_pipeline_services_in_cluster_address_under_its_prefix(pipeline):
    documents = manifests(pipeline)
    service = next(d for d in documents if d["kind"] == "Service")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    binding = next(
        d for d in documents if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "mlopshub-pipeline-deployer"
    )
    (subject,) = binding["subjects"]  # the pipeline's ServiceAccount, in the namespace the pipeline runs in
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    url = urlsplit(kserve.CAPTURE_URL)
    assert url.hostname == f"{service['metadata']['name']}.{subject['namespace']}.svc"
    (entry,) = [port for port in service["spec"]["ports"] if port["port"] == url.port]
    # The Service's port leads to the container port the sink listens on, which is not the API's.
    assert entry["name"] == entry["targetPort"] == "capture"
    assert int(env["MLOPSHUB_CAPTURE_PORT"]) == container_ports["capture"] == CAPTURE_PORT
    assert container_ports["capture"] != container_ports["http"] == urlsplit(env["JUPYTERHUB_SERVICE_URL"]).port
    assert url.path == env["JUPYTERHUB_SERVICE_PREFIX"] + "capture"


def pipeline_pod(path) -> Pod:
    deployment = next(d for d in manifests(path) if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    return Pod("pipeline", "mlopshub", deployment["spec"]["template"]["metadata"]["labels"], "10.1.0.6", ports)


def kserve_pod(team: str, ip: str, namespace: str = kserve.NAMESPACE, component: str = "predictor") -> Pod:
    """A predictor's pod with the labels KServe gives it: the InferenceService's, its name and its component."""
    service = kserve.inference_service(MODEL, VERSION, "s3://b/m", team, "production")
    labels = {**service["metadata"]["labels"], "serving.kserve.io/inferenceservice": service["metadata"]["name"],
              "component": component}  # fmt: skip
    return Pod(f"{component}-{team}", namespace, labels, ip, {"http": 8080})


def scoring_job_pod(team: str) -> Pod:
    job = kserve.batch_job(MODEL, VERSION, "models:/m/3", team, "data/in.csv", "v1", "/scores/m/staging")
    name = job["metadata"]["name"]
    labels = {**job["spec"]["template"]["metadata"]["labels"], "batch.kubernetes.io/job-name": name, "job-name": name}
    return Pod(f"job-{team}", kserve.NAMESPACE, labels, "10.3.0.21")


POLICY_FILES = [
    VALUES_DIR / "platform" / "manifests" / "networkpolicies.yaml",
    CHART_TEMPLATES / "platform-networkpolicies.yaml",
]


def network_policies(path) -> list[dict]:
    policies = [d for d in manifests(path) if d["kind"] == "NetworkPolicy"]
    for policy in policies:
        policy["metadata"].setdefault("namespace", "mlopshub")  # kubectl apply in the hub's namespace
    return policies


@pytest.mark.parametrize("policies_file", POLICY_FILES)
def test_the_predictors_and_only_they_reach_the_capture_port_from_the_models_namespace(policies_file):
    policies = network_policies(policies_file)
    pipeline = pipeline_pod(VALUES_DIR / "platform" / "manifests" / "pipeline.yaml")
    sink = urlsplit(kserve.CAPTURE_URL).port
    assert sink == CAPTURE_PORT
    assert allowed(policies, kserve_pod(TEAM, "10.3.0.31"), pipeline, sink), "the predictor's logger posts captures"
    assert allowed(policies, kserve_pod("retail-scoring", "10.3.0.32"), pipeline, sink)
    assert not allowed(policies, kserve_pod(TEAM, "10.3.0.31"), pipeline, 8080), "the sink's port only, not the API"
    assert not allowed(policies, kserve_pod(TEAM, "10.3.0.31"), pipeline, 9090), "the sink's port only"
    assert not allowed(policies, kserve_pod(TEAM, "10.3.0.33", component="transformer"), pipeline, sink)
    assert not allowed(policies, scoring_job_pod(TEAM), pipeline, sink), "a scoring Job never calls the pipeline"
    assert not allowed(policies, kserve_pod(TEAM, "10.9.0.9", namespace="default"), pipeline, sink), (
        "a pod labelled as a predictor in another namespace"
    )
    stranger = Pod("stranger", kserve.NAMESPACE, {"app": "curl"}, "10.3.0.99")
    assert not allowed(policies, stranger, pipeline, sink)


def chart_pod(component: str, ip: str, **extra: str) -> Pod:
    """A pod of the Zero to JupyterHub chart with its labels (as tests/unit/test_network_policies.py models them)."""
    labels = {"app": "jupyterhub", "release": "mlopshub", "component": component, **extra}
    if component == "singleuser-server":
        extra_labels = load_yaml(VALUES_DIR / "jupyterhub.yaml")["singleuser"].get("extraLabels") or {}
        labels.update({str(k): str(v) for k, v in extra_labels.items()})
    return Pod(component, "mlopshub", labels, ip)


@pytest.mark.parametrize("policies_file", POLICY_FILES)
def test_a_workspace_reaches_the_api_but_never_the_capture_port_where_it_could_forge_captures(policies_file):
    policies = network_policies(policies_file)
    pipeline = pipeline_pod(VALUES_DIR / "platform" / "manifests" / "pipeline.yaml")
    sink = urlsplit(kserve.CAPTURE_URL).port
    workspace = chart_pod("singleuser-server", "10.2.0.11", **{"hub.jupyter.org/username": "user-of-sme-credit"})
    assert allowed(policies, workspace, pipeline, 8080), "the Lab sidebar publishes and reads releases"
    assert not allowed(policies, workspace, pipeline, sink), "a notebook must not post captures"
    # Nothing else in the cluster reaches the sink either: the hub, the proxy, the platform's own pods.
    for other in (
        chart_pod("hub", "10.1.0.2"),
        chart_pod("proxy", "10.1.0.3"),
        Pod("platform-service", "mlopshub", {"app.kubernetes.io/part-of": "mlopshub"}, "10.1.0.9"),
    ):  # fmt: skip
        assert allowed(policies, other, pipeline, 8080), other.name
        assert not allowed(policies, other, pipeline, sink), f"{other.name} reaches the capture sink"


def test_the_chart_template_of_the_policies_is_the_platform_manifest():
    source = VALUES_DIR / "platform" / "manifests" / "networkpolicies.yaml"
    template = (CHART_TEMPLATES / "platform-networkpolicies.yaml").read_text()
    assert template.split("\n", 1)[1] == source.read_text()


# --- the pipeline serves the sink on a port of its own -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_in_kubernetes_the_pipeline_serves_the_sink_on_its_own_port_and_never_on_the_apis(tmp_path):
    data = tmp_path / "pipeline"
    runner = build_runner(data_dir=data, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", teams={},
                          public_url="http://hub", mode="kubernetes", env={"MLOPSHUB_APPLY": "false"})  # fmt: skip
    monitoring = ModelMonitoring(runner, Monitor(data / "monitoring"), check_seconds=3600)
    api_port, capture_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}/services/pipeline/"
    sink = f"http://127.0.0.1:{capture_port}/services/pipeline/"

    async def nobody(token: str) -> None:
        return None

    async def start() -> asyncio.Task:
        return asyncio.ensure_future(
            service.serve(runner, nobody, host="127.0.0.1", port=api_port, prefix="/services/pipeline/",
                          models_prefix="/services/models/", monitoring=monitoring, capture_port=capture_port)
        )  # fmt: skip

    async def release_to_production() -> None:
        released(runner.store, 1, approve=True)  # on the service's loop, as its own writes are

    async def stop(task: asyncio.Task) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    loop = Loop()
    try:
        serving = loop.call(start())
        until(lambda: _answers(sink + "capture") == 405, "the capture sink answers (GET: only POST is taken)")
        loop.call(release_to_production())
        # On the API's port, the sink is not there: a forged pair is not found, and nothing is captured.
        for kind, body in ((REQUEST, V2_REQUEST), (RESPONSE, V2_ANSWER)):
            assert send_event(api + "capture", kind, "forged-1", body).status_code == 404
        # On its own port, the predictors' pair becomes a capture; nothing but the sink answers there.
        for kind, body in ((REQUEST, V2_REQUEST), (RESPONSE, V2_ANSWER)):
            assert send_event(sink + "capture", kind, "logged-1", body).status_code == 200
        assert _answers(sink + "api/releases") == 404
        assert _answers(api + "api/releases") != 404
    finally:
        loop.call(stop(serving))  # the capture is closed: what was queued is written
        loop.close()
    with sqlite3.connect(data / "monitoring" / f"{TEAM}.sqlite") as connection:
        rows = connection.execute("SELECT request_id, model, version, stage, rows FROM captures").fetchall()
    assert rows == [("logged-1", MODEL, "1", "production", 2)]


def _answers(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


@pytest.mark.parametrize(("value", "port"), [(None, 8090), ("", 8090), ("9443", 9443), ("0", None), ("http", None)])
def test_the_capture_port_comes_from_the_environment_and_a_wrong_one_is_refused_naming_the_variable(value, port):
    environ = {} if value is None else {"MLOPSHUB_CAPTURE_PORT": value}
    if port is None:
        with pytest.raises(ValueError, match=f"MLOPSHUB_CAPTURE_PORT must be a TCP port number.*{value!r}"):
            service.capture_port_from(environ)
    else:
        assert service.capture_port_from(environ) == port
