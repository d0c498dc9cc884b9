"""Serving objects for Kubernetes (validated offline), applied to a Kubernetes API stand-in, and batch scoring.

The API stand-in (``kube_api_peer``) answers server-side apply, delete and watch on loopback as the API server
does and records each request; batch scoring reads a DVC-versioned input.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from kube_api_peer import ApiPeer, kubeconfig
from testing_support import kserve_errors

from mlopshub.serving import batch, kserve, manifests, names
from mlopshub.serving.apply import ApplyFailed, ServerSideApply


@pytest.mark.parametrize("stage", ["staging", "production"])
def test_inference_service_is_valid_for_kserve(stage):
    service = kserve.inference_service("credit-default", "3", "s3://mlflow/3/abc/artifacts/model", "sme-credit", stage)
    assert kserve_errors(service) == []
    assert service["metadata"]["name"] == f"credit-default-{stage}"
    assert service["spec"]["predictor"]["model"]["modelFormat"] == {"name": "mlflow"}
    assert service["spec"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_strict_check_refuses_an_unknown_field():
    service = kserve.inference_service("credit", "3", "s3://x", "sme-credit", "staging")
    service["spec"]["predictor"]["model"]["modelFromat"] = {"name": "mlflow"}
    assert any("modelFromat" in error for error in kserve_errors(service))


def test_batch_cronjob_is_valid_kubernetes():
    job = kserve.batch_cronjob(
        "credit", "3", "models:/credit/3", "sme-credit", "data/loans.csv", "v2", "/out", "0 6 * * *"
    )
    for version in ("1.33", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(job, version, strict=True)
    command = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "mlopshub.serving.batch"]


@pytest.mark.parametrize(
    ("stage", "schedule", "message"),
    [("canary", "0 6 * * *", "stage 'canary'"), ("staging", "daily", "schedule 'daily'")],
)
def test_bad_stage_or_schedule_is_named(stage, schedule, message):
    with pytest.raises(ValueError, match=message):
        if schedule == "daily":
            kserve.batch_cronjob("m", "1", "models:/m/1", "t", "in.csv", "v1", "/out", schedule)
        else:
            kserve.inference_service("m", "1", "s3://x", "t", stage)


def test_batch_scores_a_versioned_input_and_records_model_and_input_hash(tmp_path, monkeypatch):
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    project = tmp_path / "project"
    project.mkdir()
    frame = pd.DataFrame({"amount": [100.0, 900.0, 2500.0, 4000.0], "default": [0, 0, 1, 1]})
    frame[["amount"]].to_csv(project / "loans.csv", index=False)
    for args in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "add", "-q", "loans.csv"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "v1"],
        ["git", "tag", "v1"],
    ):
        subprocess.run(args, cwd=project, env=env, check=True, capture_output=True)
    (project / "loans.csv").write_text("amount\n1\n")  # the workspace copy differs from v1

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Artifacts go under tmp_path too (with a database store MLflow defaults to ./mlruns).
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("batch", artifact_location=str(tmp_path / "art")))
    with mlflow.start_run():
        model = LogisticRegression().fit(frame[["amount"]], frame["default"])
        info = mlflow.sklearn.log_model(model, name="model", input_example=frame[["amount"]].head(2))
    monkeypatch.chdir(project)
    written = batch.score(info.model_uri, "loans.csv", "v1", tmp_path / "out")

    scored = pd.read_csv(written)
    assert list(scored.columns) == ["amount", "prediction"] and len(scored) == 4
    record = json.loads(written.with_suffix(".json").read_text())
    md5 = next(line.split()[-1] for line in (project / "loans.csv.dvc").read_text().splitlines() if "md5" in line)
    assert record["model_uri"] == info.model_uri
    assert record["input"] == {"path": "loans.csv", "rev": "v1", "md5": md5, "rows": 4}


def test_batch_refuses_an_unversioned_input(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"],
        cwd=tmp_path,
        check=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    (tmp_path / "plain.csv").write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="plain.csv"):
        batch.score("models:/none/1", "plain.csv", None, tmp_path / "out")


def test_cli_renders_both_kinds_and_names_a_missing_input():
    run = [
        sys.executable,
        "-m",
        "mlopshub.cli",
        "serving",
        "render",
        "--model",
        "credit",
        "--version",
        "3",
        "--team",
        "sme-credit",
    ]
    online = subprocess.run([*run, "--storage-uri", "s3://mlflow/x"], capture_output=True, text=True)
    assert online.returncode == 0 and "kind: InferenceService" in online.stdout
    batch_job = subprocess.run([*run, "--kind", "batch", "--input", "data/new.csv"], capture_output=True, text=True)
    assert batch_job.returncode == 0 and "kind: CronJob" in batch_job.stdout
    missing = subprocess.run([*run, "--kind", "batch"], capture_output=True, text=True)
    assert missing.returncode == 1 and "--input" in missing.stderr


def release(kind: str, **batch_settings) -> dict:
    """A release as the pipeline API returns it (only the fields the manifests read)."""
    settings = {"input": "data/new_loans.csv", "rev": "v2", "schedule": "*/30 6-18 * * 1-5", "repo": None}
    return {
        "id": "rel-1",
        "model_name": "Credit_Default",
        "version": "3",
        "team": "sme-credit",
        "kind": kind,
        "batch": {**settings, **batch_settings} if kind == "batch" else None,
    }


@pytest.mark.parametrize(
    ("kind", "stage", "expected"),
    [
        ("online", "staging", ["InferenceService"]),
        ("online", "production", ["InferenceService"]),
        ("batch", "staging", ["Job"]),
        ("batch", "production", ["CronJob"]),
    ],
)
def test_every_object_the_pipeline_would_apply_is_valid(kind, stage, expected):
    objects = manifests.release_objects(release(kind), stage, storage_uri="s3://mlflow/3/abc/artifacts/model")
    assert [o["kind"] for o in objects] == expected
    for document in objects:
        if document["kind"] == "InferenceService":
            assert kserve_errors(document) == []
        else:
            for version in ("1.33", kubernetes_validate.latest_version()):
                kubernetes_validate.validate(document, version, strict=True)
    if kind == "batch":
        spec = objects[0]["spec"]
        job = spec["jobTemplate"]["spec"] if stage == "production" else spec
        command = job["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("--model-uri") + 1] == "models:/Credit_Default/3"
        assert command[command.index("--output") + 1] == f"/scores/Credit_Default/{stage}"
        if stage == "production":
            assert spec["schedule"] == "*/30 6-18 * * 1-5"
        else:
            # Credit_Default is no Kubernetes name: lower case, a hash of the real one (test_kubernetes_names.py).
            assert objects[0]["metadata"]["name"] == names.job_name("Credit_Default", "3", "staging")
            assert objects[0]["metadata"]["name"].startswith("credit-default--")


def test_a_batch_model_without_schedule_keeps_nothing_in_the_cluster_and_online_needs_its_storage():
    assert manifests.release_objects(release("batch", schedule=None), "production") == []
    with pytest.raises(ValueError, match="storage URI"):
        manifests.release_objects(release("online"), "production")
    with pytest.raises(ValueError, match="five cron fields"):
        kserve.batch_cronjob("m", "1", "models:/m/1", "t", "in.csv", "v1", "/out", "0 6 * *")


KIND_PATHS = {
    "InferenceService": "/apis/serving.kserve.io/v1beta1/namespaces/mlopshub-models/inferenceservices/",
    "Job": "/apis/batch/v1/namespaces/mlopshub-models/jobs/",
    "CronJob": "/apis/batch/v1/namespaces/mlopshub-models/cronjobs/",
}


@pytest.mark.parametrize(
    ("kind", "stage", "expected"),
    [("online", "staging", "InferenceService"), ("batch", "staging", "Job"), ("batch", "production", "CronJob")],
)
def test_manifest_deployer_writes_the_yaml_and_applies_the_same_objects_server_side(tmp_path, kind, stage, expected):
    storage = "s3://mlflow/3/abc/artifacts/model"
    with ApiPeer() as api:
        deployer = manifests.ManifestDeployer(tmp_path / "manifests", ServerSideApply(api.kubeconfig(tmp_path)))
        written = asyncio.run(deployer.deploy(release(kind), stage, storage_uri=storage))
        (document,) = manifests.release_objects(release(kind), stage, storage_uri=storage)
        # The file stays what teams that deploy through git read: the objects as YAML, nothing added.
        assert written == tmp_path / "manifests" / f"Credit_Default-{stage}.yaml"
        assert written.read_text() == manifests.to_yaml([document])
        (patch,) = api.requests
        assert (patch["method"], patch["path"]) == ("PATCH", KIND_PATHS[expected] + document["metadata"]["name"])
        assert patch["type"] == "application/apply-patch+yaml"
        assert patch["query"]["fieldManager"] == ["mlopshub-pipeline"]
        # The client sends "True": the API server reads booleans with Go's strconv.ParseBool, which takes it.
        assert patch["query"]["force"][0] in ("true", "True")
        assert patch["body"] == document

        asyncio.run(deployer.delete("Credit_Default", stage))
        assert api.calls()[-1] == ("DELETE", patch["path"]) and api.objects == {}
        assert not written.exists()
        asyncio.run(deployer.delete("Credit_Default", stage))  # nothing left: nothing asked
        assert len(api.requests) == 2


def test_deleting_what_someone_already_deleted_is_done(tmp_path):
    with ApiPeer() as api:
        deployer = manifests.ManifestDeployer(tmp_path / "manifests", ServerSideApply(api.kubeconfig(tmp_path)))
        written = asyncio.run(deployer.deploy(release("batch"), "production"))
        api.objects.clear()  # `kubectl delete` by hand
        asyncio.run(deployer.delete("Credit_Default", "production"))
        assert api.calls()[-1][0] == "DELETE" and not written.exists()


def test_a_refused_or_unreachable_api_names_the_object_and_the_file_is_still_written(tmp_path):
    name = names.cronjob_name("Credit_Default")
    with ApiPeer() as api:
        api.refuse[name] = "spec.schedule: Invalid value"
        deployer = manifests.ManifestDeployer(tmp_path / "manifests", ServerSideApply(api.kubeconfig(tmp_path)))
        with pytest.raises(ApplyFailed, match=f"CronJob mlopshub-models/{name}: .* 422 .*spec.schedule: Invalid"):
            asyncio.run(deployer.deploy(release("batch"), "production"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    deployer.api = ServerSideApply(kubeconfig(tmp_path, nowhere))
    with pytest.raises(ApplyFailed, match=f"CronJob mlopshub-models/{name}: could not reach the Kubernetes API at"):
        asyncio.run(deployer.deploy(release("batch"), "production"))
    assert deployer.path("Credit_Default", "production").is_file()


def test_manifest_deployer_settings_come_from_the_pipelines_environment(tmp_path):
    applying = manifests.ManifestDeployer.from_env(tmp_path, {"MLOPSHUB_KUBECONFIG": "/etc/bank/kubeconfig"})
    assert applying.api is not None and applying.api.kubeconfig == "/etc/bank/kubeconfig"
    assert manifests.ManifestDeployer.from_env(tmp_path, {}).api.kubeconfig is None, "the pod's ServiceAccount"
    only_written = manifests.ManifestDeployer.from_env(tmp_path / "review", {"MLOPSHUB_APPLY": "false"})
    assert only_written.api is None
    written = asyncio.run(only_written.deploy(release("batch"), "staging"))
    assert [d["kind"] for d in yaml.safe_load_all(written.read_text())] == ["Job"]
    with pytest.raises(ValueError, match="MLOPSHUB_APPLY='no'"):
        manifests.ManifestDeployer.from_env(tmp_path, {"MLOPSHUB_APPLY": "no"})


def test_cli_renders_what_the_pipeline_would_apply_for_a_release(tmp_path):
    saved = tmp_path / "release.json"
    saved.write_text(json.dumps(release("batch")))
    command = [sys.executable, "-m", "mlopshub.cli", "serving", "render", "--release-json", str(saved)]
    staging = subprocess.run([*command, "--stage", "staging"], capture_output=True, text=True)
    assert staging.returncode == 0 and "kind: Job" in staging.stdout, staging.stderr
    production = subprocess.run(command, capture_output=True, text=True)
    assert production.returncode == 0 and "kind: CronJob" in production.stdout, production.stderr


def pod_specs(document: dict) -> tuple[dict, list[dict]]:
    """The pod spec a rendered object makes and its containers (an InferenceService's model is its container)."""
    if document["kind"] == "InferenceService":
        predictor = document["spec"]["predictor"]
        return predictor, [predictor["model"], *predictor.get("containers", [])]
    job = document["spec"]["jobTemplate"]["spec"] if document["kind"] == "CronJob" else document["spec"]
    pod = job["template"]["spec"]
    return pod, [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize(
    ("kind", "stage"), [("online", "staging"), ("online", "production"), ("batch", "staging"), ("batch", "production")]
)
def test_every_pod_the_serving_code_renders_is_admitted_under_pod_security_restricted(kind, stage):
    # A namespace enforcing `restricted` refuses a pod without these (kubernetes.io/docs/concepts/security/
    # pod-security-standards); KServe copies the predictor's fields into the pod it makes.
    (document,) = manifests.release_objects(release(kind), stage, storage_uri="s3://mlflow/3/abc/artifacts/model")
    pod, containers = pod_specs(document)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC", "volumes"} & set(pod), "no host namespaces or host paths"
    for container in containers:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True
        assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
        assert not context.get("privileged") and "runAsUser" not in context, "root is never asked for"
