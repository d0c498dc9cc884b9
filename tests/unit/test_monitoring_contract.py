"""One monitoring contract: the pipeline's OpenAPI document, the Lab extension's copy, and the code that checks.

The Lab extension's server can't import the hub package in a workspace image, so its openapi.yaml repeats the
settings' bounds and the windows and stages it checks before forwarding; these tests fail when a copy differs.
"""

import json
from pathlib import Path

import yaml

from mlopshub.monitoring.monitor import WINDOWS
from mlopshub.monitoring.store import MAX_EXCLUDED_COLUMNS, MAX_RETENTION_DAYS, Settings
from mlopshub.serving.endpoints import STAGES

REPO = Path(__file__).resolve().parents[2]
PIPELINE = json.loads((REPO / "hub/mlopshub/services/pipeline/openapi.json").read_text())
LAB = yaml.safe_load((REPO / "extensions/mlopshub-lab/mlopshub_lab/openapi.yaml").read_text())


def without_descriptions(schema):
    if isinstance(schema, dict):
        return {key: without_descriptions(value) for key, value in schema.items() if key != "description"}
    return schema


def test_the_lab_checks_settings_against_the_pipelines_bounds():
    pipeline = PIPELINE["components"]["schemas"]["CaptureSettingsChange"]
    lab = LAB["components"]["schemas"]["MonitoringSettings"]
    assert without_descriptions(lab["properties"]) == without_descriptions(pipeline["properties"])
    assert lab["additionalProperties"] is pipeline["additionalProperties"] is False
    properties = pipeline["properties"]
    assert properties["retention_days"]["maximum"] == MAX_RETENTION_DAYS
    assert properties["exclude_columns"]["maxItems"] == MAX_EXCLUDED_COLUMNS
    assert set(properties) == set(Settings().to_dict())


def test_windows_and_stages_are_the_same_everywhere():
    parameters = {p["name"]: p for p in PIPELINE["paths"]["/api/monitoring/{name}"]["get"]["parameters"]}
    assert tuple(parameters["window"]["schema"]["enum"]) == WINDOWS
    assert tuple(LAB["components"]["schemas"]["MonitoringWindow"]["enum"]) == WINDOWS
    assert set(parameters["stage"]["schema"]["enum"]) == set(STAGES)
    assert set(LAB["components"]["schemas"]["MonitoringStage"]["enum"]) == set(STAGES)
