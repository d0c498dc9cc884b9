"""What the pipeline computes from a team's store: traffic, drift against the baseline, quality; the report; metrics."""

import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlopshub.monitoring import stats
from mlopshub.monitoring.capture import Capture, Record
from mlopshub.monitoring.metrics import PipelineCollector, pipeline_registry
from mlopshub.monitoring.monitor import Monitor, MonitoringError, Served, check_window, tracked_metrics
from mlopshub.services.pipeline.monitoring_api import render_report

NOW = time.time()


def served(version: str = "1", release=None) -> Served:
    return Served("scorer", "credit", "production", version, NOW - 3 * 86400, release)


def capture(store, request_id: str, at: float, rows: np.ndarray, answers: list, status: int = 200, latency=5.0):
    inputs = json.dumps({"columns": ["amount", "income"], "data": rows.tolist()})
    store.add_captures(
        [(request_id, "scorer", "1", "production", at, latency, status, len(rows), inputs, json.dumps(answers),
          "online")]
    )  # fmt: skip


@pytest.fixture
def monitor(tmp_path):
    yield Monitor(tmp_path)


def training(rng, n=5000) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.uniform(1, 100, n), "income": rng.uniform(20, 200, n)})


def test_traffic_counts_errors_and_latency_percentiles_per_bucket(monitor):
    store = monitor.store("credit")
    for i in range(100):
        capture(store, f"r{i}", NOW - 3600 + i, np.ones((1, 2)), [0], status=500 if i % 10 == 0 else 200,
                latency=float(i + 1))  # fmt: skip
    traffic = monitor.traffic(served(), NOW - 86400, NOW)
    assert (traffic["requests"], traffic["errors"]) == (100, 10)
    assert traffic["p50_ms"] == pytest.approx(50.5) and traffic["p99_ms"] == pytest.approx(99.01)
    assert traffic["bucket_seconds"] == 3600 and sum(b["requests"] for b in traffic["series"]) == 100
    assert len(traffic["series"]) <= 48


def test_a_version_without_baseline_shows_traffic_and_says_why_drift_is_unavailable(monitor):
    store = monitor.store("credit")
    capture(store, "r", NOW - 10, np.ones((3, 2)), [0, 0, 1])
    drift = monitor.drift(served(), "day", NOW - 86400, NOW, {})
    assert not drift["available"] and "no baseline" in drift["reason"] and "released before" in drift["reason"]
    store.save_baseline("scorer", "1", "rel", {"unavailable": "the training data (data/x.parquet) is not a CSV file"})
    drift = monitor.drift(served(), "day", NOW - 86400, NOW, {})
    assert not drift["available"] and "not a CSV file" in drift["reason"]
    assert monitor.traffic(served(), NOW - 86400, NOW)["requests"] == 1


def test_drift_flags_the_shifted_feature_only_and_is_kept_over_time(monitor):
    rng = np.random.default_rng(0)
    store = monitor.store("credit")
    store.save_baseline("scorer", "1", "rel", {**stats.baseline(training(rng)), "data": {"data/loans.csv": "ab" * 16}})
    for i in range(40):
        rows = np.column_stack([rng.uniform(1, 100, 50), rng.uniform(20, 200, 50)])
        capture(store, f"n{i}", NOW - 7200, rows, [0] * 50)
    calm = monitor.drift(served(), "day", NOW - 86400, NOW, {"psi": 0.2})
    assert calm["available"] and calm["rows"] == 2000 and not calm["drifted"]
    for i in range(40):
        rows = np.column_stack([rng.uniform(1, 100, 50), rng.uniform(250, 450, 50)])
        capture(store, f"s{i}", NOW - 60, rows, [0] * 50)
    shifted = monitor.drift(served(), "day", NOW - 86400, NOW, {"psi": 0.2})
    by_name = {item["name"]: item for item in shifted["features"]}
    assert by_name["income"]["drifted"] and not by_name["amount"]["drifted"]
    assert shifted["baseline"]["data"] == {"data/loans.csv": "ab" * 16}
    history = monitor.history(served(), 0)
    assert [item["drifted"] for item in history] == [False, True]
    assert history[-1]["psi"]["income"] == pytest.approx(by_name["income"]["psi"])
    # Another version's checks are not this one's.
    assert monitor.history(served("2"), 0) == [] and monitor.last_drift(served("2")) is None


def test_a_caller_sending_nan_does_not_stop_the_drift_check(monitor, tmp_path):
    # The models service's capture writes; the pipeline's monitor reads the same team store.
    rng = np.random.default_rng(1)
    store = monitor.store("credit")
    store.save_baseline("scorer", "1", "rel", stats.baseline(training(rng)))
    capture = Capture(tmp_path)
    for i in range(20):
        rows = np.column_stack([rng.uniform(1, 100, 50), rng.uniform(20, 200, 50)]).tolist()
        rows[0][0] = float("nan")  # as json.dumps sends it: NaN
        body = json.dumps({"dataframe_split": {"columns": ["amount", "income"], "data": rows}}).encode()
        capture.record(Record(f"q{i}", "credit", "scorer", "1", "production", NOW - 60, 2.0, 200, "application/json",
                              body, b'{"predictions": [0]}'))  # fmt: skip
    capture.close()
    drift = monitor.drift(served(), "day", NOW - 86400, NOW, {})
    assert drift["available"] and drift["rows"] == 1000 and not drift["drifted"]


