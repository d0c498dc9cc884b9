"""The team's MLflow experiments and runs, read through MLflow's client (``MlflowClient``).

Every call is made in a worker thread of this module's own pool, inside
MLflow's request-scoped workspace (``ServerWorkspaceContext``: a context
variable the client sends as ``X-MLFLOW-WORKSPACE``), as the pipeline's
registry does. Never ``mlflow.set_workspace``: it writes ``MLFLOW_WORKSPACE``
into ``os.environ``, so two requests for two teams would race and kernels
started meanwhile would inherit the wrong team. The client reads the server
and the token from the workspace's ``MLFLOW_TRACKING_URI`` and
``MLFLOW_TRACKING_TOKEN``.

The client retries a server it cannot reach, or one answering 5xx, for about
four minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, read from the process
environment, which the kernels this server starts inherit: so it is not
changed here). The sidebar waits at most :data:`ANSWER_TIMEOUT` seconds and is
told MLflow did not answer; the call itself goes on in this module's pool of
:data:`MLFLOW_THREADS` threads, never the server's default executor, so a
down MLflow stalls no other handler (calls still queued are dropped).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.workspace_context import ServerWorkspaceContext

from .errors import ApiError, BadRequest, MlflowUnavailable, NotFound

#: Tags of a run that tell where it came from (git commit, data versions, notebook, profile).
LINEAGE_PREFIX = "mlopshub."
GIT_COMMIT_TAG = "mlflow.source.git.commit"
#: Seconds the sidebar waits for one MLflow call (the client's own retries may take minutes).
ANSWER_TIMEOUT = 30.0
#: MLflow calls in flight at once; more wait for a free thread, within their own ANSWER_TIMEOUT.
MLFLOW_THREADS = 8
MAX_RUNS_PER_PAGE = 1000
MAX_COMPARED_RUNS = 50
#: Values of one metric answered per run for a plot.
MAX_HISTORY_POINTS = 25000
#: A metric key as MLflow accepts it, checked before it is asked for.
METRIC_KEY = re.compile(r"[A-Za-z0-9_.\-/ ]{1,250}")
#: Experiments listed per workspace at most (pages of MLflow's maximum).
MAX_EXPERIMENTS = 5000
#: Cookie the MLflow service accepts instead of an Authorization header (a browser tab can't send one).
TOKEN_COOKIE = "mlopshub-mlflow-token"
MLFLOW_UI_PATH = "/services/mlflow/"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The threads MLflow's blocking client runs in (created on first use).
_pool = ThreadPoolExecutor(max_workers=MLFLOW_THREADS, thread_name_prefix="mlopshub-mlflow")
_T = TypeVar("_T")


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


async def call(settings: MlflowSettings, workspace: str | None, operation: Callable[[MlflowClient], _T]) -> _T:
    """``operation(client)`` in a worker thread, with ``workspace`` as MLflow's workspace for that call alone.

    MLflow's refusals of a bad request (400, 403, 404) keep their status and
    message; an unreachable server, a 5xx, a rejected token or no answer
    within :data:`ANSWER_TIMEOUT` become 502.
    """
    client = MlflowClient(tracking_uri=settings.server())

    def run() -> _T:
        if not workspace:  # the client's default: MLFLOW_WORKSPACE, the current team
            return operation(client)
        with ServerWorkspaceContext(workspace):
            return operation(client)

    try:
        return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(_pool, run), ANSWER_TIMEOUT)
    except TimeoutError:
        raise MlflowUnavailable(
            f"MLflow at {settings.tracking_uri} did not answer within {ANSWER_TIMEOUT:.0f} s; "
            "try again in a minute, or ask your platform admin whether MLflow runs"
        ) from None
    except MlflowException as error:
        raise refusal(settings, workspace, error) from None


def refusal(settings: MlflowSettings, workspace: str | None, error: MlflowException) -> ApiError:
    """The error the sidebar shows for an exception of MLflow's client, with the status MLflow meant."""
    status = error.get_http_status_code()
    # The server's refusals (RestException) carry MLflow's JSON; the message alone, without the
    # error code the exception puts in front of it, is what a person can act on.
    reply = getattr(error, "json", None)
    answered = isinstance(reply, dict)
    message = str(reply.get("message") or error.message) if answered else error.message
    where = f"workspace '{workspace}'" if workspace else "the default workspace"
    if status == 401:
        return MlflowUnavailable(f"MLflow rejected this workspace's token (MLFLOW_TRACKING_TOKEN): {message}")
    if status == 404:
        return NotFound(f"MLflow ({where}): {message}")
    if status in (400, 403):
        return ApiError(f"MLflow ({where}): {message}", status=status)
    if answered:
        return MlflowUnavailable(f"MLflow at {settings.tracking_uri} failed ({status}): {message}")
    # No answer to read: the client gave up on the server (refused, reset, its retries exhausted).
    return MlflowUnavailable(f"MLflow at {settings.tracking_uri} is unreachable: {message}")


