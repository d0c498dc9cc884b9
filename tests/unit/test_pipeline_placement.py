"""Where a release's model code runs: in Kubernetes, a Job of the team's, never a process of the pipeline's pod.

No API server here: the gate Job and its request Secret are checked offline
(strictly against Kubernetes' schemas and Pod Security's ``restricted``
rules), the Job's command is run for real on this machine with a request
file and a model fetched from a URI, and the runner in Kubernetes mode is
run against an address where no API server answers, to see that it tries
the API and starts no process of its own. The one-machine placement is
proved by the pipeline's other tests (tests/unit/test_pipeline_*.py).
"""

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import mlflow
import pandas as pd
import pytest
from pod_security import violations
from sklearn.linear_model import LogisticRegression
from testing_support import Loop

from mlopshub import catalog, helm
from mlopshub.images import image_ref
from mlopshub.pipeline import Release, ReleaseStore, State, validate_publish
from mlopshub.services.pipeline.gatecheck import GateCheckFailed
from mlopshub.services.pipeline.placement import ClusterPlacement, results_from_log
from mlopshub.services.pipeline.runner import Cluster, ReleaseRunner
from mlopshub.serving import KServeEndpoints
from mlopshub.serving.integrity import tree_digest
from mlopshub.serving.kserve import NAMESPACE
from mlopshub.serving.manifests import ManifestDeployer

RUN = "0123456789abcdef0123456789abcdef"
HOLDOUT_CSV = "income,debt,default\n1.0,2.0,0\n"


def a_release(team: str = "sme-credit") -> Release:
    return Release(id="rel-0123456789ab", model_name="credit-default", version="3", model_uri=f"runs:/{RUN}/model",
                   run_id=RUN, team=team, kind="online", description="", publisher="pat", state="gating", steps=[],
                   model_digest="sha256:" + "a" * 64)  # fmt: skip


JOB_UID = "0b6e1d1c-4a55-4d0e-9f61-3c1c5f3a2b10"


def gate_objects(team: str = "sme-credit"):
    placement = ClusterPlacement(lambda release: "s3://models/1/abc/artifacts", s3_endpoint="https://s3.bank")
    request = {"model_uri": "s3://models/1/abc/artifacts", "holdout": {"csv": HOLDOUT_CSV, "target": "default"}}
    return placement.objects("gates-rel-0123456789ab-abc123", a_release(team), request, job_uid=JOB_UID)


def pod_spec(job):
    return job["spec"]["template"]["spec"]


def test_gate_job_and_its_request_secret_are_valid_kubernetes():
    for document in gate_objects():
        for version in ("1.33", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(document, version, strict=True)


def test_gate_job_runs_as_the_teams_service_account_in_the_models_namespace_without_an_api_token():
    secret, job = gate_objects("retail-scoring")
    spec = pod_spec(job)
    # The ServiceAccount `mlopshub helm generate` writes for the team, in the namespace it writes it to.
    accounts = {
        (account["metadata"]["namespace"], account["metadata"]["name"])
        for account in helm.model_service_accounts(catalog.load(helm.CATALOG_DIR))
    }
    assert (job["metadata"]["namespace"], spec["serviceAccountName"]) in accounts
    assert job["metadata"]["namespace"] == secret["metadata"]["namespace"] == NAMESPACE == helm.MODELS_NAMESPACE
    assert spec["serviceAccountName"] == "models-retail-scoring"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "models-retail-scoring-s3"}}]
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "https://s3.bank"} in container["env"]


def test_gate_job_meets_the_restricted_pod_security_standard_with_limits_and_no_retry():
    _, job = gate_objects()
    assert violations(job) == []
    (container,) = pod_spec(job)["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(container["resources"]["limits"]) >= {"cpu", "memory", "ephemeral-storage"}
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_gate_job_runs_the_installed_gatecheck_in_the_hub_image_on_the_request_mounted_read_only():
    secret, job = gate_objects()
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert container["image"] == image_ref("hub")
    assert container["command"] == [
        "python", "-m", "mlopshub.services.pipeline.gatecheck", "--request-file=/etc/mlopshub/gates/request.json"
    ]  # fmt: skip
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/mlopshub/gates")
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    # The request holds the hold-out set: a Secret, whose one key is the request gatecheck reads.
    assert secret["kind"] == "Secret"
    request = json.loads(secret["stringData"]["request.json"])
    assert request["holdout"]["csv"] == HOLDOUT_CSV
    assert request["model_uri"] == "s3://models/1/abc/artifacts"
    # Owned by the Job: the cluster deletes the hold-out set with it if the pipeline cannot.
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", job["metadata"]["name"], JOB_UID)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A classifier saved as an MLflow model, as the version's files are in the object store."""
    folder = tmp_path_factory.mktemp("store") / "artifacts"
    frame = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0], "debt": [4.0, 3.0, 2.0, 1.0]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    mlflow.sklearn.save_model(model, folder / "model", input_example=frame.head(2), pip_requirements=["scikit-learn"])
    return folder


