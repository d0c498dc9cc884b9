"""Kubernetes serving objects for released models: KServe InferenceServices and batch CronJobs.

Pure builders (no cluster): the pipeline applies what these return. Online
models are served by KServe's MLflow runtime (``modelFormat: mlflow``, the
V2 protocol); batch models are scored by ``python -m mlopshub.serving.batch``
on a schedule, in the hub image.
"""

from __future__ import annotations

import re
from typing import Any

from ..images import image_ref

NAMESPACE = "mlopshub-models"
STAGES = ("staging", "production")


def resource_name(model: str, suffix: str) -> str:
    """A DNS-1123 name for a model's object (lower case, '-', at most 63 characters)."""
    base = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-") or "model"
    return f"{base[: 62 - len(suffix)]}-{suffix}".strip("-")


def _labels(model: str, version: str, team: str, stage: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": resource_name(model, stage),
        "app.kubernetes.io/managed-by": "mlopshub",
        "mlopshub.io/team": team,
        "mlopshub.io/stage": stage,
        "mlopshub.io/model-version": str(version),
    }


def inference_service(
    model: str, version: str, storage_uri: str, team: str, stage: str, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The InferenceService serving ``model`` version ``version`` at ``stage`` (staging or production)."""
    if stage not in STAGES:
        raise ValueError(f"stage '{stage}': expected one of {', '.join(STAGES)}")
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": resource_name(model, stage),
            "namespace": namespace,
            "labels": _labels(model, version, team, stage),
            "annotations": {"mlopshub.io/model": model},
        },
        "spec": {
            "predictor": {
                "minReplicas": 1 if stage == "production" else 0,
                "serviceAccountName": f"models-{team}",
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi"},
                    },
                },
            }
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
) -> dict[str, Any]:
    """The CronJob that scores a DVC-versioned input with ``model_uri`` on ``schedule`` (cron syntax)."""
    if len(schedule.split()) != 5:
        raise ValueError(f"schedule '{schedule}': expected five cron fields, e.g. '0 6 * * *'")
    command = [
        "python",
        "-m",
        "mlopshub.serving.batch",
        "--model-uri",
        model_uri,
        "--input",
        input_path,
        "--rev",
        input_rev,
        "--output",
        output_dir,
    ]
    container = {
        "name": "score",
        "image": image_ref("hub"),
        "command": command,
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlopshub.svc:5000"},
            {"name": "MLFLOW_WORKSPACE", "value": team},
            {"name": "DVC_NO_ANALYTICS", "value": "1"},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": resource_name(model, "batch"),
            "namespace": namespace,
            "labels": _labels(model, version, team, "production"),
        },
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "metadata": {"labels": _labels(model, version, team, "production")},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": f"models-{team}",
                            "containers": [container],
                        },
                    },
                }
            },
        },
    }
