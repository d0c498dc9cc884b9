"""The team's MLflow experiments and runs, read through MLflow's REST API.

Why REST and not the MLflow client: the client picks the workspace from a
process-wide setting (``mlflow.set_workspace`` writes ``MLFLOW_WORKSPACE`` into
``os.environ``), so two requests for two teams would race, and kernels started
meanwhile would inherit the wrong team. It also retries an unreachable server
for minutes, tuned only by environment variables. Here every call carries its
own ``X-MLFLOW-WORKSPACE`` header, a bounded timeout and no retries.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .errors import ApiError, BadRequest, MlflowUnavailable, NotFound

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
#: Tags of a run that tell where it came from (git commit, data versions, notebook, profile).
LINEAGE_PREFIX = "mlopshub."
GIT_COMMIT_TAG = "mlflow.source.git.commit"
#: Seconds to connect, seconds to wait for an answer: the sidebar must not hang on a slow MLflow.
TIMEOUT = (5.0, 30.0)
MAX_RUNS_PER_PAGE = 1000
MAX_COMPARED_RUNS = 50
#: Values of one metric read per run for a plot (MLflow's page of metric history).
MAX_HISTORY_POINTS = 25000
#: A metric key as MLflow accepts it, checked before it becomes a query parameter.
METRIC_KEY = re.compile(r"[A-Za-z0-9_.\-/ ]{1,250}")
#: Experiments listed per workspace at most (pages of MLflow's maximum).
MAX_EXPERIMENTS = 5000
#: Cookie the MLflow service accepts instead of an Authorization header (a browser tab can't send one).
TOKEN_COOKIE = "mlopshub-mlflow-token"
MLFLOW_UI_PATH = "/services/mlflow/"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class MlflowSettings:
    """Where MLflow is and who the workspace user is, as the hub set them in the workspace's environment."""

    tracking_uri: str | None
    token: str | None
    current: str | None
    teams: tuple[str, ...]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> MlflowSettings:
        """Read MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, MLFLOW_WORKSPACE and MLOPSHUB_TEAMS."""
        env = os.environ if environ is None else environ
        teams = tuple(team.strip() for team in env.get("MLOPSHUB_TEAMS", "").split(",") if team.strip())
        return cls(
            tracking_uri=(env.get("MLFLOW_TRACKING_URI") or "").rstrip("/") or None,
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            current=env.get("MLFLOW_WORKSPACE") or None,
            teams=teams,
        )

    def workspace(self, requested: str | None) -> str | None:
        """The workspace to use: the requested one if it is one of the user's teams, else the current one."""
        if not requested:
            return self.current
        if self.teams and requested not in self.teams and requested != self.current:
            raise BadRequest(f"workspace '{requested}' is not one of your teams ({', '.join(self.teams)})")
        return requested

    def server(self) -> str:
        """The tracking server's base URL; 502 when this workspace has none configured."""
        uri = self.tracking_uri
        if not uri or urlsplit(uri).scheme not in ("http", "https"):
            raise MlflowUnavailable(
                f"MLflow is not configured in this workspace: MLFLOW_TRACKING_URI is {uri!r}, "
                "not an http(s) URL of the tracking server; ask your platform admin"
            )
        return uri


def identifier(value: str | None, what: str) -> str:
    """``value`` if it is a plausible MLflow id (letters, digits, '-', '_'); 400 otherwise."""
    if not value or not _IDENTIFIER.fullmatch(value):
        raise BadRequest(f"{what} '{value or ''}' is not a valid MLflow id")
    return value


