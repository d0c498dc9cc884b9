"""Experiments through the REST API, against a real MLflow tracking server with a workspace per team."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from http.cookies import SimpleCookie

import pytest
from labtesting import free_port
from mlopshub_lab import experiments


@pytest.fixture
def mlflow_env(monkeypatch, mlflow_runs):
    """The workspace environment the hub sets, pointing at the test MLflow server (no current team: its default)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_runs["url"])
    monkeypatch.setenv("MLOPSHUB_TEAMS", "sme-credit,retail-scoring")
    return mlflow_runs


async def test_workspaces_are_the_users_teams_and_the_current_one(api, monkeypatch):
    monkeypatch.setenv("MLOPSHUB_TEAMS", "sme-credit, retail-scoring")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "sme-credit")
    status, body, _ = await api("GET", "experiments/workspaces")
    assert (status, body) == (200, {"workspaces": ["sme-credit", "retail-scoring"], "current": "sme-credit"})


async def test_experiments_are_listed(api, mlflow_env):
    status, body, _ = await api("GET", "experiments/list")
    assert status == 200
    by_name = {experiment["name"]: experiment for experiment in body["experiments"]}
    assert by_name["credit-default"]["id"] == mlflow_env["experiment"]
    assert by_name["churn"]["id"] == mlflow_env["other"]
    assert isinstance(by_name["churn"]["last_update_time"], int)


async def test_runs_come_in_pages_linked_by_next_page_token(api, mlflow_env):
    seen, token, pages = [], None, 0
    while True:
        params = {"experiment": mlflow_env["experiment"], "max_results": "2"}
        if token:
            params["page_token"] = token
        status, body, _ = await api("GET", "experiments/runs", params=params)
        assert status == 200, body
        assert len(body["runs"]) <= 2
        seen += [run["run_id"] for run in body["runs"]]
        pages += 1
        token = body["next_page_token"]
        if token is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(run["id"] for run in mlflow_env["runs"])


async def test_runs_are_ordered_by_a_metric(api, mlflow_env):
    params = {"experiment": mlflow_env["experiment"], "order_by": "metrics.auc DESC"}
    status, body, _ = await api("GET", "experiments/runs", params=params)
    assert status == 200
    assert [run["metrics"]["auc"] for run in body["runs"]] == [0.78, 0.76, 0.74, 0.72, 0.70]
    assert body["next_page_token"] is None


async def test_a_run_has_times_metrics_params_and_only_lineage_tags(api, mlflow_env):
    params = {"experiment": mlflow_env["experiment"], "order_by": "start_time ASC", "max_results": "1"}
    _, body, _ = await api("GET", "experiments/runs", params=params)
    run = body["runs"][0]
    assert run["run_id"] == mlflow_env["runs"][0]["id"]
    assert (run["run_name"], run["status"]) == ("run-0", "FINISHED")
    assert (run["start_time"], run["end_time"], run["duration_ms"]) == (1_700_000_000_000, 1_700_000_001_500, 1500)
    assert run["metrics"] == {"auc": 0.70, "loss": pytest.approx(0.30), "f1": 0.5}
    assert run["params"] == {"max_depth": "3"}
    assert run["lineage"] == {
        "mlopshub.git.commit": "0" * 40,
        "mlflow.source.git.commit": "0" * 40,
        "mlopshub.data.data/loans.csv": "f69f5b72bc79a92dc70c63c9aa142e36",
    }


async def test_compare_puts_the_metrics_of_runs_side_by_side(api, mlflow_env):
    first, second = mlflow_env["runs"][0], mlflow_env["runs"][1]
    status, body, _ = await api("GET", "experiments/compare", params=[("run", first["id"]), ("run", second["id"])])
    assert status == 200
    assert body["metrics"] == ["auc", "f1", "loss"]
    assert [(run["run_id"], run["run_name"], run["metrics"]["auc"]) for run in body["runs"]] == [
        (first["id"], "run-0", 0.70),
        (second["id"], "run-1", 0.78),
    ]
    assert "f1" not in body["runs"][1]["metrics"]
    # Params and lineage sit beside the metrics, so the comparison tab needs no second request.
    assert body["runs"][1]["params"] == {"max_depth": "4"}
    assert body["runs"][1]["lineage"]["mlopshub.git.commit"] == f"{1:040d}"
    assert "unrelated" not in body["runs"][1]["lineage"]


async def test_history_gives_each_runs_values_of_a_metric_for_the_plot(api, mlflow_env):
    first, second = mlflow_env["runs"][0], mlflow_env["runs"][1]
    params = [("metric", "f1"), ("run", first["id"]), ("run", second["id"])]
    status, body, _ = await api("GET", "experiments/history", params=params)
    assert status == 200 and body["metric"] == "f1"
    assert [run["run_id"] for run in body["runs"]] == [first["id"], second["id"]]
    assert [(p["step"], p["value"]) for p in body["runs"][0]["points"]] == [(0, 0.5)]
    assert body["runs"][1]["points"] == [], "run-1 never logged f1"


async def test_history_refuses_a_metric_name_that_is_not_one_and_no_runs(api, mlflow_env):
    run = mlflow_env["runs"][0]["id"]
    status, body, _ = await api("GET", "experiments/history", params=[("metric", "auc&x=1"), ("run", run)])
    assert status == 400 and "'auc&x=1' is not a metric name" in body["message"]
    status, body, _ = await api("GET", "experiments/history", params={"metric": "auc"})
    assert status == 400 and "'run'" in body["message"]


