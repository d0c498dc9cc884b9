"""The publish contract, as the release pipeline writes it: its own OpenAPI document, checked with jsonschema.

The sidebar's publish goes to the pipeline through this server; the body is
checked here first, against the pipeline's document, so that a malformed one
is answered without a round trip and named by its field, and so that what
the pipeline accepts (a batch model's ``batch`` settings) passes here too.
There is no copy of the rules in this package: the document is read where the
hub package ``mlopshub`` is installed beside this one (one machine: its
package data), and otherwise asked of the pipeline (``GET
<pipeline>/openapi.json``, public, read once per pipeline address): workspace
images carry only this extension, and a workspace started from an older image
still checks against the pipeline it talks to.

:func:`json_schema` and :func:`problems` word refusals as the pipeline's
``mlopshub.pipeline.contract`` does; they are repeated here because workspace
images have no ``mlopshub`` to import, and a test holds the two to the same
answers.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import requests
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import PipelineUnavailable

#: The publish operation in the pipeline's document.
PUBLISH = ("/api/releases", "post")
#: Seconds to connect and to read the pipeline's document.
DOCUMENT_TIMEOUT = (5.0, 20.0)
_served: dict[str, dict[str, Any]] = {}


@cache
def installed_document() -> dict[str, Any] | None:
    """The pipeline's OpenAPI document from the ``mlopshub`` package installed here (not imported), or None."""
    spec = find_spec("mlopshub")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "services" / "pipeline" / "openapi.json"
    return json.loads(path.read_text()) if path.is_file() else None


def document_url(pipeline_api: str) -> str:
    """Where the pipeline serves its document: beside its API (``.../services/pipeline/openapi.json``)."""
    base = pipeline_api.rstrip("/")
    return f"{base.removesuffix('/api')}/openapi.json"


async def served_document(pipeline_api: str) -> dict[str, Any]:
    """The document the pipeline at ``pipeline_api`` serves (once per address); 502 when it can't be read."""
    url = document_url(pipeline_api)
    if url not in _served:
        try:
            response = await asyncio.to_thread(requests.get, url, timeout=DOCUMENT_TIMEOUT)
            response.raise_for_status()
            openapi = response.json()
            request_schema(openapi, *PUBLISH)
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            raise PipelineUnavailable(
                f"the release pipeline's API description at {url} could not be read ({type(error).__name__}); "
                "try again in a minute, or ask your platform admin whether the pipeline service runs"
            ) from None
        _served[url] = openapi
    return _served[url]


async def publish_schema(pipeline_api: str) -> dict[str, Any]:
    """The JSON Schema of a publish request, from the installed document or the pipeline's own."""
    openapi = installed_document() or await served_document(pipeline_api)
    return request_schema(openapi, *PUBLISH)


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