async def experiments(settings: MlflowSettings, workspace: str | None) -> list[dict[str, Any]]:
    """Active experiments of a workspace, most recently updated first."""

    def search(client: MlflowClient) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while len(found) < MAX_EXPERIMENTS:
            page = client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY, max_results=1000, order_by=["last_update_time DESC"], page_token=token
            )
            found += [
                {"id": str(item.experiment_id), "name": item.name, "last_update_time": _int(item.last_update_time)}
                for item in page
            ]
            token = page.token
            if not token:
                break
        return found

    return await call(settings, workspace, search)


async def runs(
    settings: MlflowSettings,
    workspace: str | None,
    experiment: str,
    max_results: int,
    page_token: str | None,
    order_by: list[str],
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an experiment's active runs and the token of the next page (None on the last)."""

    def search(client: MlflowClient) -> tuple[list[dict[str, Any]], str | None]:
        page = client.search_runs(
            [experiment],
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=max_results,
            order_by=order_by or None,
            page_token=page_token,
        )
        return [run_summary(run) for run in page], page.token or None

    return await call(settings, workspace, search)


async def compare(settings: MlflowSettings, workspace: str | None, run_ids: list[str]) -> dict[str, Any]:
    """Metrics of several runs side by side: the union of metric names, and each run's latest values."""
    fetched = await asyncio.gather(
        *(call(settings, workspace, lambda client, run_id=run_id: client.get_run(run_id)) for run_id in run_ids)
    )
    summaries = [run_summary(run) for run in fetched]
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
            call(settings, workspace, lambda client, run_id=run_id: client.get_metric_history(run_id, metric))
            for run_id in run_ids
        )
    )
    return {
        "metric": metric,
        "runs": [
            {
                "run_id": run_id,
                "points": [
                    {"step": _int(point.step) or 0, "value": _number(point.value), "timestamp": _int(point.timestamp)}
                    for point in history[:MAX_HISTORY_POINTS]
                ],
            }
            for run_id, history in zip(run_ids, fetched, strict=True)
        ],
    }


def run_summary(run: Run) -> dict[str, Any]:
    """What the sidebar shows of an MLflow run: times, metrics, params and lineage tags."""
    info, data = run.info, run.data
    start, end = _int(info.start_time), _int(info.end_time)
    return {
        "run_id": info.run_id,
        "run_name": info.run_name or data.tags.get("mlflow.runName"),
        "status": info.status,
        "start_time": start,
        "end_time": end,
        "duration_ms": end - start if start is not None and end is not None else None,
        "metrics": {key: _number(value) for key, value in data.metrics.items()},
        "params": dict(data.params),
        "lineage": {
            key: value for key, value in data.tags.items() if key.startswith(LINEAGE_PREFIX) or key == GIT_COMMIT_TAG
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
    # MLflow's entities leave unknown times None; a store may give int64 fields as strings.
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