async def test_compare_of_an_unknown_run_is_404_and_of_none_400(api, mlflow_env):
    status, body, _ = await api("GET", "experiments/compare", params={"run": "0" * 32})
    assert status == 404 and "not found" in body["message"]
    status, body, _ = await api("GET", "experiments/compare")
    assert status == 400


async def test_mlflows_own_refusal_of_a_bad_order_keeps_400_and_its_message(api, mlflow_env):
    params = {"experiment": mlflow_env["experiment"], "order_by": "bogus DESC"}
    status, body, _ = await api("GET", "experiments/runs", params=params)
    assert status == 400 and "Invalid attribute key 'bogus'" in body["message"]


def experiment_names(body: dict) -> set[str]:
    return {experiment["name"] for experiment in body["experiments"]}


async def test_the_requested_team_sees_its_own_mlflow_workspace(api, mlflow_env, team_workspaces):
    status, body, _ = await api("GET", "experiments/list", params={"workspace": "retail-scoring"})
    assert status == 200, body
    assert experiment_names(body) == {"retail-scoring-only"}
    _, body, _ = await api("GET", "experiments/runs", params={"experiment": team_workspaces["retail-scoring"]})
    assert body == {"runs": [], "next_page_token": None}


async def test_without_a_workspace_the_current_team_is_asked(api, mlflow_env, team_workspaces, monkeypatch):
    monkeypatch.setenv("MLFLOW_WORKSPACE", "sme-credit")
    status, body, _ = await api("GET", "experiments/list")
    assert (status, experiment_names(body)) == (200, {"sme-credit-only"})


async def test_two_teams_asked_at_once_each_get_their_own_and_the_environment_keeps_the_current_team(
    api, mlflow_env, team_workspaces, monkeypatch
):
    # The workspace is the request's alone: kernels started meanwhile inherit os.environ, which must not change.
    monkeypatch.setenv("MLFLOW_WORKSPACE", "sme-credit")
    teams = ["retail-scoring", "sme-credit"] * 6
    answers = await asyncio.gather(*(api("GET", "experiments/list", params={"workspace": team}) for team in teams))
    assert [experiment_names(body) for _, body, _ in answers] == [{f"{team}-only"} for team in teams]
    assert os.environ["MLFLOW_WORKSPACE"] == "sme-credit"


async def test_a_run_of_another_teams_workspace_is_not_found(api, mlflow_env, team_workspaces):
    run = mlflow_env["runs"][0]["id"]  # in MLflow's default workspace
    status, body, _ = await api("GET", "experiments/compare", params={"run": run, "workspace": "retail-scoring"})
    assert status == 404
    assert body["message"].startswith("MLflow (workspace 'retail-scoring'): ") and run in body["message"]


async def test_a_workspace_that_is_not_one_of_the_users_teams_is_refused(api, mlflow_env):
    status, body, _ = await api("GET", "experiments/list", params={"workspace": "treasury"})
    assert (status, body) == (
        400,
        {"message": "workspace 'treasury' is not one of your teams (sme-credit, retail-scoring)"},
    )


async def test_unreachable_mlflow_is_502_and_the_data_endpoints_still_answer(api, root, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's default tries for minutes: see below
    status, body, _ = await api("GET", "experiments/list")
    assert status == 502
    assert body["message"].startswith("MLflow at http://127.0.0.1:") and "is unreachable" in body["message"]
    status, _, _ = await api("GET", "data/project", params={"path": ""})
    assert status == 200


async def test_an_mlflow_that_does_not_answer_is_502_after_the_sidebars_wait_not_the_clients(api, monkeypatch):
    # A server that takes connections and never answers; MLflow's client would wait its own 120 s per try.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the client's thread ends when the socket closes
        started = time.monotonic()
        status, body, _ = await api("GET", "experiments/list", request_timeout=experiments.ANSWER_TIMEOUT + 30)
        waited = time.monotonic() - started
    assert status == 502
    assert f"did not answer within {experiments.ANSWER_TIMEOUT:.0f} s" in body["message"]
    assert experiments.ANSWER_TIMEOUT <= waited < experiments.ANSWER_TIMEOUT + 10


async def test_mlflow_not_configured_is_502_naming_the_variable(api):
    status, body, _ = await api("GET", "experiments/runs", params={"experiment": "1"})
    assert status == 502 and "MLFLOW_TRACKING_URI" in body["message"]


async def test_mlflow_ui_sets_the_token_cookie_and_redirects_to_the_run(api, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:8000/services/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cr3t-token")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "sme-credit")
    params = {"experiment": "7", "run": "abc123"}
    status, _, response = await api("GET", "mlflow-ui", params=params, follow_redirects=False)
    assert status == 302
    assert response.headers["Location"] == (
        "http://127.0.0.1:8000/services/mlflow/#/experiments/7/runs/abc123?workspace=sme-credit"
    )
    header = next(h for h in response.headers.get_list("Set-Cookie") if h.startswith("mlopshub-mlflow-token="))
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" not in header  # http here
    cookie = SimpleCookie(header)["mlopshub-mlflow-token"]
    assert cookie.value == "s3cr3t-token"
    assert cookie["path"] == "/services/mlflow/"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"


async def test_mlflow_ui_refuses_ids_that_would_change_the_route(api, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:8000/services/mlflow")
    status, body, _ = await api("GET", "mlflow-ui", params={"experiment": "7/../../admin"}, follow_redirects=False)
    assert status == 400 and "not a valid MLflow id" in body["message"]
