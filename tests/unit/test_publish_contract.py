"""One publish contract: the pipeline's OpenAPI document, and the pipeline and the Lab extension both checking
bodies against it with the same answers.

The Lab extension's server can't import the hub package in a workspace image, so it words the schema's refusals in
its own module (``mlopshub_lab.contract``); these tests fail when the two answer a body differently, when the
extension's written-down contract (its openapi.yaml) differs from the pipeline's, or when a field the pipeline
takes is refused before it gets there (the bug: batch settings never left the sidebar).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mlopshub_lab import contract as lab_contract
from mlopshub_lab import models as lab_models
from mlopshub_lab.errors import InvalidField

from mlopshub.pipeline import InvalidRequest, contract, validate_publish

REPO = Path(__file__).resolve().parents[2]
LAB_OPENAPI = REPO / "extensions" / "mlopshub-lab" / "mlopshub_lab" / "openapi.yaml"
RUN = "0123456789abcdef0123456789abcdef"


def body(**fields: Any) -> dict[str, Any]:
    return {"model_uri": f"runs:/{RUN}/model", "name": "loans", "kind": "online", "description": "", **fields}


BATCH = {"input": "data/new_loans.csv", "rev": "v2", "schedule": "0 6 * * MON-FRI"}

GOOD = [
    body(),
    body(kind="batch", batch=BATCH),
    body(kind="batch", batch={"input": "data/new_loans.csv"}),
    body(kind="batch", batch={"input": "data/new_loans.csv", "schedule": None, "repo": None}),
    {"model_uri": "models:/credit/2", "name": "credit", "kind": "online"},
]

BAD = [
    (["runs:/x/m"], "(body)"),
    ({}, "model_uri"),
    ({"name": "loans", "kind": "online"}, "model_uri"),
    (body(model_uri=None), "model_uri"),
    (body(model_uri="s3://bucket/model"), "model_uri"),
    (body(name="bad name!"), "name"),
    (body(name="x" * 64), "name"),
    (body(name=3), "name"),
    (body(kind="streaming"), "kind"),
    (body(description=7), "description"),
    (body(description="x" * 2001), "description"),
    (body(colour="red"), "colour"),
    (body(kind="batch", batch="nightly"), "batch"),
    (body(kind="batch", batch={}), "batch.input"),
    (body(kind="batch", batch={"input": 5}), "batch.input"),
    (body(kind="batch", batch={**BATCH, "when": "6am"}), "batch.when"),
    (body(kind="batch", batch={**BATCH, "schedule": 6}), "batch.schedule"),
    (body(kind="batch", batch={**BATCH, "rev": None}), "batch.rev"),
]


def pipeline_schema() -> dict[str, Any]:
    return contract.request_schema(contract.document(), *contract.PUBLISH)


def lab_schema() -> dict[str, Any]:
    document = lab_contract.installed_document()
    assert document is not None, "the extension finds the hub package's document installed beside it"
    return lab_contract.request_schema(document, *lab_contract.PUBLISH)


def test_the_extension_reads_the_pipelines_own_document():
    assert lab_contract.installed_document() == contract.document()
    assert lab_schema() == pipeline_schema()


@pytest.mark.parametrize("good", GOOD)
def test_a_body_the_pipelines_contract_takes_passes_the_extension_unchanged(good):
    assert contract.problems(pipeline_schema(), good) == []
    assert lab_models.publish_body(good, lab_schema()) == good


@pytest.mark.parametrize(("bad", "field"), BAD)
def test_the_pipeline_and_the_extension_refuse_a_bad_body_with_the_same_field_and_words(bad, field):
    assert contract.problems(pipeline_schema(), bad)[0][0] == field
    assert lab_contract.problems(lab_schema(), bad) == contract.problems(pipeline_schema(), bad)
    with pytest.raises(InvalidField) as lab:
        lab_models.publish_body(bad, lab_schema())
    with pytest.raises(InvalidRequest) as pipeline:
        validate_publish(bad, {RUN: "sme-credit"}.get)
    assert (lab.value.field, lab.value.status_code) == (field, 422)
    assert (pipeline.value.field, pipeline.value.http_status) == (field, 422)
    assert str(lab.value) == str(pipeline.value)


def test_a_refusal_names_what_to_do():
    explain = dict(contract.problems(pipeline_schema(), body(name="bad name!", colour="red", kind="streaming")))
    assert explain["name"].startswith("expected a model name: 1 to 63 letters")
    assert explain["colour"] == "unknown field; expected one of: batch, description, kind, model_uri, name"
    assert explain["kind"] == "expected one of: online, batch, got 'streaming'"
    assert dict(contract.problems(pipeline_schema(), body(kind="batch", batch={})))["batch.input"] == "is required"


def test_the_extensions_written_contract_is_the_pipelines():
    # The extension's openapi.yaml states its publish body; it must be the pipeline's PublishRequest.
    lab = yaml.safe_load(LAB_OPENAPI.read_text())
    operation = lab["paths"]["/mlopshub-lab/releases"]["post"]["requestBody"]["content"]["application/json"]
    assert operation["schema"] == {"$ref": "#/components/schemas/PublishRequest"}
    schemas = contract.json_schema(contract.document()["components"]["schemas"])
    expected = schemas["PublishRequest"]
    expected["properties"]["batch"] = schemas["BatchSettings"]
    assert lab["components"]["schemas"]["PublishRequest"] == expected
