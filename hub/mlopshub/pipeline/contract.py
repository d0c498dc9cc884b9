"""The publish contract: the pipeline's OpenAPI document, checked with jsonschema, one field named per refusal.

The document (``mlopshub/services/pipeline/openapi.json``, package data, served at
``/services/pipeline/openapi.json``) is the one source of what a publish
request may hold: the pipeline checks every body against it here, and the Lab
extension checks against the same document before it forwards one
(``mlopshub_lab.contract``, which finds it installed beside it or asks the
pipeline for it). What the schema can't say (a run of the caller's team, a
``..`` in the model path, a cron schedule a CronJob takes, ``batch`` only for
batch models) stays in :func:`mlopshub.pipeline.release.validate_publish`.

The document is OpenAPI 3.0: its ``nullable: true`` becomes a JSON Schema
``null`` type here. Each refusal names one field as a dotted path
(``batch.schedule``) with a message a person can act on; the Lab extension
words its refusals the same way (a test holds the two to it).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import InvalidRequest

#: The publish operation in the document.
PUBLISH = ("/api/releases", "post")


def openapi_path() -> Path:
    """Where the installed package keeps the pipeline's OpenAPI document (found without importing the package)."""
    spec = find_spec("mlopshub")
    assert spec is not None and spec.submodule_search_locations, "the mlopshub package is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "services" / "pipeline" / "openapi.json"


@cache
def document() -> dict[str, Any]:
    """The pipeline's OpenAPI document."""
    return json.loads(openapi_path().read_text())


def request_schema(openapi: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    """The JSON Schema of the body of ``method path``, ``$ref``s resolvable, OpenAPI's ``nullable`` made ``null``."""
    body = openapi["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return json_schema({**body, "components": openapi.get("components", {})})


def json_schema(node: Any) -> Any:
    """``node`` with each OpenAPI 3.0 ``nullable: true`` turned into a ``null`` in the schema's ``type``."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        converted["type"] = [node["type"], "null"]
    return converted


def problems(schema: dict[str, Any], body: Any) -> list[tuple[str, str]]:
    """Each ``(field, message)`` the schema finds in ``body``, the body's own first, then by field; [] if none."""
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda error: list(error.absolute_path))
    return [_explain(error) for error in errors]


def check(schema: dict[str, Any], body: Any) -> None:
    """Raise :class:`InvalidRequest` naming the first field of ``body`` the schema refuses."""
    found = problems(schema, body)
    if found:
        raise InvalidRequest(*found[0])


def check_publish(body: Any) -> None:
    """Check a publish request against the pipeline's OpenAPI document (422 naming the field)."""
    check(request_schema(document(), *PUBLISH), body)


_TYPE_NAMES = {"object": "a JSON object", "string": "a string", "integer": "an integer", "boolean": "true or false"}


def _explain(error: ValidationError) -> tuple[str, str]:
    path = [str(part) for part in error.absolute_path]
    where = ".".join(path)
    schema, instance, value = error.schema, error.instance, error.validator_value
    if error.validator == "required":
        missing = next(name for name in value if name not in instance)
        return ".".join([*path, missing]), "is required"
    if error.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(known))[0]
        return ".".join([*path, extra]), f"unknown field; expected one of: {', '.join(known)}"
    if error.validator == "type":
        if instance is None and not path:
            return "(body)", "expected a JSON object"
        if instance is None:
            return where, "is required"
        kinds = [value] if isinstance(value, str) else [kind for kind in value if kind != "null"]
        expected = " or ".join(_TYPE_NAMES.get(kind, kind) for kind in kinds)
        return where or "(body)", f"expected {expected}, got {type(instance).__name__} {instance!r}"[:300]
    if error.validator == "enum":
        return where, f"expected one of: {', '.join(map(str, value))}, got {instance!r}"
    if error.validator == "maxLength":
        return where, f"is {len(instance)} characters; at most {value}"
    if error.validator == "pattern":
        return where, f"expected {schema.get('description') or 'the form ' + value}, got {instance!r}"
    return where or "(body)", error.message
