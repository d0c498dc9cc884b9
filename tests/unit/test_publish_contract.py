"""One publish contract: the pipeline's OpenAPI document, and the pipeline and the Lab extension both checking
bodies against it with the same answers.

The Lab extension's server can't import the hub package in a workspace image, so it words the schema's refusals in
its own module (``mlopshub_lab.contract``); these tests fail when the two answer a body differently, when the
extension's written-down contract (its openapi.yaml) differs from the pipeline's, or when a field the pipeline
takes is refused before it gets there (the bug: batch settings never left the sidebar).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlopshub_lab import contract as lab_contract
from mlopshub_lab import models as lab_models
from mlopshub_lab.errors import InvalidField
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import ErrorHandler

from mlopshub.pipeline import InvalidRequest, State, contract, validate_publish
from mlopshub.pipeline.release import MODEL_NAME
from mlopshub.services.pipeline.app import RollbackHandler, RunOutputHandler, RunsHandler, make_app
from mlopshub.services.pipeline.service import build_runner

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


# --- the release states and the model-name rule: the core's, in every place that writes them down ---------------


def state_lists(openapi: dict[str, Any], releases: str) -> list[list[str]]:
    """Each list of release states in ``openapi``: a release's ``state``, then the ``?state=`` of ``releases``."""
    parameters = openapi["paths"][releases]["get"]["parameters"]
    filters = [parameter["schema"]["enum"] for parameter in parameters if parameter.get("name") == "state"]
    return [openapi["components"]["schemas"]["Release"]["properties"]["state"]["enum"], *filters]


def test_the_release_states_are_the_cores_in_both_documents_and_the_extension():
    states = [str(state) for state in State]
    assert state_lists(contract.document(), "/api/releases") == [states, states]
    assert state_lists(yaml.safe_load(LAB_OPENAPI.read_text()), "/mlopshub-lab/releases") == [states, states]
    assert list(lab_models.STATES) == states


@pytest.mark.parametrize("state", [str(state) for state in State])
def test_the_extension_forwards_a_listing_filtered_by_any_state_the_pipeline_has(state):
    assert lab_models.releases_query(state, None) == {"state": state}


def test_the_extension_refuses_a_state_the_pipeline_does_not_have():
    with pytest.raises(InvalidField, match="'shipped' is not a release state; one of: registered, gating,") as refused:
        lab_models.releases_query("shipped", None)
    assert refused.value.field == "state"


def name_patterns(openapi: dict[str, Any], models: str) -> dict[str, str | None]:
    """The pattern of each model name ``openapi`` takes: the publish request's, and each ``{name}`` below ``models``."""
    found = {"PublishRequest.name": openapi["components"]["schemas"]["PublishRequest"]["properties"]["name"]["pattern"]}
    for path, item in openapi["paths"].items():
        if not path.startswith(models):
            continue
        # A parameter is written for the whole path (the extension's document) or for each operation (the pipeline's).
        holders = {path: item, **{f"{method} {path}": op for method, op in item.items() if isinstance(op, dict)}}
        for where, holder in holders.items():
            for parameter in holder.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "name":
                    found[where] = parameter["schema"].get("pattern")
    return found


def test_a_model_name_is_one_pattern_in_both_documents_the_catalog_and_the_extension():
    pipeline = name_patterns(contract.document(), "/api/models/{name}/")
    lab = name_patterns(yaml.safe_load(LAB_OPENAPI.read_text()), "/mlopshub-lab/models/{name}/")
    every = {**pipeline, **{f"lab: {where}": pattern for where, pattern in lab.items()}}
    assert every == dict.fromkeys(every, MODEL_NAME.pattern)
    named = {path for path in contract.document()["paths"] if path.startswith("/api/models/{name}/")}
    assert {where.split(" ")[-1] for where in pipeline} >= named, "every {name} of the pipeline's document has one"
    assert "/mlopshub-lab/models/{name}/rollback" in lab, "and the extension's rollback"
    catalog = json.loads((REPO / "hub" / "mlopshub" / "catalog.schema.json").read_text())
    assert catalog["$defs"]["consumer"]["properties"]["models"]["items"]["pattern"] == MODEL_NAME.pattern
    assert lab_models.MODEL_NAME.pattern == MODEL_NAME.pattern


@pytest.fixture(scope="module")
def pipeline_app(tmp_path_factory):
    """The pipeline's web app as the service makes it, on an empty store (only its routes are asked)."""

    async def nobody(token: str) -> None:
        return None

    data = tmp_path_factory.mktemp("pipeline")
    runner = build_runner(data_dir=data, tracking_uri=f"sqlite:///{data}/mlflow.db", teams={}, public_url="http://hub")
    return make_app(runner, nobody)


#: Names at the edges of the rule (63 characters, and one more; '_' first), and whether it takes them.
NAMES = [("a" * 63, True), ("Credit_default.v2", True), ("a" * 64, False), ("_x", False)]
#: The pipeline's routes with a model name in them, and the handler each should reach.
MODEL_ROUTES = [
    ("rollback", RollbackHandler),
    ("runs", RunsHandler),
    ("runs/brun-0123abcd4567/output", RunOutputHandler),
]


@pytest.mark.parametrize(("name", "taken"), NAMES)
def test_the_extension_and_the_pipelines_routes_take_exactly_the_model_names_the_rule_takes(pipeline_app, name, taken):
    assert bool(MODEL_NAME.match(name)) is taken
    if taken:
        assert lab_models.model_name(name) == name
    else:
        with pytest.raises(InvalidField, match="is not a model name: 1 to 63 letters"):
            lab_models.model_name(name)
    for path, handler in MODEL_ROUTES:
        start = RequestStartLine("POST", f"/services/pipeline/api/models/{name}/{path}", "HTTP/1.1")
        request = HTTPServerRequest(start_line=start, headers=HTTPHeaders({"Host": "hub"}))
        routed = pipeline_app.find_handler(request).handler_class
        assert routed is (handler if taken else ErrorHandler), (name, path)
