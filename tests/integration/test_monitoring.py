"""Production monitoring on the real platform: capture, baseline, drift, outcomes, metrics, report, isolation.

A model trained in a workspace on versioned data is published, approved and served; traffic drawn from the
training distribution shows no drift, then traffic whose ``income`` is shifted shows drift on ``income`` only,
in the API, the audit log, the printable report and the Prometheus metrics (parsed with prometheus_client's
own text-format parser). Outcomes posted for a sample give the accuracy the test computes from the same
answers; bad outcomes are refused with the field named and nothing stored. A killed pipeline loses no
captured request, and another team reads nothing.
"""

import json
import os
import signal
import sqlite3
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from release_flow import Pipeline, make_project, train
from testing_support import until

pytestmark = pytest.mark.integration

TEAM = "sme-credit"
MODEL = "credit-watch"
#: Requests per traffic phase, and rows per request.
REQUESTS = 24
ROWS = 25


def applicants(rng: np.random.Generator, shifted: bool = False) -> dict:
    """One scoring request: applicants as the training data draws them (``income`` shifted up when asked)."""
    income = rng.uniform(250, 450, ROWS) if shifted else rng.uniform(20, 200, ROWS)
    amount = rng.uniform(1, 100, ROWS)
    return {"dataframe_split": {"columns": ["amount", "income"], "data": np.column_stack([amount, income]).tolist()}}


def truth(body: dict) -> list[int]:
    """The outcome the training data's rule gives each row (without its noise)."""
    return [int(amount / income > 0.5) for amount, income in body["dataframe_split"]["data"]]


