"""Monitoring statistics: baselines, drift of live requests against them, quality on posted outcomes."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score, root_mean_squared_error

from mlopshub.monitoring import stats

ROWS = 5000
SEGMENTS = ["retail", "sme", "corporate", "private"]
SEGMENT_SHARES = [0.5, 0.3, 0.15, 0.05]


def applicants(rows: int, seed: int, *, income_shift: float = 0.0, segment_shares=SEGMENT_SHARES) -> pd.DataFrame:
    """Loan applicants: two numeric features, a categorical and a bool one (the income shifted by std units)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(45, 12, rows),
            "income": rng.normal(50_000 + income_shift * 15_000, 15_000, rows),
            "segment": rng.choice(SEGMENTS, rows, p=segment_shares),
            "has_mortgage": rng.random(rows) < 0.35,
        }
    )


def scores(frame: pd.DataFrame) -> np.ndarray:
    return 1 / (1 + np.exp(-(frame["income"].to_numpy() - 50_000) / 15_000))


@pytest.fixture(scope="module")
def training_baseline() -> dict:
    frame = applicants(20_000, seed=1)
    # What the release stores and the pipeline reads back: the baseline goes through JSON.
    return json.loads(json.dumps(stats.baseline(frame, predictions=scores(frame)), allow_nan=False))


def feed(accumulator: stats.DriftAccumulator, frame: pd.DataFrame, per_request: int = 100) -> None:
    """Give ``frame`` to the accumulator as captured requests: JSON in, JSON out, as the capture store holds them."""
    for start in range(0, len(frame), per_request):
        chunk = frame.iloc[start : start + per_request]
        request = json.loads(json.dumps({"columns": list(chunk.columns), "data": chunk.to_numpy().tolist()}))
        accumulator.add(request["columns"], request["data"])
        accumulator.add_predictions(json.loads(json.dumps(scores(chunk).tolist())))


def drift_of(frame: pd.DataFrame, baseline: dict) -> dict:
    accumulator = stats.DriftAccumulator(baseline)
    feed(accumulator, frame)
    return accumulator.result()


def by_name(result: dict) -> dict[str, dict]:
    return {drift["name"]: drift for drift in result["features"]}


# --- PSI ---


def test_psi_of_identical_shares_is_zero():
    assert stats.psi([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]) == 0.0


def test_psi_is_the_standard_formula():
    expected, actual = [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]
    by_hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.4 - 0.2) * math.log(0.4 / 0.2)
    assert stats.psi(expected, actual) == pytest.approx(by_hand)


def test_psi_of_an_empty_bin_is_finite_and_large():
    value = stats.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    assert math.isfinite(value) and value > 1.0


def test_psi_refuses_shares_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        stats.psi([0.5, 0.5], [1.0])


# --- baseline ---


def test_baseline_is_plain_json_with_open_outer_edges():
    frame = applicants(3000, seed=2)
    frame.loc[::10, "age"] = np.nan
    frame.loc[::20, "segment"] = None
    summary = stats.baseline(frame, predictions=scores(frame), bins=10, sample=1000)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary  # no numpy types, no NaN
    age = summary["features"]["age"]
    assert age["kind"] == "numeric"
    assert age["edges"][0] is None and age["edges"][-1] is None
    assert len(age["edges"]) == 11 and len(age["shares"]) == 10
    assert sum(age["shares"]) == pytest.approx(1.0)
    assert age["missing"] == pytest.approx(0.1)  # a share of its own, not in a bin
    assert len(age["sample"]) == 1000
    assert age["mean"] == pytest.approx(frame["age"].mean())
    segment = summary["features"]["segment"]
    assert segment["kind"] == "categorical"
    assert segment["categories"] == [*SEGMENTS, "__other__"]
    assert segment["missing"] == pytest.approx(0.05)
    assert summary["features"]["has_mortgage"]["kind"] == "categorical"
    assert summary["prediction"]["kind"] == "numeric"
    assert summary["rows"] == 3000


def test_baseline_edges_are_deduplicated_for_a_feature_with_few_values():
    frame = pd.DataFrame({"children": [0] * 600 + [1] * 300 + [2] * 100})
    children = stats.baseline(frame)["features"]["children"]
    assert children["edges"] == [None, 0.0, 1.0, 2.0, None]
    assert children["shares"] == pytest.approx([0.0, 0.6, 0.3, 0.1])


def test_baseline_keeps_twenty_categories_and_the_rest_as_other():
    frame = pd.DataFrame({"branch": [f"branch-{index % 30:02d}" for index in range(3000)]})
    branch = stats.baseline(frame)["features"]["branch"]
    assert len(branch["categories"]) == 21 and branch["categories"][-1] == "__other__"
    assert branch["shares"][-1] == pytest.approx(10 / 30)


def test_baseline_of_class_labels_summarises_them_as_categories():
    labels = np.array([0, 1, 1, 0, 1] * 100)
    prediction = stats.baseline(pd.DataFrame({"x": range(500)}), predictions=labels)["prediction"]
    assert prediction["kind"] == "categorical"
    assert prediction["categories"] == ["1", "0", "__other__"]


# --- drift ---


