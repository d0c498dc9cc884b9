"""REST handlers of the mlopshub sidebar; the contract is ``openapi.yaml`` beside this file.

One base handler reads parameters, resolves paths inside the server root and
turns every error into ``{"message": ...}`` with its status: 400 for a wrong
parameter, 404 for something that isn't there, 409 while another operation
runs in the project, 422 for a wrong field of a release request (with
``field``), 500 when git or DVC fail (with their own text), 502 when MLflow,
the release pipeline or the hub can't be reached. The pipeline's own refusals
keep their status, message and field.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from http.client import responses
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler

from . import __version__, contract, data, experiments, models, paths
from .errors import ApiError, BadRequest, InvalidField, NotFound

#: Version of the REST contract; the frontend refuses a server with another one.
API_VERSION = 1


class MlopshubHandler(APIHandler):
    """Base of every handler: parameters, paths and JSON errors."""

    @property
    def server_root(self) -> Path:
        """The server root (the user's home) as a real path: every user path must stay inside it."""
        return Path(os.path.realpath(os.path.expanduser(self.settings["server_root_dir"])))

    def query(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A query parameter; 400 naming it when it is required and absent."""
        value = self.get_query_argument(name, None)
        if value is None:
            if required:
                raise BadRequest(f"missing query parameter '{name}'")
            return default
        return value

    def query_int(self, name: str, default: int, minimum: int, maximum: int) -> int:
        """An integer query parameter within [minimum, maximum]; 400 otherwise."""
        raw = self.query(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"'{name}' must be an integer, not '{raw}'") from None
        if not minimum <= value <= maximum:
            raise BadRequest(f"'{name}' must be between {minimum} and {maximum}, not {value}")
        return value

    def query_page_token(self) -> str | None:
        """``page_token``: a token from a previous page (MLflow's base64 JSON object), or None; 400 otherwise.

        Checked here because MLflow answers some malformed tokens with a 500.
        """
        token = self.query("page_token") or None
        if token is None:
            return None
        try:
            decoded = json.loads(base64.b64decode(token, validate=True))
        except (ValueError, binascii.Error):
            decoded = None
        if not isinstance(decoded, dict):
            raise BadRequest(f"'page_token' must be the next_page_token of a previous answer, not '{token[:100]}'")
        return token

    def query_path(self, name: str = "path") -> Path:
        """A path query parameter, resolved inside the server root ("" is the root)."""
        return paths.resolve(self.server_root, self.query(name, required=True) or "")

    def body(self) -> dict[str, Any]:
        """The JSON object in the request body; 400 if it is not one."""
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError as error:  # not JSON, not UTF-8, or a number of more digits than Python converts
            raise BadRequest(f"the request body is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise BadRequest("the request body must be a JSON object")
        return value

    def field(self, body: dict[str, Any], name: str) -> str:
        """A required string field of the body; 400 naming it otherwise."""
        value = body.get(name)
        if not isinstance(value, str):
            raise BadRequest(f"the request body needs a string field '{name}'")
        return value

    def body_path(self, body: dict[str, Any], name: str = "path") -> Path:
        """A path field of the body, resolved inside the server root."""
        return paths.resolve(self.server_root, self.field(body, name))

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        """Finish with ``payload`` as JSON."""
        self.set_status(status)
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is ``{"message": ...}``: what went wrong, where, and what to do."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            message = error.message
        elif isinstance(error, tornado.web.HTTPError):
            try:
                message = (error.log_message % error.args) if error.log_message else ""
            except TypeError:
                message = error.log_message or ""
            message = message or error.reason or responses.get(status_code, "error")
        elif error is not None:
            message = f"internal error in mlopshub-lab ({type(error).__name__}: {error}); the server log has details"
        else:
            message = responses.get(status_code, "error")
        payload: dict[str, Any] = {"message": message}
        if isinstance(error, ApiError) and error.field:
            payload["field"] = error.field
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))


class VersionHandler(MlopshubHandler):
    """GET /mlopshub-lab/version: the extension version and the REST contract version."""

    @tornado.web.authenticated
    def get(self) -> None:
        """Answer ``{"version", "api"}`` so the frontend can check it speaks the same contract."""
        self.reply({"version": __version__, "api": API_VERSION})


# --- data ---------------------------------------------------------------------------------------


class ProjectHandler(MlopshubHandler):
    """GET /mlopshub-lab/data/project?path=: the data-versioning project a folder is in."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the folder and its project (null when it is in none)."""
        folder = self.query_path()
        if not folder.exists():
            raise NotFound(f"folder '{paths.shown(self.server_root, folder)}' does not exist")
        project = await data.project_of(self.server_root, folder if folder.is_dir() else folder.parent)
        self.reply(
            {
                "path": paths.relative(self.server_root, folder),
                "project": project.to_json(self.server_root) if project else None,
            }
        )


class EnableHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/enable {"path"}: make a folder a DVC project with the team remote."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Enable data versioning (git init if needed, dvc init, team remote, commit) and answer the project."""
        folder = self.body_path(self.body())
        project, message = await data.enable(self.server_root, folder, os.environ.get("MLOPSHUB_DVC_REMOTE") or None)
        self.reply(
            {
                "path": paths.relative(self.server_root, folder),
                "project": project.to_json(self.server_root),
                "message": message,
            }
        )


class DatasetsHandler(MlopshubHandler):
    """GET /mlopshub-lab/data/datasets?path=&offset=&limit=&remote=: a page of a project's datasets."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer one page of datasets with size, hash and status, "not_pushed" included unless ``remote=0``."""
        folder = self.query_path()
        offset = self.query_int("offset", 0, 0, 10**9)
        limit = self.query_int("limit", 100, 1, 1000)
        asked = (self.query("remote") or "").lower()
        remote = None if not asked else asked in ("1", "true", "yes")
        page, total, check = await data.datasets_page(self.server_root, folder, offset, limit, remote)
        self.reply(
            {
                "datasets": [dataset.to_json(self.server_root) for dataset in page],
                "total": total,
                "offset": offset,
                "limit": limit,
                "remote_checked": check.checked,
                "remote_error": check.error,
            }
        )


class HistoryHandler(MlopshubHandler):
    """GET /mlopshub-lab/data/history?path=: the versions of a dataset."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the commits that changed the dataset, newest first, with its hash at each."""
        self.reply({"versions": await data.history(self.server_root, self.query_path())})


class TrackHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/track {"path"}: put a file or folder under DVC."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """``dvc add`` the path, stage its .dvc file, and answer the new dataset."""
        self.reply({"dataset": await data.track(self.server_root, self.body_path(self.body()))})


class SaveVersionHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/version {"path", "message"}: commit the changed datasets as a version."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Version every changed dataset under the folder in one commit; answer the commit and the datasets."""
        body = self.body()
        commit, versioned = await data.save_version(self.server_root, self.body_path(body), self.field(body, "message"))
        self.reply({"commit": commit, "datasets": versioned})


class PushHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/push {"path"}: upload the project's data to its remote."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """``dvc push`` in the project and answer DVC's output."""
        self.reply({"output": await data.push(self.server_root, self.body_path(self.body()))})


class PullHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/pull {"path"}: download the project's data from its remote."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """``dvc pull`` in the project and answer DVC's output."""
        self.reply({"output": await data.pull(self.server_root, self.body_path(self.body()))})


class RestoreHandler(MlopshubHandler):
    """POST /mlopshub-lab/data/restore {"path", "commit"}: bring back a dataset's earlier version."""

    @tornado.web.authenticated
    async def post(self) -> None:
        """Check out the dataset's .dvc file at the commit, then its data; answer the dataset."""
        body = self.body()
        discard = body.get("discard_changes", False)
        if not isinstance(discard, bool):
            raise BadRequest("discard_changes must be true or false")
        dataset = await data.restore(self.server_root, self.body_path(body), self.field(body, "commit"), discard)
        self.reply({"dataset": dataset})


# --- experiments --------------------------------------------------------------------------------


class WorkspacesHandler(MlopshubHandler):
    """GET /mlopshub-lab/experiments/workspaces: the user's teams and the workspace's current one."""

    @tornado.web.authenticated
    def get(self) -> None:
        """Answer the teams (MLOPSHUB_TEAMS) and the current team (MLFLOW_WORKSPACE)."""
        settings = experiments.MlflowSettings.from_environ()
        self.reply({"workspaces": list(settings.teams), "current": settings.current})


class ExperimentsHandler(MlopshubHandler):
    """GET /mlopshub-lab/experiments/list?workspace=: the experiments of a team."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the workspace's active experiments, most recently updated first."""
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        self.reply({"experiments": await experiments.experiments(settings, workspace)})


class RunsHandler(MlopshubHandler):
    """GET /mlopshub-lab/experiments/runs?experiment=&workspace=&max_results=&page_token=&order_by=: runs, paged."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer one page of the experiment's runs and MLflow's token for the next page."""
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        experiment = experiments.identifier(self.query("experiment", required=True), "experiment")
        max_results = self.query_int("max_results", 50, 1, experiments.MAX_RUNS_PER_PAGE)
        order_by = [value for value in self.get_query_arguments("order_by") if value.strip()]
        page, next_token = await experiments.runs(
            settings, workspace, experiment, max_results, self.query_page_token(), order_by
        )
        self.reply({"runs": page, "next_page_token": next_token})


class CompareHandler(MlopshubHandler):
    """GET /mlopshub-lab/experiments/compare?workspace=&run=<id>&run=<id>: metrics of runs side by side."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the union of the runs' metric names and each run's values."""
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        run_ids = [experiments.identifier(run, "run") for run in self.get_query_arguments("run")]
        if not run_ids:
            raise BadRequest("give the runs to compare as 'run' query parameters")
        if len(run_ids) > experiments.MAX_COMPARED_RUNS:
            raise BadRequest(f"compare at most {experiments.MAX_COMPARED_RUNS} runs at once, not {len(run_ids)}")
        self.reply(await experiments.compare(settings, workspace, run_ids))


class MetricHistoryHandler(MlopshubHandler):
    """GET /mlopshub-lab/experiments/history?workspace=&metric=&run=<id>&run=<id>: one metric's values per run."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer every logged value (step, value, time) of the metric in each run, for the comparison's plot."""
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        metric = self.query("metric", required=True) or ""
        if not experiments.METRIC_KEY.fullmatch(metric):
            raise BadRequest(f"'{metric[:100]}' is not a metric name (letters, digits, '_', '-', '.', '/', ' ')")
        run_ids = [experiments.identifier(run, "run") for run in self.get_query_arguments("run")]
        if not run_ids:
            raise BadRequest("give the runs as 'run' query parameters")
        if len(run_ids) > experiments.MAX_COMPARED_RUNS:
            raise BadRequest(f"plot at most {experiments.MAX_COMPARED_RUNS} runs at once, not {len(run_ids)}")
        self.reply(await experiments.metric_history(settings, workspace, run_ids, metric))


class MlflowUiHandler(MlopshubHandler):
    """GET /mlopshub-lab/mlflow-ui?experiment=&run=&workspace=: open the MLflow UI signed in."""

    @tornado.web.authenticated
    def get(self) -> None:
        """Set the MLflow token cookie (HttpOnly, SameSite=Strict, only for /services/mlflow/) and redirect there.

        A browser tab can't send the workspace's token as a header, so the
        MLflow service accepts it from this cookie, which page scripts can't read.
        """
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        experiment = experiments.identifier(self.query("experiment", required=True), "experiment")
        run = self.query("run")
        run = experiments.identifier(run, "run") if run else None
        location = experiments.ui_location(settings, experiment, run, workspace)
        if settings.token:
            self.set_cookie(
                experiments.TOKEN_COOKIE,
                settings.token,
                path=experiments.MLFLOW_UI_PATH,
                httponly=True,
                samesite="Strict",
                secure=self.request.protocol == "https",
            )
        self.redirect(location, status=302)


# --- models and releases ------------------------------------------------------------------------


class LoggedModelsHandler(MlopshubHandler):
    """GET /mlopshub-lab/models/logged?workspace=&experiment=&max_results=&page_token=: the team's logged models."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer one page of the models logged in the team's runs, newest first, and the next page's token."""
        settings = experiments.MlflowSettings.from_environ()
        workspace = settings.workspace(self.query("workspace"))
        experiment = self.query("experiment")
        experiment = experiments.identifier(experiment, "experiment") if experiment else None
        max_results = self.query_int("max_results", 25, 1, models.MAX_MODELS_PER_PAGE)
        page, next_token = await models.logged_models(
            settings, workspace, experiment, max_results, self.query_page_token()
        )
        self.reply({"models": page, "next_page_token": next_token})


class MeHandler(MlopshubHandler):
    """GET /mlopshub-lab/me: who the user is for the release pipeline (validator or not, teams to publish for)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the hub's view of the workspace's user: name, groups, validator, publish_teams, pipeline."""
        self.reply(await models.caller(models.PipelineSettings.from_environ()))


class ReleasesHandler(MlopshubHandler):
    """GET, POST /mlopshub-lab/releases: the pipeline's releases, and publishing a model."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Forward ``GET releases?state=&model=`` to the pipeline; answer its ``{releases}``."""
        params = models.releases_query(self.query("state"), self.query("model"))
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "GET", "releases", params=params)
        self.reply(payload)

    @tornado.web.authenticated
    async def post(self) -> None:
        """Check the body against the pipeline's contract, publish it through the pipeline; 201 ``{id, release}``."""
        settings = models.PipelineSettings.from_environ()
        body = models.publish_body(self.body(), await contract.publish_schema(settings.server()))
        status, payload = await models.forward(settings, "POST", "releases", body=body)
        self.reply(payload, status)


class ReleaseHandler(MlopshubHandler):
    """GET /mlopshub-lab/releases/{release_id}: one release with its steps, gates and endpoints."""

    @tornado.web.authenticated
    async def get(self, release_id: str) -> None:
        """Forward ``GET releases/{id}`` to the pipeline and answer the release."""
        path = f"releases/{models.release_id(release_id)}"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "GET", path)
        self.reply(payload)


class ApproveHandler(MlopshubHandler):
    """POST /mlopshub-lab/releases/{release_id}/approve {"comment"}: a validator approves a release."""

    @tornado.web.authenticated
    async def post(self, release_id: str) -> None:
        """Forward the approval; the pipeline's 403 (the publisher, or no approve scope) comes back as it is.

        The comment is required, but by the pipeline: it refuses (and records) a
        publisher or a user without the scope first, whatever the comment says.
        """
        body = models.comment_body(self.body(), "comment", required=False)
        path = f"releases/{models.release_id(release_id)}/approve"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "POST", path, body=body)
        self.reply(payload)


