"""The Monitoring view's server side: forwarding to the pipeline's monitoring API, checks before forwarding, the report.

The pipeline's monitoring API is written down in the issue-15 contract
(``GET monitoring``, ``GET monitoring/{model}``, ``POST .../drift``, ``GET|PUT
.../settings``); a small tornado app on loopback stands in for it here,
answering as the contract says and recording every request it gets, so a test
sees exactly what reached the pipeline (or that nothing did).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from labtesting import free_port
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

TOKEN = "ann-secret-token"
SETTINGS = {"sample_rate": 1.0, "retention_days": 90, "exclude_columns": []}
DRIFT = {
    "available": True,
    "reason": None,
    "baseline": {"data": {"data/loans.csv": "f69f5b72bc79a92dc70c63c9aa142e36"}, "rows": 1000},
    "thresholds": {"psi": 0.2, "p_value": 0.01},
    "checked_at": 1_780_000_000.0,
    "drifted": True,
    "rows": 500,
    "features": [
        {
            "name": "income",
            "kind": "numeric",
            "psi": 0.41,
            "test": "ks",
            "p_value": 0.0001,
            "drifted": True,
            "baseline": {"edges": [None, 1.0, None], "shares": [0.5, 0.5]},
            "live": {"shares": [0.1, 0.9], "rows": 500, "missing": 0.0},
        }
    ],
    "prediction": None,
    "history": [{"t": 1_780_000_000.0, "psi": {"income": 0.41}}],
}


class Recorded(web.RequestHandler):
    """Every request the stand-in gets is recorded: method, path, query, body and the Authorization header."""

    def prepare(self) -> None:
        self.application.settings["seen"].append(
            {
                "method": self.request.method,
                "path": self.request.path,
                "query": {name: self.get_query_argument(name) for name in self.request.query_arguments},
                "body": json.loads(self.request.body) if self.request.body else None,
                "authorization": self.request.headers.get("Authorization"),
            }
        )
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            self.set_status(401)
            self.finish({"message": "invalid token"})
        elif self.path_kwargs.get("model") == "other-teams":
            self.set_status(403)
            self.finish({"message": "ann may not read the monitoring of other-teams (team retail-scoring)"})
        elif self.path_kwargs.get("model") == "unknown":
            self.set_status(404)
            self.finish({"message": "no monitored model 'unknown'"})


class ListHandler(Recorded):
    def get(self) -> None:
        self.finish({"models": [{"model": "loans", "team": "sme-credit", "stages": {}, "drifted": True}]})


class ModelHandler(Recorded):
    def get(self, model: str) -> None:
        stage, window = self.get_query_argument("stage", "production"), self.get_query_argument("window", "day")
        self.finish({"model": model, "stage": stage, "window": {"name": window}, "drift": DRIFT})


class DriftHandler(Recorded):
    def post(self, model: str) -> None:
        self.finish(DRIFT)


class SettingsHandler(Recorded):
    def get(self, model: str) -> None:
        self.finish(SETTINGS)

    def put(self, model: str) -> None:
        self.finish({**SETTINGS, **json.loads(self.request.body)})


class StandIn:
    """The stand-in pipeline on its own event loop in a thread, at ``<url>/services/pipeline/api``."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/services/pipeline/api"
        started = threading.Event()
        api = "/services/pipeline/api/monitoring"

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            routes = [
                (api, ListHandler),
                (api + r"/(?P<model>[^/]+)", ModelHandler),
                (api + r"/(?P<model>[^/]+)/drift", DriftHandler),
                (api + r"/(?P<model>[^/]+)/settings", SettingsHandler),
            ]
            HTTPServer(web.Application(routes, seen=self.seen)).add_sockets(sockets)
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def stand_in():
    running = StandIn()
    yield running
    running.close()


@pytest.fixture
def pipeline(stand_in, monkeypatch) -> StandIn:
    """The workspace pointed at the stand-in with ann's hub token; what it saw starts empty in each test."""
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", stand_in.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    stand_in.seen.clear()
    return stand_in


