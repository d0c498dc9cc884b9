"""The Models section's server side: the team's logged models, and the release pipeline reached for the browser.

Logged models come from MLflow's client (``search_logged_models``), in the
request's workspace and with the workspace's token, as in the Experiments section.

The release pipeline is a hub service; its requests need the workspace's hub
token (``JUPYTERHUB_API_TOKEN``), which must never reach the browser. So the
sidebar calls these handlers and they forward to ``MLOPSHUB_PIPELINE_URL``
with the token added server-side: bounded timeouts, no retries, and the
pipeline's own refusals (403, 404, 409, 422) passed on with their status,
message and field. Request bodies are checked here first, so a malformed one
is answered without a round trip and named by its field; a publish request
against the pipeline's own OpenAPI document (:mod:`.contract`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import mlflow.artifacts
import requests
import yaml
from mlflow.entities import LoggedModel, ViewType
from mlflow.store.entities import PagedList
from mlflow.tracking import MlflowClient
from mlflow.utils.workspace_context import get_request_workspace
from mlflow.utils.workspace_utils import WORKSPACE_HEADER_NAME

from . import contract, experiments
from .errors import ApiError, BadRequest, InvalidField, PipelineUnavailable
from .experiments import MlflowSettings

#: Seconds to connect, seconds to wait for an answer. Publishing registers a model version in MLflow
#: before the pipeline answers, so the wait is generous; the connect is not.
PIPELINE_TIMEOUT = (5.0, 60.0)
#: Seconds to fetch one model's MLmodel file (only to tell whether it has a signature).
MLMODEL_TIMEOUT = (3.0, 10.0)
MAX_MODELS_PER_PAGE = 100
#: The tracking server's public artifact API (``--serve-artifacts``), under its tracking URI.
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
#: The scope that makes a user a model validator (the pipeline checks it again on every approval).
APPROVE_SCOPE = "custom:mlopshub:approve"
PUBLISH_SCOPE = "custom:mlopshub:publish"
#: The scope that lets validators and platform admins read every release and the audit log.
READ_RELEASES_SCOPE = "custom:mlopshub:read-releases"
VALIDATORS_GROUP = "model-validators"
#: This server's own API description (``openapi.yaml``, package data), where the pipeline's release states and
#: model-name rule are written down once; tests/unit/test_publish_contract.py holds them to the pipeline's document.
_SCHEMAS = yaml.safe_load(Path(__file__).with_name("openapi.yaml").read_text(encoding="utf-8"))["components"]["schemas"]
#: The pipeline's release states (``mlopshub.pipeline.State``), for checking ``?state=`` before forwarding.
STATES: tuple[str, ...] = tuple(_SCHEMAS["Release"]["properties"]["state"]["enum"])
MAX_TEXT = 2000
#: Same rule as the pipeline (``mlopshub.pipeline.release.MODEL_NAME``): the pattern of a publish request's name.
MODEL_NAME = re.compile(_SCHEMAS["PublishRequest"]["properties"]["name"]["pattern"])
RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# --- the pipeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSettings:
    """Where the pipeline and the hub are, and the workspace's hub token, as the hub set them."""

    url: str | None
    token: str | None
    hub_api_url: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        """Read MLOPSHUB_PIPELINE_URL, JUPYTERHUB_API_TOKEN and JUPYTERHUB_API_URL."""
        env = os.environ if environ is None else environ
        return cls(
            url=(env.get("MLOPSHUB_PIPELINE_URL") or "").rstrip("/") or None,
            token=env.get("JUPYTERHUB_API_TOKEN") or None,
            hub_api_url=(env.get("JUPYTERHUB_API_URL") or "").rstrip("/") or None,
        )

    def server(self) -> str:
        """The pipeline API's base URL; 502 when this workspace has none configured."""
        if not self.url or urlsplit(self.url).scheme not in ("http", "https"):
            raise PipelineUnavailable(
                f"the release pipeline is not configured in this workspace: MLOPSHUB_PIPELINE_URL is {self.url!r}, "
                "not an http(s) URL like http://127.0.0.1:8000/services/pipeline/api; restart the server "
                "from the hub, or ask your platform admin"
            )
        return self.url

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        return headers