async def call(
    settings: MlflowSettings,
    workspace: str | None,
    method: str,
    endpoint: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One MLflow REST call (``/api/2.0/mlflow/<endpoint>``) in a worker thread.

    MLflow's own answers to a bad request (400, 403, 404) keep their status and
    message; an unreachable server, a 5xx or a rejected token become 502.
    """
    url = f"{settings.server()}/api/2.0/mlflow/{endpoint}"
    headers = {"Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    if workspace:
        headers[WORKSPACE_HEADER] = workspace

    def send() -> requests.Response:
        return requests.request(method, url, params=params, json=body, headers=headers, timeout=TIMEOUT)

    try:
        response = await asyncio.to_thread(send)
    except requests.RequestException as error:
        raise MlflowUnavailable(f"MLflow at {settings.tracking_uri} is unreachable: {error}") from error
    try:
        payload = response.json()
    except ValueError:
        payload = {"message": response.text[:500]}
    if response.ok:
        return payload
    message = payload.get("message") if isinstance(payload, dict) else None
    message = message or response.reason or f"HTTP {response.status_code}"
    where = f"workspace '{workspace}'" if workspace else "the default workspace"
    if response.status_code == 404:
        raise NotFound(f"MLflow ({where}): {message}")
    if response.status_code == 401:
        raise MlflowUnavailable(f"MLflow rejected this workspace's token (MLFLOW_TRACKING_TOKEN): {message}")
    if response.status_code in (400, 403):
        raise ApiError(f"MLflow ({where}): {message}", status=response.status_code)
    raise MlflowUnavailable(f"MLflow at {settings.tracking_uri} failed ({response.status_code}): {message}")


async def experiments(settings: MlflowSettings, workspace: str | None) -> list[dict[str, Any]]:
    """Active experiments of a workspace, most recently updated first."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while len(found) < MAX_EXPERIMENTS:
        body: dict[str, Any] = {"max_results": 1000, "order_by": ["last_update_time DESC"]}
        if token:
            body["page_token"] = token
        page = await call(settings, workspace, "POST", "experiments/search", body=body)
        for experiment in page.get("experiments", []):
            found.append(
                {
                    "id": str(experiment["experiment_id"]),
                    "name": experiment.get("name"),
                    "last_update_time": _int(experiment.get("last_update_time")),
                }
            )
        token = page.get("next_page_token")
        if not token:
            break
    return found


async def runs(
    settings: MlflowSettings,
    workspace: str | None,
    experiment: str,
    max_results: int,
    page_token: str | None,
    order_by: list[str],
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an experiment's active runs and the token of the next page (None on the last)."""
    body: dict[str, Any] = {"experiment_ids": [experiment], "max_results": max_results, "run_view_type": "ACTIVE_ONLY"}
    if order_by:
        body["order_by"] = order_by
    if page_token:
        body["page_token"] = page_token
    page = await call(settings, workspace, "POST", "runs/search", body=body)
    return [run_summary(run) for run in page.get("runs", [])], page.get("next_page_token") or None


async def compare(settings: MlflowSettings, workspace: str | None, run_ids: list[str]) -> dict[str, Any]:
    """Metrics of several runs side by side: the union of metric names, and each run's latest values."""
    fetched = await asyncio.gather(
        *(call(settings, workspace, "GET", "runs/get", params={"run_id": run_id}) for run_id in run_ids)
    )
    summaries = [run_summary(answer["run"]) for answer in fetched]
    names = sorted({name for summary in summaries for name in summary["metrics"]})
    return {
        "metrics": names,
        "runs": [
            {
                key: summary[key]
                for key in ("run_id", "run_name", "status", "start_time", "metrics", "params", "lineage")
            }
            for summary in summaries
        ],
    }


async def metric_history(
    settings: MlflowSettings, workspace: str | None, run_ids: list[str], metric: str
) -> dict[str, Any]:
    """Every logged value of ``metric`` in each run (step, value, time), for plotting runs against each other."""
    fetched = await asyncio.gather(
        *(
            call(
                settings,
                workspace,
                "GET",
                "metrics/get-history",
                params={"run_id": run_id, "metric_key": metric, "max_results": MAX_HISTORY_POINTS},
            )
            for run_id in run_ids
        )
    )
    return {
        "metric": metric,
        "runs": [
            {
                "run_id": run_id,
                "points": [
                    {
                        "step": _int(point.get("step")) or 0,
                        "value": _number(point.get("value")),
                        "timestamp": _int(point.get("timestamp")),
                    }
                    for point in answer.get("metrics", [])
                ],
            }
            for run_id, answer in zip(run_ids, fetched, strict=True)
        ],
    }


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """What the sidebar shows of an MLflow run (REST form): times, metrics, params and lineage tags."""
    info = run.get("info", {})
    data = run.get("data", {})
    tags = {tag["key"]: tag.get("value") for tag in data.get("tags", [])}
    start, end = _int(info.get("start_time")), _int(info.get("end_time"))
    return {
        "run_id": info.get("run_id"),
        "run_name": info.get("run_name") or tags.get("mlflow.runName"),
        "status": info.get("status"),
        "start_time": start,
        "end_time": end,
        "duration_ms": end - start if start is not None and end is not None else None,
        "metrics": {metric["key"]: _number(metric.get("value")) for metric in data.get("metrics", [])},
        "params": {param["key"]: param.get("value") for param in data.get("params", [])},
        "lineage": {
            key: value for key, value in tags.items() if key.startswith(LINEAGE_PREFIX) or key == GIT_COMMIT_TAG
        },
    }


def ui_location(settings: MlflowSettings, experiment: str, run: str | None, workspace: str | None) -> str:
    """The MLflow UI page of an experiment (or one of its runs), on the tracking server's origin."""
    parts = urlsplit(settings.server())
    route = f"/experiments/{experiment}" + (f"/runs/{run}" if run else "")
    if workspace:
        route += f"?workspace={quote(workspace, safe='')}"
    return f"{parts.scheme}://{parts.netloc}{MLFLOW_UI_PATH}#{route}"


def _int(value: Any) -> int | None:
    # MLflow's JSON gives int64 fields as numbers or, from some versions and proxies, as strings.
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    # NaN and infinities are not JSON; the frontend gets null for them.
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