class RejectHandler(MlopshubHandler):
    """POST /mlopshub-lab/releases/{release_id}/reject {"reason"}: a validator (or the team) stops a release."""

    @tornado.web.authenticated
    async def post(self, release_id: str) -> None:
        """Forward the rejection with its reason (required) and answer the release."""
        body = models.comment_body(self.body(), "reason", required=True)
        path = f"releases/{models.release_id(release_id)}/reject"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "POST", path, body=body)
        self.reply(payload)


class TryEndpointHandler(MlopshubHandler):
    """POST /mlopshub-lab/releases/{release_id}/try {"stage", "request"}: score a request at the release's endpoint."""

    @tornado.web.authenticated
    async def post(self, release_id: str) -> None:
        """Send the request to the release's staging or production endpoint; answer ``{url, status, body}``."""
        stage, request = models.try_body(self.body())
        settings = models.PipelineSettings.from_environ()
        self.reply(await models.try_endpoint(settings, models.release_id(release_id), stage, request))


class AuditHandler(MlopshubHandler):
    """GET /mlopshub-lab/audit?release_id=&model=&actor=&action=&since=&until=&limit=&after=&format=: the audit log."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Answer the entries that pass the filters as ``{entries}``, or as a CSV file with ``format=csv``.

        The pipeline filters and decides who may read what (validators and
        platform admins all of it, a team its releases' trails): its 403, 404 and 422 come back as they are.
        """
        form = self.query("format") or "json"
        if form not in ("json", "csv"):
            raise BadRequest(f"'format' must be json or csv, not '{form[:100]}'")
        filters = models.audit_filters({name: self.query(name) for name in models.AUDIT_FILTERS})
        entries = await models.audit(models.PipelineSettings.from_environ(), filters)
        if form == "json":
            self.reply({"entries": entries})
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="mlopshub-audit.csv"')
        self.finish(models.audit_csv(entries))


