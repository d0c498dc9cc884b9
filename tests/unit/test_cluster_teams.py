"""Kubernetes: a team made at runtime gets the objects `mlopshub helm generate` writes for a catalog team.

No API server here: the objects are checked strictly against Kubernetes' schemas, and the apply is sent to a
small HTTP peer on loopback that answers server-side apply as the API server does (and records what it got),
then to an address where nothing answers.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
import yaml
from kube_api_peer import kubeconfig

from mlopshub import catalog, helm
from mlopshub.services.pipeline.cluster_teams import ClusterTeamObjects, ClusterUnavailable, from_env

REPO = Path(__file__).resolve().parents[2]
SETTINGS = helm.team_volume_settings()
PIPELINE = REPO / "helm-values" / "platform" / "manifests" / "pipeline.yaml"


def test_a_runtime_teams_objects_are_the_ones_helm_generate_writes_for_a_catalog_team():
    cat = catalog.load(REPO / "profiles")
    claim, account = ClusterTeamObjects(SETTINGS, "mlopshub").objects("sme-credit")
    generated_claim = next(
        c for c in helm.team_volume_claims(cat, SETTINGS) if c["metadata"]["name"] == "team-sme-credit"
    )
    assert {**claim, "metadata": {k: v for k, v in claim["metadata"].items() if k != "namespace"}} == generated_claim
    assert claim["metadata"]["namespace"] == "mlopshub"
    assert account == next(a for a in helm.model_service_accounts(cat) if a["metadata"]["name"] == "models-sme-credit")
    for document in (claim, account):
        kubernetes_validate.validate(document, "1.31", strict=True)


def test_the_pipeline_deployment_passes_the_team_volume_settings_the_chart_uses():
    documents = [d for d in yaml.safe_load_all(PIPELINE.read_text()) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    applier = from_env(env)
    assert applier is not None and applier.volume_settings == SETTINGS
    # ... and the pipeline may apply exactly these two kinds, each in its namespace.
    rules = {
        d["metadata"]["namespace"]: [r for rule in d["rules"] for r in rule["resources"] if "patch" in rule["verbs"]]
        for d in documents
        if d["kind"] == "Role"
    }
    assert "persistentvolumeclaims" in rules["mlopshub"] and "serviceaccounts" in rules["mlopshub-models"]
    with pytest.raises(ValueError, match="MLOPSHUB_TEAM_VOLUME_CLASS"):
        from_env({"MLOPSHUB_MODE": "kubernetes"})
    assert from_env({}) is None  # one machine


class ApplyPeer(BaseHTTPRequestHandler):
    """Answers PATCH with the applied object, as the API server does for server-side apply."""

    received: list[dict] = []

    def do_PATCH(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        url = urlparse(self.path)
        self.received.append(
            {"path": url.path, "query": parse_qs(url.query), "type": self.headers["Content-Type"], "body": body}
        )
        answer = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def test_the_objects_are_applied_server_side_with_the_pipelines_field_manager(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApplyPeer)
    ApplyPeer.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        applier = ClusterTeamObjects(
            SETTINGS, "mlopshub", kubeconfig=kubeconfig(tmp_path, f"http://127.0.0.1:{server.server_port}")
        )
        applied = asyncio.run(applier.apply("fraud-ops"))
    finally:
        server.shutdown()
    assert applied == [
        "PersistentVolumeClaim mlopshub/team-fraud-ops",
        "ServiceAccount mlopshub-models/models-fraud-ops",
    ]
    paths = [r["path"] for r in ApplyPeer.received]
    assert paths == [
        "/api/v1/namespaces/mlopshub/persistentvolumeclaims/team-fraud-ops",
        "/api/v1/namespaces/mlopshub-models/serviceaccounts/models-fraud-ops",
    ]
    for request in ApplyPeer.received:
        assert request["type"] == "application/apply-patch+yaml"
        assert request["query"]["fieldManager"] == ["mlopshub-pipeline"]
        # The client sends "True": the API server reads booleans with Go's strconv.ParseBool, which takes it.
        assert request["query"]["force"][0] in ("true", "True")
    assert ApplyPeer.received[0]["body"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert ApplyPeer.received[1]["body"]["automountServiceAccountToken"] is False


def test_an_unreachable_api_is_named_with_the_object(tmp_path):
    applier = ClusterTeamObjects(SETTINGS, "mlopshub", kubeconfig=kubeconfig(tmp_path, "http://127.0.0.1:9"))
    with pytest.raises(ClusterUnavailable, match="PersistentVolumeClaim mlopshub/team-fraud-ops: could not reach"):
        asyncio.run(applier.apply("fraud-ops"))