def run_gatecheck(tmp_path: Path, request: dict) -> subprocess.CompletedProcess:
    """The gate Job's command, run here on a request file as the Job's container is given it."""
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    command = [sys.executable, "-m", "mlopshub.services.pipeline.gatecheck", f"--request-file={request_file}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)


def test_gatecheck_fetches_the_model_from_its_uri_checks_its_digest_and_prints_the_results(tmp_path, saved_model):
    digest = tree_digest(saved_model / "model")
    done = run_gatecheck(tmp_path, {"model_uri": saved_model.as_uri(), "model_digest": digest, "tags": {}})
    assert done.returncode == 0, done.stderr[-2000:]
    results = {result.name: result for result in results_from_log(done.stdout, "gatecheck")}
    assert results["model_loads"].passed, results["model_loads"].reason
    assert results["signature_and_example"].passed, results["signature_and_example"].reason


def test_gatecheck_refuses_a_fetched_model_that_is_not_the_registered_one(tmp_path, saved_model):
    recorded = "sha256:" + "0" * 64
    done = run_gatecheck(tmp_path, {"model_uri": saved_model.as_uri(), "model_digest": recorded, "tags": {}})
    assert done.returncode != 0
    assert f"but {recorded} was recorded" in done.stderr


def test_a_job_log_without_results_fails_naming_the_job():
    with pytest.raises(GateCheckFailed, match="gate Job mlopshub-models/gates-x printed no gate results") as failed:
        results_from_log("loading model\nKilled\n", "gate Job mlopshub-models/gates-x")
    assert str(failed.value).endswith("loading model\nKilled")


# --- the runner in Kubernetes mode -------------------------------------------------------------------------------


class StorageRegistry:
    """The registry calls the runner makes to gate a version in Kubernetes (no MLflow server here)."""

    def run_tags(self, run_id: str, team: str) -> dict[str, str]:
        return {}

    def storage_uri(self, team: str, name: str, version: str, artifacts_destination: str = "") -> str:
        return f"{artifacts_destination}/{team}/{name}/{version}"


@pytest.fixture
def unreachable_kubeconfig(tmp_path) -> Path:
    """A kubeconfig naming an API server at a port where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bank",
        "clusters": [{"name": "bank", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "pipeline", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "bank", "context": {"cluster": "bank", "user": "pipeline"}}],
    }))  # fmt: skip
    return path


class ProcessStarts:
    """Every process this Python process starts (fork, exec, spawn, subprocess) while ``watching``: audit events."""

    EVENTS = ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system")

    def __init__(self):
        self.watching = False
        self.seen: list[tuple[str, str]] = []
        sys.addaudithook(self.hook)  # a hook stays for the process's life: it records only while watching

    def hook(self, event: str, arguments: tuple) -> None:
        if self.watching and event in self.EVENTS:
            self.seen.append((event, repr(arguments)[:200]))


PROCESS_STARTS = ProcessStarts()


def test_runner_in_cluster_mode_runs_the_gates_as_a_job_and_starts_no_process_for_them(
    tmp_path, unreachable_kubeconfig
):
    store = ReleaseStore(tmp_path / "pipeline.sqlite")
    deployer = ManifestDeployer(tmp_path / "manifests")
    runner = ReleaseRunner(
        store=store,
        registry=StorageRegistry(),
        endpoints=KServeEndpoints(deployer),
        teams={},
        load_holdout=lambda team, spec: None,
        endpoint_url=lambda model, stage: f"https://hub/services/models/{model}/{stage}/invocations",
        cluster=Cluster(deployer, artifacts_destination="s3://mlopshub-mlflow/artifacts",
                        kubeconfig=str(unreachable_kubeconfig)),
    )  # fmt: skip
    assert isinstance(runner.placement, ClusterPlacement)
    body = {"model_uri": f"runs:/{RUN}/model", "name": "credit-default", "kind": "online"}
    release = store.create(validate_publish(body, {RUN: "sme-credit"}.get), version=3, publisher="pat")
    loop = Loop()
    PROCESS_STARTS.watching = True
    try:
        loop.call(runner.advance(release.id))
        loop.call(runner.idle())
    finally:
        PROCESS_STARTS.watching = False
        loop.close()
    failed = store.get(release.id)
    assert failed.state == State.FAILED
    assert "gate Job mlopshub-models/gates-" in failed.reason
    assert "could not reach the Kubernetes API at https://127.0.0.1:" in failed.reason
    assert PROCESS_STARTS.seen == [], "model code must never run in the pipeline's pod"