class RollbackHandler(MlopshubHandler):
    """POST /mlopshub-lab/models/{name}/rollback {"reason"}: put the previous production version back."""

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        """Forward the rollback with its reason (required); answer ``{rolled_back, restored}``."""
        body = models.comment_body(self.body(), "reason", required=True)
        path = f"models/{models.model_name(name, 'name')}/rollback"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "POST", path, body=body)
        self.reply(payload)


# --- monitoring ---------------------------------------------------------------------------------


class MonitoringHandler(MlopshubHandler):
    """GET /mlopshub-lab/monitoring: the monitored models the user may see, each with whether it drifted."""

    @tornado.web.authenticated
    async def get(self) -> None:
        """Forward ``GET monitoring``; the pipeline decides what is visible (a team its models, validators all)."""
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "GET", "monitoring")
        self.reply(payload)


class MonitoredModelHandler(MlopshubHandler):
    """GET /mlopshub-lab/monitoring/{model}?stage=&window=: traffic, captures, drift and quality of one model."""

    @tornado.web.authenticated
    async def get(self, model: str) -> None:
        """Forward ``GET monitoring/{model}`` with the checked stage and window; the pipeline's 403 and 404 pass."""
        params = models.monitoring_query(self.query("stage"), self.query("window"))
        path = f"monitoring/{models.model_name(model, 'model')}"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "GET", path, params=params)
        self.reply(payload)