def _send(method: str, url: str, headers: dict[str, str], **options: Any) -> requests.Response:
    # A plain request: requests does not retry by default, and a publish must not be sent twice.
    return requests.request(method, url, headers=headers, timeout=PIPELINE_TIMEOUT, **options)


async def forward(
    settings: PipelineSettings,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """Send one request to the pipeline API (``<MLOPSHUB_PIPELINE_URL>/<path>``) and answer its status and JSON.

    The pipeline's refusals become :class:`ApiError` with its status, message
    and field; an unreachable pipeline, a 5xx or a rejected workspace token are 502.
    """
    url = f"{settings.server()}/{path}"
    try:
        response = await asyncio.to_thread(_send, method, url, settings.headers(), params=params, json=body)
    except requests.RequestException as error:
        raise PipelineUnavailable(
            f"the release pipeline at {settings.url} is unreachable ({type(error).__name__}); "
            "try again in a minute, or ask your platform admin whether the pipeline service runs"
        ) from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.ok and payload is not None:
        return response.status_code, payload
    message = payload.get("message") if isinstance(payload, dict) else None
    message = message or response.reason or f"HTTP {response.status_code}"
    if response.ok:
        raise PipelineUnavailable(f"the release pipeline at {settings.url} answered something that is not JSON")
    if response.status_code == 401:
        raise PipelineUnavailable(
            f"the release pipeline refused this workspace's hub token (JUPYTERHUB_API_TOKEN): {message}; "
            "restart your server from the hub to get a new one"
        )
    if response.status_code in (400, 403, 404, 409, 422):
        field = payload.get("field") if isinstance(payload, dict) else None
        raise ApiError(message, status=response.status_code, field=field if isinstance(field, str) else None)
    raise PipelineUnavailable(f"the release pipeline at {settings.url} failed ({response.status_code}): {message}")


def release_id(value: str) -> str:
    """``value`` if it looks like a release id; 400 otherwise (it becomes part of a URL)."""
    if not RELEASE_ID.fullmatch(value or ""):
        raise BadRequest(f"'{value}' is not a release id (a letter or digit, then letters, digits, '_', '.' or '-')")
    return value


def model_name(value: str, field: str = "name") -> str:
    """``value`` if it is a model name the pipeline accepts; 422 naming ``field`` otherwise."""
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise InvalidField(
            field,
            f"{value!r} is not a model name: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return value


def releases_query(state: str | None, model: str | None) -> dict[str, str]:
    """The checked ``?state=&model=`` filters of a release listing."""
    params: dict[str, str] = {}
    if state:
        if state not in STATES:
            raise InvalidField("state", f"'{state}' is not a release state; one of: {', '.join(STATES)}")
        params["state"] = state
    if model:
        params["model"] = model_name(model, "model")
    return params


def _text(body: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = body.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidField(name, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidField(name, "is required")
    if len(value) > MAX_TEXT:
        raise InvalidField(name, f"is {len(value)} characters; at most {MAX_TEXT}")
    return value


def publish_body(body: Mapping[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A publish request checked against the pipeline's own contract (``schema``, :mod:`.contract`).

    422 naming the first field it refuses. The body goes on as it came: the
    pipeline checks the rest (the run's team, the model path, the schedule).
    """
    found = contract.problems(schema, body)
    if found:
        raise InvalidField(*found[0])
    return dict(body)


def comment_body(body: Mapping[str, Any], name: str, *, required: bool) -> dict[str, str]:
    """``{name: text}`` for approve (comment, required by the pipeline), reject and rollback (reason, required)."""
    unknown = sorted(set(body) - {name})
    if unknown:
        raise InvalidField(unknown[0], f"unknown field; expected only '{name}'")
    return {name: _text(body, name, required=required)}


def publish_teams(scopes: list[str], groups: list[str], workspace_teams: str) -> list[str]:
    """The teams this workspace publishes for, as the pipeline decides it: a team the workspace started with
    (``MLOPSHUB_TEAMS``: teams only, never a role group), whose group the user is still in, with a token that
    carries ``custom:mlopshub:publish`` (every user's) or the same filtered to that team."""
    teams = [team.strip() for team in workspace_teams.split(",") if team.strip()]
    return sorted(
        team
        for team in teams
        if team in groups and (PUBLISH_SCOPE in scopes or f"{PUBLISH_SCOPE}!group={team}" in scopes)
    )


async def caller(settings: PipelineSettings) -> dict[str, Any]:
    """Who the workspace user is, from the hub (``GET /user`` with the workspace's token): name, groups, roles."""
    if not settings.hub_api_url or not settings.token:
        raise PipelineUnavailable(
            "this workspace does not know its hub: JUPYTERHUB_API_URL or JUPYTERHUB_API_TOKEN is not set; "
            "start the server from the hub"
        )
    url = f"{settings.hub_api_url}/user"
    try:
        response = await asyncio.to_thread(_send, "GET", url, settings.headers())
    except requests.RequestException as error:
        raise PipelineUnavailable(
            f"the hub at {settings.hub_api_url} is unreachable ({type(error).__name__})"
        ) from None
    if not response.ok:
        raise PipelineUnavailable(
            f"the hub did not say who this workspace's user is ({response.status_code}); "
            "restart your server from the hub"
        )
    model = response.json()
    scopes = [str(scope) for scope in model.get("scopes") or []]
    groups = sorted(str(group) for group in model.get("groups") or [])
    return {
        "name": model.get("name"),
        "groups": groups,
        # The pipeline demands the unfiltered approve scope; the group alone does not let anyone approve.
        "validator": APPROVE_SCOPE in scopes,
        # Validators and platform admins: the pipeline answers them the audit log.
        "auditor": READ_RELEASES_SCOPE in scopes,
        "publish_teams": publish_teams(scopes, groups, os.environ.get("MLOPSHUB_TEAMS", "")),
        "pipeline": bool(settings.url),
    }


# --- the audit log --------------------------------------------------------------------------------

#: The audit log's filters and page, passed to the pipeline's ``GET audit``, which checks them (422 naming a wrong
#: one): ``model``, ``actor``, ``action`` and ``release_id`` match exactly, ``since`` and ``until`` are ISO 8601 times
#: with a zone, ``limit`` and ``after`` page.
AUDIT_FILTERS = ("model", "actor", "action", "release_id", "since", "until", "limit", "after")
#: The columns of the exported CSV, as the pipeline's own export (``mlopshub audit export``) writes them.
AUDIT_COLUMNS = ("id", "at", "actor", "action", "release_id", "model", "version", "reason", "details", "chain")


def audit_filters(query: Mapping[str, str | None]) -> dict[str, str]:
    """The filters the query gives a value (blank ones are no filter)."""
    return {name: value for name in AUDIT_FILTERS if (value := (query.get(name) or "").strip())}


#: Entries the pipeline answers at most per ``GET audit``.
AUDIT_PAGE = 1000


async def audit(settings: PipelineSettings, filters: Mapping[str, str]) -> list[dict[str, Any]]:
    """The pipeline's audit entries that pass ``filters``, oldest first: the pipeline filters them.

    With ``limit``, the one page the pipeline answers; without, every page (what
    the audit tab shows and exports is everything its filter matches).
    """
    params, entries = dict(filters), []
    while True:
        _, page = await forward(settings, "GET", "audit", params=params)
        if not isinstance(page, list) or not all(isinstance(entry, dict) for entry in page):
            raise PipelineUnavailable("the release pipeline answered its audit log in a form this workspace can't read")
        entries += page
        if "limit" in filters or len(page) < AUDIT_PAGE:
            return entries
        params["after"] = str(page[-1].get("id"))


def audit_csv(entries: list[dict[str, Any]]) -> str:
    """The entries as CSV, in the pipeline's own export columns (details as JSON text)."""
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(AUDIT_COLUMNS)
    for entry in entries:
        row = dict(entry, details=json.dumps(entry.get("details") or {}, sort_keys=True, separators=(",", ":")))
        writer.writerow(["" if row.get(column) is None else row[column] for column in AUDIT_COLUMNS])
    return stream.getvalue()


# --- trying an endpoint ---------------------------------------------------------------------------

#: The request formats of MLflow's scoring protocol; a tried request uses exactly one.
SCORING_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_TRY_BODY = 64 * 1024
STAGES = ("staging", "production")


def try_body(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A checked ``{stage, request}`` to try a release's endpoint with (422 naming the wrong field)."""
    unknown = sorted(set(body) - {"stage", "request"})
    if unknown:
        raise InvalidField(unknown[0], "unknown field; expected 'stage' and 'request'")
    stage = body.get("stage")
    if stage not in STAGES:
        raise InvalidField("stage", f"expected one of: {', '.join(STAGES)}, got {stage!r}")
    request = body.get("request")
    if not isinstance(request, dict) or len(request) != 1 or next(iter(request)) not in SCORING_FORMATS:
        raise InvalidField("request", f"expected an object with one of: {', '.join(SCORING_FORMATS)}")
    if len(json.dumps(request)) > MAX_TRY_BODY:
        raise InvalidField("request", f"is larger than {MAX_TRY_BODY // 1024} KB; try a few rows")
    return stage, request


async def try_endpoint(
    settings: PipelineSettings, release_id: str, stage: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Send ``request`` to the release's ``stage`` endpoint with the workspace's token; answer the model's reply.

    The address is the pipeline's (never the browser's), and only on the
    pipeline's own origin: the token goes nowhere else. The model's refusal
    (say a missing column) is an answer too: ``{status, body}``.
    """
    _, release = await forward(settings, "GET", f"releases/{release_id}")
    url = (release.get("endpoints") or {}).get(stage)
    if not url:
        raise ApiError(
            f"release {release_id} ({release.get('model_name')} v{release.get('version')}) has no {stage} "
            f"endpoint while it is {release.get('state')}",
            status=409,
        )
    origin = urlsplit(settings.server())
    target = urlsplit(url)
    if (target.scheme, target.netloc) != (origin.scheme, origin.netloc) or not target.path.endswith("/invocations"):
        raise ApiError(f"the {stage} endpoint {url} is not an online endpoint of this platform; call it yourself", 409)
    try:
        response = await asyncio.to_thread(_send, "POST", url, settings.headers(), json=request)
    except requests.RequestException as error:
        raise PipelineUnavailable(f"the {stage} endpoint {url} is unreachable ({type(error).__name__})") from None
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text[:2000]
    return {"url": url, "status": response.status_code, "body": answer}


# --- logged models --------------------------------------------------------------------------------


async def logged_models(
    settings: MlflowSettings,
    workspace: str | None,
    experiment: str | None,
    max_results: int,
    page_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the models logged in the workspace's experiments (newest first) and the next page's token."""
    known = await experiments.experiments(settings, workspace)
    names = {item["id"]: item["name"] for item in known}
    ids = [experiment] if experiment else list(names)
    if not ids:
        return [], None

    def search(client: MlflowClient) -> PagedList[LoggedModel]:
        return client.search_logged_models(ids, max_results=max_results, page_token=page_token)

    found = await experiments.call(settings, workspace, search)
    run_ids = sorted({m.source_run_id for m in found} - {None, ""})
    runs, signatures = await asyncio.gather(
        _runs(settings, workspace, ids, run_ids),
        asyncio.gather(*(_signature(settings, workspace, m.model_id) for m in found)),
    )
    models = [model_summary(m, names, runs, signature) for m, signature in zip(found, signatures, strict=True)]
    return models, found.token or None


def model_summary(
    model: LoggedModel,
    experiment_names: Mapping[str, str],
    runs: Mapping[str, dict[str, Any]],
    signature: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the sidebar shows of a logged model, with the ``runs:/`` URI to publish it from."""
    run_id = model.source_run_id or None
    name = model.name or ""
    run = runs.get(run_id or "", {})
    own = {metric.key: experiments._number(metric.value) for metric in model.metrics or []}
    status = model.status
    return {
        "model_id": model.model_id,
        "name": name,
        "experiment_id": model.experiment_id,
        "experiment": experiment_names.get(str(model.experiment_id)),
        "run_id": run_id,
        "run_name": run.get("run_name"),
        "created": experiments._int(model.creation_timestamp),
        "status": status.value if isinstance(status, Enum) else status,
        "metrics": run.get("metrics") or own,
        "lineage": run.get("lineage", {}),
        "has_signature": None if signature == {} else signature is not None,
        "inputs": (signature or {}).get("inputs"),
        # The pipeline finds the logged model by its name and run (registry._source).
        "model_uri": f"runs:/{run_id}/{name}" if run_id and name else None,
    }


async def _runs(
    settings: MlflowSettings, workspace: str | None, experiment_ids: list[str], run_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Summaries of the runs ``run_ids`` by id, in one search."""
    if not run_ids:
        return {}
    quoted = ", ".join(f"'{run_id}'" for run_id in run_ids if experiments._IDENTIFIER.fullmatch(run_id))

    def search(client: MlflowClient) -> list[dict[str, Any]]:
        found = client.search_runs(
            experiment_ids,
            filter_string=f"attributes.run_id IN ({quoted})",
            run_view_type=ViewType.ALL,
            max_results=len(run_ids),
        )
        return [experiments.run_summary(run) for run in found]

    summaries = await experiments.call(settings, workspace, search)
    return {summary["run_id"]: summary for summary in summaries}


async def _signature(settings: MlflowSettings, workspace: str | None, model_id: str | None) -> dict[str, Any] | None:
    """The model's signature inputs (``{"inputs": [column names] | None}``), None if it has none, {} if unknown.

    Read from the model's MLmodel file (:func:`_mlmodel`); any failure only
    makes it unknown: the gates check it properly on publish.
    """
    if not model_id or not experiments._IDENTIFIER.fullmatch(model_id):
        return {}

    try:
        text = await experiments.call(settings, workspace, lambda client: _mlmodel(settings, client, model_id))
        mlmodel = yaml.safe_load(text)
    except (ApiError, requests.RequestException, OSError, yaml.YAMLError):
        return {}
    signature = mlmodel.get("signature") if isinstance(mlmodel, dict) else None
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None
    return {"inputs": signature_columns(signature["inputs"])}


def _mlmodel(settings: MlflowSettings, client: MlflowClient, model_id: str) -> str:
    """The text of logged model ``model_id``'s MLmodel file (blocking; in the calling thread's workspace).

    Where the tracking server keeps the files itself (``mlflow-artifacts:``, how
    the platform runs it, ``--serve-artifacts``), the file is one GET on its
    public artifact API, the request MLflow's client makes, sent here because
    the client's download runs in a thread pool of its own, whose threads do not
    see this call's workspace (a context variable), and the server refuses a
    team's files asked for without it. It goes to the tracking server only,
    with the client's own token and workspace, in one bounded try: the
    signature is a hint, and the sidebar lists many models at once. Any other
    location (a folder, a bucket) is read by MLflow's ``download_artifacts``:
    those stores know no workspace.
    """
    location = client.get_logged_model(model_id).artifact_location.rstrip("/")
    if urlsplit(location).scheme != "mlflow-artifacts":
        with tempfile.TemporaryDirectory(prefix="mlopshub-mlmodel-") as folder:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=folder)
            return Path(path).read_text(encoding="utf-8")
    url = f"{settings.server()}{ARTIFACTS_API}/{quote(urlsplit(location).path.strip('/'))}/MLmodel"
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    if workspace := get_request_workspace():
        headers[WORKSPACE_HEADER_NAME] = workspace
    response = requests.get(url, headers=headers, timeout=MLMODEL_TIMEOUT)
    response.raise_for_status()
    return response.text


def signature_columns(inputs: Any) -> list[str] | None:
    """Column names of a signature's inputs (MLflow stores them as a JSON string); None for tensor inputs."""
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    except ValueError:
        return None
    if not isinstance(specs, list):
        return None
    columns = [spec.get("name") for spec in specs if isinstance(spec, dict)]
    return [str(name) for name in columns] if columns and all(columns) else None


# --- monitoring -----------------------------------------------------------------------------------

#: The monitoring window, stages and settings as this server's ``openapi.yaml`` writes them (one place, read here).
MONITORING_WINDOWS: tuple[str, ...] = tuple(_SCHEMAS["MonitoringWindow"]["enum"])
MONITORING_STAGES: tuple[str, ...] = tuple(_SCHEMAS["MonitoringStage"]["enum"])
_SETTINGS = _SCHEMAS["MonitoringSettings"]["properties"]


def monitoring_query(stage: str | None, window: str | None) -> dict[str, str]:
    """The checked ``?stage=&window=`` of a monitoring request (422 naming a wrong one); blank ones are left out.

    Left out, the pipeline picks its defaults (production, the last day).
    """
    params: dict[str, str] = {}
    for name, value, allowed in (("stage", stage, MONITORING_STAGES), ("window", window, MONITORING_WINDOWS)):
        if not value:
            continue
        if value not in allowed:
            raise InvalidField(name, f"expected one of: {', '.join(allowed)}, got {value[:100]!r}")
        params[name] = value
    return params


def monitoring_settings(body: Mapping[str, Any]) -> dict[str, Any]:
    """A checked monitoring settings change: any of ``sample_rate``, ``retention_days``, ``exclude_columns``.

    422 naming the first wrong field; the pipeline keeps what the body leaves out.
    """
    unknown = sorted(set(body) - set(_SETTINGS))
    if unknown:
        raise InvalidField(unknown[0], f"unknown field; expected any of: {', '.join(_SETTINGS)}")
    if not body:
        raise InvalidField("(body)", f"nothing to change; send any of: {', '.join(_SETTINGS)}")
    checked: dict[str, Any] = {}
    if "sample_rate" in body:
        checked["sample_rate"] = _bounded(body["sample_rate"], "sample_rate", float, "a number")
    if "retention_days" in body:
        checked["retention_days"] = _bounded(body["retention_days"], "retention_days", int, "a whole number of days")
    if "exclude_columns" in body:
        checked["exclude_columns"] = _columns(body["exclude_columns"])
    return checked


def _bounded(value: Any, name: str, kind: type, words: str) -> int | float:
    """``value`` as ``kind`` within the schema's bounds for ``name``; 422 naming it otherwise (true is no number)."""
    schema = _SETTINGS[name]
    bounds = f"from {schema['minimum']} to {schema['maximum']}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    # A float's own is_integer: float() of a JSON integer of 400 digits would overflow.
    if not is_number or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise InvalidField(name, f"expected {words} {bounds}, got {value!r:.100}")
    if not schema["minimum"] <= value <= schema["maximum"]:
        raise InvalidField(name, f"must be {bounds}, not {value!r:.100}")
    return kind(value)


def _columns(value: Any) -> list[str]:
    """The column names to leave out of captures: a list of names, each 1 to ``maxLength`` characters."""
    schema = _SETTINGS["exclude_columns"]
    longest, most = schema["items"]["maxLength"], schema["maxItems"]
    if not isinstance(value, list):
        raise InvalidField("exclude_columns", f"expected a list of column names, got {type(value).__name__}")
    if len(value) > most:
        raise InvalidField("exclude_columns", f"has {len(value)} columns; at most {most}")
    for index, column in enumerate(value):
        if not isinstance(column, str) or not 1 <= len(column) <= longest:
            raise InvalidField(
                f"exclude_columns.{index}", f"expected a column name of 1 to {longest} characters, got {column!r:.100}"
            )
    return list(value)


def report_location(settings: PipelineSettings, model: str, params: Mapping[str, str]) -> str:
    """Where the browser opens the pipeline's printable report of ``model``: a path on the hub's own address.

    The path of the pipeline's address without its ``/api`` (``/services/pipeline``), so the
    tab goes through the hub's proxy with the hub's login cookie, never to an in-cluster address.
    """
    base = urlsplit(settings.server()).path.rstrip("/").removesuffix("/api")
    query = urlencode(params)
    return f"{base}/monitoring/{quote(model, safe='')}/report" + (f"?{query}" if query else "")