def test_traffic_like_the_training_data_has_not_drifted(training_baseline):
    result = drift_of(applicants(ROWS, seed=3), training_baseline)
    assert result["rows"] == ROWS
    assert not result["drifted"]
    for drift in [*result["features"], result["prediction"]]:
        assert drift["psi"] < 0.05, drift["name"]
        assert not drift["drifted"], drift["name"]
        assert drift["reason"] is None
    assert by_name(result)["income"]["test"] == "ks"
    assert by_name(result)["segment"]["test"] == "chi2"
    assert result["skipped"] == {"requests": 0, "rows": 0, "values": 0, "columns": 0, "unknown_columns": []}


def test_a_feature_shifted_by_one_std_has_drifted_and_only_that_one(training_baseline):
    result = drift_of(applicants(ROWS, seed=4, income_shift=1.0), training_baseline)
    drifts = by_name(result)
    assert result["drifted"]
    assert drifts["income"]["drifted"]
    assert drifts["income"]["psi"] >= 0.2
    assert drifts["income"]["p_value"] < 0.01
    assert [name for name, drift in drifts.items() if drift["drifted"]] == ["income"]
    assert result["prediction"]["drifted"]  # the model's scores follow the income


def test_a_shift_between_categories_is_detected(training_baseline):
    result = drift_of(applicants(ROWS, seed=5, segment_shares=[0.2, 0.3, 0.15, 0.35]), training_baseline)
    segment = by_name(result)["segment"]
    assert segment["drifted"]
    assert segment["p_value"] < 0.01
    assert segment["live"]["shares"][3] == pytest.approx(0.35, abs=0.02)
    assert [name for name, drift in by_name(result).items() if drift["drifted"]] == ["segment"]