def test_quality_over_outcomes_beside_the_value_at_approval(monitor):
    store = monitor.store("credit")
    capture(store, "a", NOW - 100, np.ones((4, 2)), [1, 0, 1, 1])
    capture(store, "b", NOW - 50, np.ones((2, 2)), [0, 0])
    store.add_outcomes("scorer", [{"request_id": "a", "value": [1, 0, 0, 1]}, {"request_id": "b", "value": [0, 1]}])
    details = {"metrics": {"auc": 0.81}, "thresholds": {"auc": {"min": 0.75}}}
    release = SimpleNamespace(gate_results=[{"name": "metrics", "details": details}])
    quality = monitor.quality(served(release=release), NOW - 86400, NOW, tracked_metrics(["auc"]))
    metrics = {item["name"]: item for item in quality["metrics"]}
    assert quality["available"] and quality["outcomes"] == 6
    assert metrics["accuracy"]["value"] == pytest.approx(4 / 6)
    assert metrics["auc"]["value"] is None and "probabilities" in metrics["auc"]["reason"]
    assert metrics["auc"]["approval"] == 0.81 and metrics["auc"]["threshold"] == {"min": 0.75}
    assert quality["series"] and quality["series"][0]["values"]["accuracy"] == pytest.approx(4 / 6)


def test_quality_without_outcomes_says_how_to_post_them(monitor):
    quality = monitor.quality(served(), NOW - 86400, NOW, ["rmse"])
    assert not quality["available"] and "/services/models/scorer/outcomes" in quality["reason"]


def test_windows_are_named_and_checked():
    assert check_window("week") == "week"
    with pytest.raises(MonitoringError) as refused:
        check_window("month")
    assert refused.value.field == "window" and "day, week, promotion" in str(refused.value)
    assert Monitor.period("promotion", served(), NOW) == (NOW - 3 * 86400, NOW)
    assert Monitor.period("week", served(), NOW) == (NOW - 7 * 86400, NOW)


def test_tracked_metrics_add_accuracy_for_a_classifier_judged_on_probabilities():
    assert tracked_metrics(["auc"]) == ["auc", "accuracy"]
    assert tracked_metrics(["rmse"]) == ["rmse"]
    assert tracked_metrics(["accuracy", "log_loss"]) == ["accuracy", "log_loss"]


def test_the_report_escapes_what_callers_sent():
    hostile = "<script>alert(1)</script>"
    data = {
        "model": "scorer", "team": "credit", "stage": "production", "version": "1",
        "window": {"name": "day", "since": NOW - 86400, "until": NOW},
        "traffic": {"requests": 3, "errors": 0, "p50_ms": 1.0, "p99_ms": 2.0},
        "capture": {"captured": 3, "dropped": 0, "sample_rate": 1.0, "retention_days": 90},
        "drift": {"available": True, "checked_at": NOW, "rows": 3, "thresholds": {"psi": 0.2, "p_value": 0.01},
                  "baseline": {"data": {"data/loans.csv": "ab" * 16}, "rows": 10}, "prediction": None,
                  "features": [{"name": hostile, "kind": "categorical", "psi": 0.9, "p_value": 0.001, "test": "chi2",
                                "drifted": True, "baseline": {"shares": [0.5, 0.5]}, "live": {"shares": [0.1, 0.9]}}]},
        "quality": {"outcomes": 0, "reason": "no outcomes", "metrics": []},
    }  # fmt: skip
    page = render_report(data, None, "vera")
    assert hostile not in page and "&lt;script&gt;" in page
    assert "DRIFT on &lt;script&gt;" in page and "data/loans.csv" in page


def test_pipeline_metrics_parse_as_prometheus_text():
    collector = PipelineCollector(
        lambda: {("credit", "production"): 2, ("credit", "failed"): 1},
        lambda: [{"model": "scorer", "version": "3", "stage": "production", "quality": {"accuracy": 0.9},
                  "drift": {"drifted": True, "psi": {"income": 0.7, "__prediction__": 0.3}}}],
    )  # fmt: skip
    text = generate_latest(pipeline_registry(collector)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip
    assert samples[("mlopshub_releases", (("state", "production"), ("team", "credit")))] == 2
    psi = ("mlopshub_model_drift_psi", (("feature", "income"), ("model", "scorer"), ("stage", "production"),
                                       ("version", "3")))  # fmt: skip
    assert samples[psi] == 0.7
    assert samples[("mlopshub_model_drifted", (("model", "scorer"), ("stage", "production"), ("version", "3")))] == 1
    assert samples[("mlopshub_model_quality", (("metric", "accuracy"), ("model", "scorer"), ("version", "3")))] == 0.9