@pytest.fixture
def call(jp_fetch):
    """``/mlopshub-lab/<endpoint>`` with a JSON body (POST, PUT): ``(status, JSON)``, and never the token in it."""

    async def checked(method: str, endpoint: str, body: Any = None, params: Any = None):
        options: dict[str, Any] = {"method": method, "raise_error": False, "params": params}
        if method in ("POST", "PUT"):
            options["body"] = json.dumps({} if body is None else body)
        response = await jp_fetch("mlopshub-lab", *endpoint.split("/"), **options)
        text = (response.body or b"").decode()
        assert TOKEN not in text + str(dict(response.headers))
        return response.code, json.loads(text)

    return checked


async def test_the_list_comes_from_the_pipeline_with_the_workspaces_token(call, pipeline):
    status, body = await call("GET", "monitoring")
    assert status == 200
    assert body == {"models": [{"model": "loans", "team": "sme-credit", "stages": {}, "drifted": True}]}
    assert pipeline.seen == [
        {
            "method": "GET",
            "path": "/services/pipeline/api/monitoring",
            "query": {},
            "body": None,
            "authorization": f"token {TOKEN}",
        }
    ]


async def test_a_models_monitoring_is_asked_for_the_stage_and_window_chosen(call, pipeline):
    status, body = await call("GET", "monitoring/loans", params={"stage": "staging", "window": "promotion"})
    assert status == 200
    assert (body["model"], body["stage"], body["window"], body["drift"]) == (
        "loans",
        "staging",
        {"name": "promotion"},
        DRIFT,
    )
    assert [(seen["path"], seen["query"]) for seen in pipeline.seen] == [
        ("/services/pipeline/api/monitoring/loans", {"stage": "staging", "window": "promotion"})
    ]


async def test_without_stage_and_window_the_pipeline_picks_its_defaults(call, pipeline):
    status, body = await call("GET", "monitoring/loans", params={"stage": "", "window": ""})
    assert status == 200 and (body["stage"], body["window"]["name"]) == ("production", "day")
    assert pipeline.seen[0]["query"] == {}, "blank parameters are not sent"


async def test_check_drift_now_posts_to_the_pipeline_and_answers_the_drift(call, pipeline):
    status, body = await call("POST", "monitoring/loans/drift", {}, params={"stage": "production", "window": "week"})
    assert (status, body) == (200, DRIFT)
    assert [(seen["method"], seen["path"], seen["query"]) for seen in pipeline.seen] == [
        ("POST", "/services/pipeline/api/monitoring/loans/drift", {"stage": "production", "window": "week"})
    ]


async def test_settings_are_read_and_a_checked_change_is_forwarded_as_sent(call, pipeline):
    status, body = await call("GET", "monitoring/loans/settings")
    assert (status, body) == (200, SETTINGS)
    change = {"sample_rate": 0.25, "retention_days": 30, "exclude_columns": ["name", "iban"]}
    status, body = await call("PUT", "monitoring/loans/settings", change)
    assert (status, body) == (200, change)
    assert [(seen["method"], seen["body"]) for seen in pipeline.seen] == [("GET", None), ("PUT", change)]


async def test_a_partial_settings_change_sends_only_its_field(call, pipeline):
    status, body = await call("PUT", "monitoring/loans/settings", {"retention_days": 3650})
    assert status == 200 and body["retention_days"] == 3650
    assert pipeline.seen[0]["body"] == {"retention_days": 3650}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"sample_rate": 1.5}, "sample_rate", "from 0 to 1"),
        ({"sample_rate": -0.1}, "sample_rate", "from 0 to 1"),
        ({"sample_rate": "0.5"}, "sample_rate", "expected a number"),
        ({"sample_rate": True}, "sample_rate", "expected a number"),
        ({"retention_days": 0}, "retention_days", "from 1 to 3650"),
        ({"retention_days": 3651}, "retention_days", "from 1 to 3650"),
        ({"retention_days": 10**400}, "retention_days", "from 1 to 3650"),
        ({"retention_days": 7.5}, "retention_days", "whole number of days"),
        ({"retention_days": "30"}, "retention_days", "whole number of days"),
        ({"exclude_columns": "iban"}, "exclude_columns", "list of column names"),
        ({"exclude_columns": ["iban", 7]}, "exclude_columns.1", "column name"),
        ({"exclude_columns": [""]}, "exclude_columns.0", "1 to 200 characters"),
        ({"exclude_columns": ["c"] * 201}, "exclude_columns", "at most 200"),
        ({"sample_rate": 0.5, "retention": 30}, "retention", "unknown field"),
        ({}, "(body)", "nothing to change"),
    ],
)
async def test_a_wrong_settings_change_is_422_naming_the_field_and_nothing_reaches_the_pipeline(
    call, pipeline, body, field, words
):
    status, answer = await call("PUT", "monitoring/loans/settings", body)
    assert (status, answer["field"]) == (422, field), answer
    assert words in answer["message"]
    assert pipeline.seen == []


