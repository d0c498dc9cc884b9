"""The REST surface: registration, authentication, the written contract, error shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlopshub_lab
import yaml
from mlopshub_lab import handlers
from mlopshub_lab.routes import NAMESPACE, ROUTES

PACKAGE = Path(mlopshub_lab.__file__).parent
OPENAPI = yaml.safe_load((PACKAGE / "openapi.yaml").read_text())
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


async def test_version_answers_package_and_contract_version(api):
    status, body, _ = await api("GET", "version")
    assert status == 200
    assert body == {"version": mlopshub_lab.__version__, "api": 1}


async def test_requests_without_the_server_token_are_refused(api):
    for method, endpoint in (("GET", "version"), ("GET", "data/project"), ("POST", "data/enable")):
        status, body, _ = await api(method, endpoint, params={"path": ""}, headers={"Authorization": ""})
        assert status in (401, 403), (endpoint, status)
        assert "message" in body


async def test_wrong_parameters_answer_400_with_a_message(api):
    status, body, _ = await api("GET", "data/datasets", params={"path": "", "limit": "lots"})
    assert (status, body) == (400, {"message": "'limit' must be an integer, not 'lots'"})
    status, body, _ = await api("GET", "data/project")
    assert (status, body) == (400, {"message": "missing query parameter 'path'"})
    status, body, _ = await api("POST", "data/track", body={"path": 3})
    assert (status, body) == (400, {"message": "the request body needs a string field 'path'"})


async def test_a_page_token_not_from_a_previous_page_is_a_400(api, monkeypatch):
    # MLflow answers some malformed tokens with a 500; the extension names the parameter instead.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/services/mlflow")
    for endpoint, params in (("models/logged", {}), ("experiments/runs", {"experiment": "1"})):
        for token in ("0", "not base64!", "WzFd"):  # "WzFd" is base64 of [1], JSON but not an object
            status, answer, _ = await api("GET", endpoint, params={**params, "page_token": token})
            assert status == 400 and "page_token" in answer["message"], (endpoint, token, status, answer)


async def test_a_file_name_over_255_bytes_is_a_400_naming_the_path(api):
    for method, endpoint in (("GET", "data/project"), ("GET", "data/history"), ("POST", "data/track")):
        params, body = ({"path": "a" * 300}, None) if method == "GET" else (None, {"path": "a" * 300})
        status, answer, _ = await api(method, endpoint, params=params, body=body)
        assert status == 400 and "a" * 100 in answer["message"], (endpoint, status, answer)


def documented_path(route: str) -> str:
    """A route as OpenAPI writes it: ``releases/(?P<release_id>[^/]+)`` -> ``releases/{release_id}``."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)


def resolved(item: dict) -> dict:
    """``item``, or what its ``$ref`` (``#/components/...``) points at."""
    if "$ref" not in item:
        return item
    target = OPENAPI
    for key in item["$ref"].removeprefix("#/").split("/"):
        target = target[key]
    return target


def test_every_route_is_in_the_openapi_contract_and_every_contract_path_is_routed():
    routed = {f"/{NAMESPACE}/{documented_path(path)}": handler for path, handler in ROUTES}
    assert set(routed) == set(OPENAPI["paths"])
    for path, handler in routed.items():
        implemented = {method for method in HTTP_METHODS if method in vars(handler)}
        documented = set(OPENAPI["paths"][path]) & HTTP_METHODS
        assert implemented == documented, path
        declared = map(resolved, OPENAPI["paths"][path].get("parameters", []))
        parameters = {parameter["name"] for parameter in declared if parameter["in"] == "path"}
        assert parameters == set(re.findall(r"{(\w+)}", path)), path


def test_every_handler_method_requires_authentication_and_has_a_docstring():
    for _, handler in ROUTES:
        for method in HTTP_METHODS & set(vars(handler)):
            function = vars(handler)[method]
            # tornado.web.authenticated wraps the method; functools.wraps keeps the original in __wrapped__.
            assert hasattr(function, "__wrapped__"), f"{handler.__name__}.{method} is not @authenticated"
            assert function.__doc__, f"{handler.__name__}.{method} has no docstring"
    assert issubclass(handlers.MlopshubHandler, handlers.APIHandler)


def test_extension_points_and_server_config_enable_the_extension():
    assert mlopshub_lab._jupyter_server_extension_points() == [{"module": "mlopshub_lab"}]
    assert mlopshub_lab._jupyter_labextension_paths() == [{"src": "labextension", "dest": "mlopshub-lab"}]
    config = json.loads((PACKAGE.parent / "jupyter-config" / "server-config" / "mlopshub_lab.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["mlopshub_lab"] is True


async def test_extension_is_loaded_by_the_server(jp_serverapp):
    assert "mlopshub_lab" in jp_serverapp.extension_manager.extensions