def test_categories_the_training_data_never_had_count_as_other(training_baseline):
    live = applicants(ROWS, seed=6)
    live.loc[: ROWS // 2, "segment"] = "start-up"
    segment = by_name(drift_of(live, training_baseline))["segment"]
    assert segment["live"]["shares"][-1] == pytest.approx(0.5, abs=0.01)
    assert segment["drifted"]


def test_a_column_missing_from_live_traffic_says_so(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    feed(accumulator, applicants(1000, seed=7).drop(columns=["age"]))
    age = by_name(accumulator.result())["age"]
    assert age["psi"] is None
    assert age["reason"] == "not in live traffic"
    assert not age["drifted"]
    assert age["live"]["rows"] == 0


def test_no_predictions_yet_says_so(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    accumulator.add(["age"], [[40.0]])
    prediction = accumulator.result()["prediction"]
    assert prediction["psi"] is None and prediction["reason"] == "no predictions in live traffic"


def test_missing_and_non_numbers_are_a_missing_share_not_a_bin(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    accumulator.add(["age", "segment"], [[30.0, "sme"], [None, None], ["n/a", "sme"], [float("nan"), "retail"]])
    drifts = by_name(accumulator.result())
    assert drifts["age"]["live"]["rows"] == 4
    assert drifts["age"]["live"]["missing"] == pytest.approx(0.75)
    assert sum(drifts["age"]["live"]["shares"]) == pytest.approx(1.0)  # the one number
    assert drifts["segment"]["live"]["missing"] == pytest.approx(0.25)


def test_the_live_sample_represents_the_whole_window_not_its_start():
    summary = stats.baseline(pd.DataFrame({"x": np.arange(1000.0)}))
    accumulator = stats.DriftAccumulator(summary, reservoir=500)
    for start in range(0, 40_000, 100):
        accumulator.add(["x"], [[float(value)] for value in range(start, start + 100)])
    sample = accumulator.block.sample[0]
    assert sample.size == 500  # bounded, whatever the traffic
    assert len(set(sample.tolist())) == 500
    assert np.mean(sample >= 20_000) == pytest.approx(0.5, abs=0.1)


def test_predictions_that_are_labels_drift_as_categories():
    frame = pd.DataFrame({"x": range(1000)})
    summary = stats.baseline(frame, predictions=np.array([0] * 800 + [1] * 200))
    steady, shifted = stats.DriftAccumulator(summary), stats.DriftAccumulator(summary)
    for _ in range(10):
        steady.add_predictions([0] * 80 + [1] * 20)
        shifted.add_predictions([0] * 50 + [1] * 50)
    assert steady.result()["prediction"]["psi"] == pytest.approx(0.0, abs=1e-9)
    assert not steady.result()["prediction"]["drifted"]
    assert shifted.result()["prediction"]["test"] == "chi2"
    assert shifted.result()["prediction"]["drifted"]


def test_a_few_rows_of_a_rare_category_give_a_p_value_or_none_not_an_error(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    accumulator.add(["segment"], [["private"], ["private"]])
    segment = by_name(accumulator.result())["segment"]
    assert segment["p_value"] is None or 0.0 <= segment["p_value"] <= 1.0
    json.dumps(accumulator.result(), allow_nan=False)


# --- hostile input ---


def test_hostile_requests_are_counted_in_skipped_and_never_raise(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    columns = ["age", "income", "segment", "age", "password", 7, None]
    ok = [41.0, 52_000.0, "sme", "garbage", "secret", 1, 2]
    rows = [
        ok,
        [41.0, 52_000.0],  # ragged: too short
        [*ok, "extra"],  # ragged: too long
        "not a row",
        None,
        {"age": 40},
        ["abc", 10**400, ["nested"], 1.0, "x", 1, 2],  # not numbers, too big for a float, a list as a category
        [float("inf"), 1e308, {"a": 1}, 1.0, "x", 1, 2],  # infinity, a huge but finite number, a dict
        [float("nan"), "60000", "retail", 1.0, "x", 1, 2],  # NaN, a number written as text
    ]
    accumulator.add(columns, rows)
    accumulator.add("age", [[1.0]])  # columns not a list
    accumulator.add(["age"], "rows")  # rows not a list
    accumulator.add(["age"], [[1.0]] * 3)
    accumulator.add_predictions({"predictions": [0.5]})  # not a list
    accumulator.add_predictions([0.5, "high", [0.1, 0.9], None])
    result = accumulator.result()
    json.dumps(result, allow_nan=False)
    assert result["rows"] == 4 + 3
    assert result["skipped"] == {
        # two whole requests, and one add_predictions that was not a list
        "requests": 3,
        # two ragged, three not lists, one "rows" that was not a list of rows
        "rows": 5 + 1,
        # "abc", 10**400, inf (numeric); ["nested"], {"a": 1} (segment); "high", [0.1, 0.9] (predictions)
        "values": 3 + 2 + 2,
        # the repeated "age", "password", 7 and None in the first request
        "columns": 4,
        "unknown_columns": ["password"],
    }
    drifts = by_name(result)
    assert drifts["age"]["live"]["rows"] == 7
    # Missing age: "abc", inf and NaN of the first request's four rows; the three rows of age alone are numbers.
    assert drifts["age"]["live"]["missing"] == pytest.approx(3 / 7)
    # The repeated "age" column ("garbage", 1.0) is ignored: the first one is the feature.
    assert sum(drifts["age"]["live"]["shares"]) == pytest.approx(1.0)
    assert drifts["income"]["live"]["missing"] == pytest.approx(1 / 4)  # 10**400; 1e308 and "60000" are numbers
    assert drifts["segment"]["live"]["missing"] == pytest.approx(2 / 4)
    assert result["prediction"]["live"]["rows"] == 4
    assert result["prediction"]["live"]["missing"] == pytest.approx(3 / 4)


def test_an_unknown_column_name_is_remembered_cut_short_and_only_twenty_of_them(training_baseline):
    accumulator = stats.DriftAccumulator(training_baseline)
    for index in range(50):
        accumulator.add(["age", f"{index:02d}" + "x" * 1000], [[40.0, 1]])
    unknown = accumulator.result()["skipped"]["unknown_columns"]
    assert len(unknown) == 20
    assert all(len(name) == 100 for name in unknown)


def test_a_baseline_that_is_not_one_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="not a monitoring baseline"):
        stats.DriftAccumulator({"rows": 3})


# --- quality ---


@pytest.fixture(scope="module")
def outcomes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    truth = (rng.random(400) < 0.4).astype(int)
    probability = np.clip(0.4 * truth + rng.random(400) * 0.6, 0.01, 0.99)
    return truth, probability


def test_quality_on_probabilities_equals_scikit_learn(outcomes):
    truth, probability = outcomes
    figures = stats.quality(["auc", "log_loss", "accuracy"], probability.tolist(), truth.tolist())
    assert figures["auc"] == {"value": pytest.approx(roc_auc_score(truth, probability)), "reason": None}
    assert figures["log_loss"]["value"] == pytest.approx(log_loss(truth, probability))
    assert figures["accuracy"]["value"] == pytest.approx(accuracy_score(truth, probability > 0.5))


def test_quality_of_numbers_gives_rmse_as_scikit_learn():
    truth, predicted = [3.0, 5.5, 2.0, 8.0], [2.5, 5.0, 2.5, 9.0]
    assert stats.quality(["rmse"], predicted, truth)["rmse"]["value"] == pytest.approx(
        root_mean_squared_error(truth, predicted)
    )


def test_quality_of_labels_gives_accuracy_and_says_why_auc_needs_probabilities(outcomes):
    truth, probability = outcomes
    labels = (probability > 0.5).astype(int).tolist()
    figures = stats.quality(["accuracy", "auc", "log_loss"], labels, truth.tolist())
    assert figures["accuracy"]["value"] == pytest.approx(accuracy_score(truth, labels))
    for metric in ("auc", "log_loss"):
        assert figures[metric]["value"] is None
        assert "needs class probabilities but the model returns labels" in figures[metric]["reason"]


def test_quality_without_outcomes_or_of_an_unknown_metric_gives_reasons():
    assert stats.quality(["auc"], [], []) == {"auc": {"value": None, "reason": "no outcomes posted yet"}}
    assert "unknown metric 'f1'" in stats.quality(["f1"], [1], [1])["f1"]["reason"]
    with pytest.raises(ValueError, match="one outcome per prediction"):
        stats.quality(["accuracy"], [1, 0], [1])