@pytest.mark.parametrize(
    ("method", "endpoint", "params", "field"),
    [
        ("GET", "monitoring/loans", {"window": "month"}, "window"),
        ("GET", "monitoring/loans", {"stage": "dev"}, "stage"),
        ("POST", "monitoring/loans/drift", {"window": "year"}, "window"),
        ("POST", "monitoring/loans/drift", {"stage": "Production"}, "stage"),
        ("GET", "monitoring/loans/report", {"window": "all"}, "window"),
        ("GET", "monitoring/-loans", {}, "model"),
        ("GET", "monitoring/loans%20v2/settings", {}, "model"),
        ("POST", "monitoring/..%2Fetc/drift", {}, "model"),
    ],
)
async def test_a_wrong_model_stage_or_window_is_422_naming_it_before_forwarding(
    call, pipeline, method, endpoint, params, field
):
    status, answer = await call(method, endpoint, params=params)
    assert (status, answer["field"]) == (422, field), answer
    assert pipeline.seen == []


async def test_a_field_in_a_drift_checks_body_is_refused_not_ignored(call, pipeline):
    status, answer = await call("POST", "monitoring/loans/drift", {"window": "week"})
    assert (status, answer["field"]) == (422, "window") and "only ?stage= and ?window=" in answer["message"]
    assert pipeline.seen == []


async def test_the_pipelines_403_and_404_come_back_with_their_words(call, pipeline):
    status, answer = await call("GET", "monitoring/other-teams")
    assert (status, answer["message"]) == (403, "ann may not read the monitoring of other-teams (team retail-scoring)")
    status, answer = await call("POST", "monitoring/unknown/drift", {})
    assert (status, answer["message"]) == (404, "no monitored model 'unknown'")


async def test_a_token_the_pipeline_refuses_is_502_naming_the_variable(call, pipeline, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "expired-token")
    status, answer = await call("GET", "monitoring")
    assert status == 502 and "JUPYTERHUB_API_TOKEN" in answer["message"]


async def test_an_unreachable_pipeline_is_502_with_its_address(call, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/services/pipeline/api"
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", url)
    status, answer = await call("GET", "monitoring/loans/settings")
    assert status == 502 and answer["message"].startswith(f"the release pipeline at {url} is unreachable")


async def test_the_report_opens_on_the_hubs_own_address_with_the_stage_and_window(api, pipeline):
    params = {"stage": "staging", "window": "week"}
    status, _, response = await api("GET", "monitoring/loans.v2/report", params=params, follow_redirects=False)
    assert status == 302
    assert response.headers["Location"] == "/services/pipeline/monitoring/loans.v2/report?stage=staging&window=week"
    assert pipeline.seen == [], "the browser reads the report itself, with its own hub login"


async def test_the_report_keeps_the_hubs_prefix_and_leaves_out_blank_parameters(api, monkeypatch):
    # A hub under a prefix (and a pipeline address inside a cluster): only the path goes to the browser.
    monkeypatch.setenv("MLOPSHUB_PIPELINE_URL", "http://pipeline.mlopshub.svc:8081/jhub/services/pipeline/api")
    status, _, response = await api("GET", "monitoring/loans/report", params={"window": ""}, follow_redirects=False)
    assert (status, response.headers["Location"]) == (302, "/jhub/services/pipeline/monitoring/loans/report")


async def test_a_number_too_long_to_read_is_a_400_not_a_server_error(jp_fetch, pipeline):
    body = '{"retention_days": ' + "9" * 5000 + "}"  # more digits than Python turns into an int by default
    response = await jp_fetch(
        "mlopshub-lab", "monitoring", "loans", "settings", method="PUT", body=body, raise_error=False
    )
    assert response.code == 400 and b"not JSON" in response.body
    assert pipeline.seen == []
