"""Kubernetes serving objects for released models: KServe InferenceServices, batch CronJobs and Jobs.

Pure builders (no cluster): the pipeline applies what these return. Online
models are served by KServe's MLflow runtime (``modelFormat: mlflow``, the
V2 protocol), whose payload logger posts each request and answer to the
pipeline's capture sink (:mod:`mlopshub.monitoring.cloudevents`); batch
models are scored by ``python -m mlopshub.serving.batch`` in the hub image,
on a schedule in production (a CronJob) and once in staging (a Job).
:mod:`.manifests` picks which for a release; :mod:`.names` names them.
Every pod they make meets Pod Security's ``restricted`` standard (KServe's
storage initializer excepted: KServe's install configures it; the logger's
agent container copies the model container's security context).
"""

from __future__ import annotations

from typing import Any

from ..images import image_ref
from .names import cronjob_name, inference_service_name, job_name
from .schedule import ScheduleError, parse

NAMESPACE = "mlopshub-models"
#: MLflow for scoring Jobs: its in-cluster Service (helm-values/platform/mlflow.yaml) under the prefix it serves at.
MLFLOW_URL = "http://mlflow.mlopshub.svc:5000/services/mlflow"
#: Where the predictors' payload logger posts each request and response (CloudEvents): the pipeline's in-cluster
#: Service (helm-values/platform/manifests/pipeline.yaml) on its port ``capture`` (the sink's own, not the API's
#: 8080: the logger cannot authenticate), under its prefix, path ``capture``
#: (:func:`mlopshub.monitoring.cloudevents.capture_sink_routes`). Its NetworkPolicy admits the predictors there only.
CAPTURE_URL = "http://mlopshub-pipeline.mlopshub.svc:8090/services/pipeline/capture"


def mlflow_token_secret(team: str) -> str:
    """The Secret (in the models namespace, key ``token``) holding the MLflow token of ``team``'s scoring Jobs."""
    return f"models-{team}-mlflow"


STAGES = ("staging", "production")


def _model_resources() -> dict[str, Any]:
    """What a predictor and a scoring job may use (one small scikit-learn model; adjust per bank), a fresh copy."""
    return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}


def pod_security_context() -> dict[str, Any]:
    """The pod-level settings Pod Security's ``restricted`` standard requires (a fresh copy)."""
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    """The container-level settings Pod Security's ``restricted`` standard requires (a fresh copy).

    The images run as a numeric user other than root (the hub image as 1000,
    KServe's MLServer image too), so ``runAsNonRoot`` holds without naming one.
    """
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _labels(name: str, version: str, team: str, stage: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": "mlopshub",
        "mlopshub.io/team": team,
        "mlopshub.io/stage": stage,
        "mlopshub.io/model-version": str(version),
    }


def inference_service(
    model: str,
    version: str,
    storage_uri: str,
    team: str,
    stage: str,
    namespace: str = NAMESPACE,
    capture_url: str = CAPTURE_URL,
) -> dict[str, Any]:
    """The InferenceService serving ``model`` version ``version`` at ``stage`` (staging or production).

    Its predictor's payload logger (KServe's agent, ``mode: all``) posts every request and every answer to
    ``capture_url`` as CloudEvents, off the request path: production monitoring's capture in the cluster.
    """
    if stage not in STAGES:
        raise ValueError(f"stage '{stage}': expected one of {', '.join(STAGES)}")
    name = inference_service_name(model, stage, namespace)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(name, version, team, stage),
            "annotations": {"mlopshub.io/model": model},
        },
        "spec": {
            "predictor": {
                "minReplicas": 1 if stage == "production" else 0,
                "serviceAccountName": f"models-{team}",
                "securityContext": pod_security_context(),
                "logger": {"mode": "all", "url": capture_url},
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": _model_resources(),
                    "securityContext": container_security_context(),
                },
            }
        },
    }


def _score_container(
    model_uri: str, team: str, input_path: str, input_rev: str, output_dir: str, repo: str | None
) -> dict[str, Any]:
    """The container that runs ``python -m mlopshub.serving.batch`` once."""
    command = ["python", "-m", "mlopshub.serving.batch", "--model-uri", model_uri, "--input", input_path,
               "--rev", input_rev, "--output", output_dir]  # fmt: skip
    if repo:
        command += ["--repo", repo]
    return {
        "name": "score",
        "image": image_ref("hub"),
        "command": command,
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": MLFLOW_URL},
            # The team's token: MLflow lets it read the team's workspace only (mlopshub.services.mlflow_auth).
            {
                "name": "MLFLOW_TRACKING_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": mlflow_token_secret(team), "key": "token"}},
            },
            {"name": "MLFLOW_WORKSPACE", "value": team},
            {"name": "DVC_NO_ANALYTICS", "value": "1"},
        ],
        "resources": _model_resources(),
        "securityContext": container_security_context(),
    }


def _job_spec(labels: dict[str, str], team: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "backoffLimit": 1,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": f"models-{team}",
                "securityContext": pod_security_context(),
                "containers": [container],
            },
        },
    }


def batch_cronjob(
    model: str,
    version: str,
    model_uri: str,
    team: str,
    input_path: str,
    input_rev: str,
    output_dir: str,
    schedule: str,
    namespace: str = NAMESPACE,
    repo: str | None = None,
) -> dict[str, Any]:
    """The CronJob that scores a DVC-versioned input with ``model_uri`` on ``schedule`` (cron syntax).

    ``repo`` is the project (a git URL in the cluster); without it the job reads the image's working folder.
    """
    try:
        parse(schedule)
    except ScheduleError as error:
        raise ValueError(f"schedule '{schedule}': {error}") from None
    name = cronjob_name(model)
    labels = _labels(name, version, team, "production")
    container = _score_container(model_uri, team, input_path, input_rev, output_dir, repo)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"mlopshub.io/model": model},
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": _job_spec(labels, team, container)},
        },
    }


def batch_job(
    model: str,
    version: str,
    model_uri: str,
    team: str,
    input_path: str,
    input_rev: str,
    output_dir: str,
    stage: str = "staging",
    namespace: str = NAMESPACE,
    repo: str | None = None,
) -> dict[str, Any]:
    """A one-off Job scoring the input once: a batch model's staging run (named per version: Jobs are immutable)."""
    if stage not in STAGES:
        raise ValueError(f"stage '{stage}': expected one of {', '.join(STAGES)}")
    name = job_name(model, version, stage)
    labels = _labels(name, version, team, stage)
    container = _score_container(model_uri, team, input_path, input_rev, output_dir, repo)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"mlopshub.io/model": model},
        },
        # Finished staging runs are cleaned up by the cluster a week later; their output stays in the output folder.
        "spec": {**_job_spec(labels, team, container), "ttlSecondsAfterFinished": 7 * 24 * 3600},
    }