class DriftCheckHandler(MlopshubHandler):
    """POST /mlopshub-lab/monitoring/{model}/drift?stage=&window=: compute the model's drift now."""

    @tornado.web.authenticated
    async def post(self, model: str) -> None:
        """Forward ``POST monitoring/{model}/drift``; answer the drift the pipeline computed (its ``drift`` object).

        The body carries nothing: what to check is the query, so a field sent anyway is refused, not ignored.
        """
        unknown = sorted(self.body())
        if unknown:
            raise InvalidField(unknown[0], "unknown field; a drift check takes only ?stage= and ?window=")
        params = models.monitoring_query(self.query("stage"), self.query("window"))
        path = f"monitoring/{models.model_name(model, 'model')}/drift"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "POST", path, params=params)
        self.reply(payload)


class MonitoringSettingsHandler(MlopshubHandler):
    """GET, PUT /mlopshub-lab/monitoring/{model}/settings: the model's capture sampling, retention and exclusions."""

    @tornado.web.authenticated
    async def get(self, model: str) -> None:
        """Forward ``GET monitoring/{model}/settings``; answer ``{sample_rate, retention_days, exclude_columns}``."""
        path = f"monitoring/{models.model_name(model, 'model')}/settings"
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "GET", path)
        self.reply(payload)

    @tornado.web.authenticated
    async def put(self, model: str) -> None:
        """Check the change here (422 naming the field), forward it and answer the settings now in force."""
        path = f"monitoring/{models.model_name(model, 'model')}/settings"
        body = models.monitoring_settings(self.body())
        _, payload = await models.forward(models.PipelineSettings.from_environ(), "PUT", path, body=body)
        self.reply(payload)


class MonitoringReportHandler(MlopshubHandler):
    """GET /mlopshub-lab/monitoring/{model}/report?stage=&window=: open the pipeline's printable report."""

    @tornado.web.authenticated
    def get(self, model: str) -> None:
        """Redirect the browser tab to the report page on the hub (``/services/pipeline/monitoring/...``).

        The report is a pipeline page the browser reads with the user's own hub
        login cookie; this workspace's token is not involved, and the address is
        a path on the hub the Lab itself is served by.
        """
        params = models.monitoring_query(self.query("stage"), self.query("window"))
        name = models.model_name(model, "model")
        self.redirect(models.report_location(models.PipelineSettings.from_environ(), name, params), status=302)