def metric_values(text: str, name: str) -> dict[tuple, float]:
    """``{labels: value}`` of one metric in a scrape, read with Prometheus' own parser."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                values[tuple(sorted(sample.labels.items()))] = sample.value
    return values


@pytest.fixture(scope="module")
def served(platform):
    """credit-watch in production: trained by mona (sme-credit) on versioned data, approved by valmon (a validator)."""
    platform.add_user("mona", TEAM)
    platform.add_user("valmon", "model-validators")
    platform.start("mona", "python-cpu")
    token = platform.token_for("mona")
    assert "project ready" in platform.execute("mona", token, make_project(seed=7))
    run = platform.execute("mona", token, train(1.0)).strip().splitlines()[-1]
    mona, vera = Pipeline(platform, token), Pipeline(platform, platform.token_for("valmon"))
    release = mona.wait(mona.publish(run, MODEL)["id"])
    assert release["state"] == "awaiting_approval", (release["reason"], release["gate_results"])
    assert vera.call("POST", f"releases/{release['id']}/approve", {"comment": "ok"}).status_code == 200
    release = mona.wait(release["id"], {"production", "failed"})
    assert release["state"] == "production", release
    yield mona, vera, release
    platform.stop("mona")


def send(pipeline: Pipeline, rng: np.random.Generator, shifted: bool = False) -> list[tuple[str, dict, list]]:
    """One phase of traffic to production: (request id, body, predictions) of each request."""
    answered = []
    for _ in range(REQUESTS):
        body = applicants(rng, shifted)
        response = pipeline.invoke(MODEL, "production", body)
        assert response.status_code == 200, response.text
        answered.append((response.headers["X-Mlopshub-Request-Id"], body, response.json()["predictions"]))
    return answered


def captured(pipeline: Pipeline) -> int:
    return pipeline.call("GET", f"monitoring/{MODEL}").json()["capture"]["captured"]


def test_baseline_drift_outcomes_metrics_and_report(platform, served, bob):
    mona, vera, release = served
    rng = np.random.default_rng(11)

    # The baseline was taken at release from the training data version the lineage names.
    view = mona.call("GET", f"monitoring/{MODEL}")
    assert view.status_code == 200, view.text
    drift = view.json()["drift"]
    assert drift["available"], drift
    assert list(drift["baseline"]["data"]) == ["data/loans.csv"]

    normal = send(mona, rng)
    until(lambda: captured(mona) >= REQUESTS, "the first phase captured")
    checked = mona.call("POST", f"monitoring/{MODEL}/drift?window=day")
    assert checked.status_code == 200, checked.text
    first = checked.json()
    assert first["rows"] == REQUESTS * ROWS
    assert not first["drifted"], [(f["name"], f["psi"]) for f in first["features"]]
    assert {f["name"] for f in first["features"]} == {"amount", "income"}

    send(mona, rng, shifted=True)
    until(lambda: captured(mona) >= 2 * REQUESTS, "the shifted phase captured")
    second = vera.call("POST", f"monitoring/{MODEL}/drift?window=day").json()
    features = {f["name"]: f for f in second["features"]}
    assert second["drifted"]
    assert features["income"]["drifted"] and features["income"]["psi"] >= 0.2, features["income"]
    assert not features["amount"]["drifted"] and features["amount"]["psi"] < 0.2, features["amount"]
    assert len(second["history"]) >= 2  # PSI over time

    # Crossing the threshold is an audit entry; the sidebar's list marks the model.
    audit = vera.call("GET", f"audit?model={MODEL}&action=drift detected").json()
    assert audit and audit[-1]["details"]["features"][0] == "income", audit
    listed = {m["model"]: m for m in mona.call("GET", "monitoring").json()["models"]}
    assert listed[MODEL]["drifted"] and listed[MODEL]["stages"]["production"]["version"] == release["version"]

    # Outcomes for a sample of the first phase: the accuracy the test computes from the same answers.
    sample = normal[:8]
    body = {"outcomes": [{"request_id": rid, "value": truth(request)} for rid, request, _ in sample]}
    posted = requests.post(
        f"{platform.url}/services/models/{MODEL}/outcomes", json=body, headers=mona.headers, timeout=60
    )
    assert posted.status_code == 201, posted.text
    predicted = [p for _, _, answer in sample for p in answer]
    actual = [t for _, request, _ in sample for t in truth(request)]
    expected = float(np.mean(np.array(predicted) == np.array(actual)))
    quality = mona.call("GET", f"monitoring/{MODEL}?window=day").json()["quality"]
    assert quality["outcomes"] == len(actual)
    by_name = {m["name"]: m for m in quality["metrics"]}
    assert by_name["accuracy"]["value"] == pytest.approx(expected)
    assert by_name["auc"]["value"] is None and "probabilities" in by_name["auc"]["reason"]
    assert by_name["auc"]["approval"] is not None  # measured on the hold-out set by the metrics gate

    # Bad outcomes: a clear 4xx naming the field, and nothing stored.
    url = f"{platform.url}/services/models/{MODEL}/outcomes"
    rid, request, _ = normal[10]
    bad = {
        "unknown id": (
            {"outcomes": [{"request_id": "0" * 32, "value": truth(request)}]},
            404,
            "outcomes[0].request_id",
        ),
        "given twice": ({"outcomes": [{"request_id": normal[0][0], "value": truth(normal[0][1])}]}, 409, None),
        "wrong type": ({"outcomes": [{"request_id": rid, "value": [{"a": 1}] * ROWS}]}, 422, "outcomes[0].value"),
        "wrong length": ({"outcomes": [{"request_id": rid, "value": [1, 0]}]}, 422, "outcomes[0].value"),
        "not a list": ({"outcomes": "yes"}, 422, "outcomes"),
        # All or none: a good item before a bad one is not stored either.
        "half good": (
            {"outcomes": [{"request_id": rid, "value": truth(request)}, {"request_id": "x" * 8, "value": 1}]},
            404,
            "outcomes[1].request_id",
        ),
    }
    for case, (payload, status, field) in bad.items():
        answer = requests.post(url, json=payload, headers=mona.headers, timeout=60)
        assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text}"
        if field:
            assert answer.json()["field"] == field, case
    other_team = requests.post(url, json=body, headers={"Authorization": f"token {platform.token_for(bob)}"})
    assert other_team.status_code == 403, other_team.text
    assert mona.call("GET", f"monitoring/{MODEL}").json()["quality"]["outcomes"] == len(actual)

    # Prometheus: the endpoint's requests and latency, the pipeline's drift values, with the token a platform
    # admin makes for the scraper (read:metrics and access to both services, docs/monitoring.md).
    platform.add_user("otis", "platform-admins")
    scopes = ["read:metrics", "access:services!service=models", "access:services!service=pipeline"]
    admin = {"Authorization": f"token {platform.token_for('otis', scopes)}"}
    models_scrape = requests.get(f"{platform.url}/services/models/metrics", headers=admin, timeout=30)
    assert models_scrape.status_code == 200, models_scrape.text
    counted = metric_values(models_scrape.text, "mlopshub_model_requests_total")
    ours = sum(v for labels, v in counted.items() if dict(labels)["model"] == MODEL and dict(labels)["code"] == "200")
    assert ours >= 2 * REQUESTS
    assert metric_values(models_scrape.text, "mlopshub_model_request_duration_seconds_count")
    pipeline_scrape = requests.get(f"{platform.url}/services/pipeline/metrics", headers=admin, timeout=30)
    assert pipeline_scrape.status_code == 200, pipeline_scrape.text
    psi = {dict(labels)["feature"]: v for labels, v in metric_values(pipeline_scrape.text, "mlopshub_model_drift_psi")
           .items() if dict(labels)["model"] == MODEL}  # fmt: skip
    assert psi["income"] >= 0.2 > psi["amount"]
    drifted = metric_values(pipeline_scrape.text, "mlopshub_model_drifted")
    assert any(dict(labels)["model"] == MODEL and value == 1.0 for labels, value in drifted.items())
    assert metric_values(pipeline_scrape.text, "mlopshub_releases")
    # A user's token carries no read:metrics; the hub's own metrics answer the scraper's token too.
    assert requests.get(f"{platform.url}/services/pipeline/metrics", headers=mona.headers).status_code == 403
    assert requests.get(f"{platform.url}/services/models/metrics", headers=mona.headers).status_code == 403
    hub_scrape = requests.get(f"{platform.url}/hub/metrics", headers=admin, timeout=30)
    assert hub_scrape.status_code == 200 and metric_values(hub_scrape.text, "jupyterhub_active_users")

    # The printable report, opened by the validator in a browser session (hub login, then the service's OAuth).
    password = platform.add_user("ritmon", "model-validators")
    session = platform.login("ritmon", password)
    report = session.get(f"{platform.url}/services/pipeline/monitoring/{MODEL}/report?window=day", timeout=60)
    assert report.status_code == 200, report.text[:500]
    assert "DRIFT on income" in report.text and "data/loans.csv" in report.text
    assert "frame-ancestors 'none'" in report.headers["Content-Security-Policy"]


def test_another_team_reads_nothing_of_the_model(platform, served, bob):
    outsider = Pipeline(platform, platform.token_for(bob))
    for method, path in (("GET", f"monitoring/{MODEL}"), ("POST", f"monitoring/{MODEL}/drift"),
                         ("GET", f"monitoring/{MODEL}/settings"), ("PUT", f"monitoring/{MODEL}/settings")):  # fmt: skip
        answer = outsider.call(method, path, {} if method == "PUT" else None)
        assert answer.status_code == 404, f"{method} {path}: {answer.text}"
    assert MODEL not in {m["model"] for m in outsider.call("GET", "monitoring").json()["models"]}


def test_capture_survives_a_pipeline_restart_and_settings_keep_columns_out(platform, served):
    mona, vera, _ = served
    rng = np.random.default_rng(5)
    send(mona, rng)
    until(lambda: captured(mona) >= 3 * REQUESTS, "traffic captured")
    before = captured(mona)

    pid_file = platform.data_dir / "run" / "pipeline.pid"
    old = int(pid_file.read_text())
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        part = platform.status().get("parts", {}).get("pipeline", {})
        return part.get("pid") not in (None, old) and bool(part.get("healthy"))

    until(back, "the pipeline restarted by the supervisor", timeout=300)
    assert captured(mona) == before  # nothing acknowledged was lost
    # The endpoints never stopped: they run in the models service.
    send(mona, rng)
    until(lambda: captured(mona) == before + REQUESTS, "traffic after the restart captured")

    # Capture settings: the team changes them, a validator may not, a bad value is named.
    settings = f"monitoring/{MODEL}/settings"
    assert vera.call("PUT", settings, {"sample_rate": 0.5}).status_code == 403
    refused = mona.call("PUT", settings, {"retention_days": 0})
    assert refused.status_code == 422 and refused.json()["field"] == "retention_days", refused.text
    changed = mona.call("PUT", settings, {"exclude_columns": ["income"]})
    assert changed.status_code == 200 and changed.json()["exclude_columns"] == ["income"], changed.text
    time.sleep(6)  # the models service reads the settings every 5 s
    marker = {"dataframe_split": {"columns": ["amount", "income"], "data": [[42.0, 314159265.0]]}}
    response = mona.invoke(MODEL, "production", marker)
    assert response.status_code == 200
    request_id = response.headers["X-Mlopshub-Request-Id"]
    store = platform.data_dir / "pipeline" / "monitoring" / f"{TEAM}.sqlite"

    def written() -> str | None:
        with sqlite3.connect(store) as connection:
            row = connection.execute("SELECT inputs FROM captures WHERE request_id = ?", (request_id,)).fetchone()
        return row[0] if row else None

    until(lambda: written() is not None, "the marker request captured")
    assert json.loads(written()) == {"columns": ["amount"], "data": [[42.0]]}
    for file in store.parent.glob(f"{TEAM}.sqlite*"):  # the database and its write-ahead log
        assert b"314159265" not in file.read_bytes(), f"the excluded column was written to {file}"
    assert oct(store.parent.stat().st_mode & 0o777) == oct(0o700)
    if os.geteuid() != 0:
        return  # workspaces run as the platform's own user unless it runs as root: nothing more to prove
    # From inside the team's own workspace (arbitrary code as its user), the captures cannot be read or changed.
    probe = (
        f"import sqlite3\ntry:\n    open({str(store)!r}, 'rb').read(16)\n    print('READ')\n"
        f"except OSError as error:\n    print('refused', type(error).__name__)"
    )
    assert "refused PermissionError" in platform.execute("mona", mona.headers["Authorization"].split()[1], probe)
