"""Release gates, against real MLflow models logged to a tracking store in a temporary folder."""

import math
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from mlopshub.pipeline import ReleaseStore, State, validate_publish
from mlopshub.pipeline.gates import (
    HoldOut,
    evaluate_on_holdout,
    has_signature_and_example,
    lineage_complete,
    metrics_meet_thresholds,
    model_loads,
    model_scores,
    run_gates,
)

LINEAGE = {
    "mlopshub.git.commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    "mlopshub.git.dirty": "false",
    "mlopshub.data.data/loans.csv": "0123456789abcdef0123456789abcdef",
    "mlopshub.data.count": "1",
}
THRESHOLDS = {"auc": {"min": 0.75}, "log_loss": {"max": 0.5}, "accuracy": {"min": 0.7}}


@dataclass
class Logged:
    run_id: str
    tags: dict
    holdout: pd.DataFrame
    model: LogisticRegression

    def uri(self, name: str) -> str:
        return f"runs:/{self.run_id}/{name}"


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Logged:
    """One run holding the same classifier logged three ways: with an input example, a signature only, bare."""
    folder = tmp_path_factory.mktemp("mlflow")
    features, label = make_classification(
        n_samples=400, n_features=4, n_informative=3, n_redundant=0, n_clusters_per_class=1, random_state=0
    )
    frame = pd.DataFrame(features, columns=["income", "debt", "age", "tenure"]).assign(default=label)
    train, holdout = frame.iloc[:300], frame.iloc[300:].reset_index(drop=True)
    model = LogisticRegression().fit(train.drop(columns="default"), train["default"])
    x_train = train.drop(columns="default")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/m.db")
        experiment = mlflow.create_experiment("gates", artifact_location=(folder / "artifacts").as_uri())
        # pip_requirements given: inferring them imports and times the model, seconds per log.
        with mlflow.start_run(experiment_id=experiment, tags=LINEAGE) as run:
            mlflow.sklearn.log_model(
                model, name="full", input_example=x_train.head(5), pip_requirements=["scikit-learn"]
            )
            signature = infer_signature(x_train, model.predict(x_train))
            mlflow.sklearn.log_model(
                model, name="signature-only", signature=signature, pip_requirements=["scikit-learn"]
            )
            mlflow.sklearn.log_model(model, name="bare", pip_requirements=["scikit-learn"])
        tags = mlflow.get_run(run.info.run_id).data.tags
        yield Logged(run.info.run_id, tags, holdout, model)
        mlflow.set_tracking_uri(None)


def gates_for(logged: Logged, name: str, **overrides):
    uri = logged.uri(name)
    arguments = {
        "load": lambda: mlflow.pyfunc.load_model(uri),
        "model_info": lambda: mlflow.models.get_model_info(uri),
        "tags": logged.tags,
        "thresholds": THRESHOLDS,
        "holdout": lambda: HoldOut(logged.holdout, "default", "data/holdout.csv", "feedc0de"),
        "pushed": lambda path, digest: True,
    }
    return {result.name: result for result in run_gates(**{**arguments, **overrides})}


# --- real models through every gate -----------------------------------------------------------------------------


def test_model_with_example_clean_lineage_and_good_metrics_passes_every_gate(logged):
    results = gates_for(logged, "full")
    assert list(results) == ["model_loads", "signature_and_example", "lineage", "metrics"]
    assert {name: r.passed for name, r in results.items()} == dict.fromkeys(results, True)
    metrics = results["metrics"]
    assert metrics.details["holdout"] == {
        "path": "data/holdout.csv",
        "version": "feedc0de",
        "rows": 100,
        "target": "default",
    }
    assert metrics.details["metrics"]["auc"] > 0.75
    assert "auc" in metrics.reason and ">= min 0.75" in metrics.reason
    assert results["signature_and_example"].details["signature"]["inputs"]
    assert results["lineage"].reason == "code at clean commit a1b2c3d4e5f6; 1 dataset(s) versioned by DVC and pushed"


def test_model_without_signature_fails_with_the_fix_named(logged):
    result = has_signature_and_example(mlflow.models.get_model_info(logged.uri("bare")))
    assert not result.passed
    assert result.reason == "the model has no signature and no input example"
    assert "log the model with input_example=... so MLflow infers the signature" in result.fix


def test_model_with_a_signature_but_no_example_is_told_to_add_the_example(logged):
    result = has_signature_and_example(mlflow.models.get_model_info(logged.uri("signature-only")))
    assert not result.passed
    assert result.reason == "the model has no input example"
    assert "input_example=" in result.fix


def test_model_that_does_not_load_fails_with_the_error_and_every_other_gate_still_reports(logged):
    results = gates_for(logged, "not-there")
    assert not results["model_loads"].passed
    assert results["model_loads"].reason.startswith("the model does not load: ")
    assert "not-there" in results["model_loads"].reason
    assert not results["signature_and_example"].passed
    assert results["signature_and_example"].reason.startswith("cannot read the model's metadata")
    assert results["lineage"].passed
    assert results["metrics"].reason == "not measured: the model does not load"


def test_model_below_the_team_thresholds_fails_naming_each_metric_value_and_bound(logged):
    strict = {"auc": {"min": 0.999}, "log_loss": {"max": 0.01}, "accuracy": {"min": 0.5}}
    result = gates_for(logged, "full", thresholds=strict)["metrics"]
    measured = result.details["metrics"]
    assert not result.passed
    assert result.reason == (f"auc {measured['auc']:.4g} < min 0.999; log_loss {measured['log_loss']:.4g} > max 0.01")
    assert "thresholds in the catalog" in result.fix


def test_holdout_evaluation_scores_probabilities_as_scikit_learn_does(logged):
    loaded = mlflow.pyfunc.load_model(logged.uri("full"))
    features, truth = logged.holdout.drop(columns="default"), logged.holdout["default"]
    measured = evaluate_on_holdout(lambda x: model_scores(loaded, x), logged.holdout, "default", ["auc", "log_loss"])
    probabilities = logged.model.predict_proba(features)
    assert measured["auc"] == pytest.approx(roc_auc_score(truth, probabilities[:, 1]))
    assert measured["log_loss"] == pytest.approx(log_loss(truth, probabilities))


def test_auc_on_class_labels_is_refused_with_the_fix(logged):
    loaded = mlflow.pyfunc.load_model(logged.uri("full"))
    with pytest.raises(ValueError, match="auc needs class probabilities but the model returns labels"):
        evaluate_on_holdout(loaded.predict, logged.holdout, "default", ["auc"])
    # Accuracy is fine on labels.
    assert evaluate_on_holdout(loaded.predict, logged.holdout, "default", ["accuracy"])["accuracy"] > 0.7


def test_holdout_without_the_target_column_fails_the_metrics_gate_naming_it(logged):
    holdout = lambda: HoldOut(logged.holdout.drop(columns="default"), "default", "data/holdout.csv", "feedc0de")  # noqa: E731
    result = gates_for(logged, "full", holdout=holdout)["metrics"]
    assert not result.passed
    assert "the hold-out set has no column 'default'" in result.reason
    assert result.details["holdout"]["version"] == "feedc0de"


def test_thresholds_without_a_holdout_dataset_fail_naming_the_catalog_key(logged):
    result = gates_for(logged, "full", holdout=None)["metrics"]
    assert not result.passed
    assert result.fix == "name the team's hold-out dataset in the catalog (teams.<team>.release.holdout)"


def test_unreadable_holdout_fails_the_metrics_gate_only(logged):
    def holdout():
        raise FileNotFoundError("data/holdout.csv is not in the DVC cache")

    results = gates_for(logged, "full", holdout=holdout)
    assert [name for name, r in results.items() if not r.passed] == ["metrics"]
    assert "FileNotFoundError: data/holdout.csv is not in the DVC cache" in results["metrics"].reason


# --- pure gates ---------------------------------------------------------------------------------------------------


def test_model_loads_reports_the_loaders_exception_text():
    def load():
        raise ImportError("No module named 'xgboost'")

    result = model_loads(load)
    assert not result.passed
    assert result.reason == "the model does not load: ImportError: No module named 'xgboost'"
    assert model_loads(lambda: object()).passed


@pytest.mark.parametrize(
    ("change", "reason", "fix"),
    [
        ({"mlopshub.git.commit": None}, "no git commit recorded on the run", "git repository"),
        ({"mlopshub.git.dirty": "true"}, "uncommitted changes", "records a snapshot of uncommitted code"),
        ({"mlopshub.git.dirty": None}, "does not say whether the code was committed", "train again in a workspace"),
        ({"mlopshub.data.data/loans.csv": None}, "no input dataset versioned by DVC", "dvc add"),
        ({"mlopshub.data.count": "150"}, "only 1 of the 150 DVC data versions", "dvc add a folder"),
    ],
)
def test_incomplete_lineage_fails_with_the_reason_and_fix(change, reason, fix):
    tags = {k: v for k, v in {**LINEAGE, **change}.items() if v is not None}
    result = lineage_complete(tags)
    assert not result.passed
    assert reason in result.reason
    assert fix in result.fix


SNAPSHOT = {
    **LINEAGE,
    "mlopshub.git.commit": "5" * 40,
    "mlopshub.git.dirty": "true",
    "mlopshub.git.snapshot": "true",
    "mlopshub.git.head": LINEAGE["mlopshub.git.commit"],
    "mlopshub.git.branch": "main",
}


def test_a_snapshot_commit_of_uncommitted_code_passes_lineage_and_names_the_snapshot():
    asked = []

    def recorded(commit):
        asked.append(commit)
        return {"data/loans.csv": LINEAGE["mlopshub.data.data/loans.csv"]}

    result = lineage_complete(SNAPSHOT, lambda path, digest: True, recorded)
    assert result.passed, result.reason
    assert asked == ["5" * 40]
    assert result.reason == (
        "code at snapshot commit 555555555555 (uncommitted changes on a1b2c3d4e5f6); "
        "1 dataset(s) versioned by DVC and pushed"
    )
    assert result.details["commit"] == "5" * 40 and result.details["snapshot"] is True
    assert (result.details["head"], result.details["branch"]) == (LINEAGE["mlopshub.git.commit"], "main")


def test_a_snapshot_says_which_large_files_it_left_out():
    tags = {**SNAPSHOT, "mlopshub.git.snapshot.skipped": "1 untracked file(s) over 1048576 bytes: model.pkl"}
    result = lineage_complete(tags)
    assert result.passed and result.reason.endswith(
        "without 1 untracked file(s) over 1048576 bytes: model.pkl; 1 dataset(s) versioned by DVC"
    )


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        (
            ValueError("RevError: unknown Git revision '5555555555555555555555555555555555555555'"),
            "the run's commit 555555555555 cannot be read from its project: ValueError: RevError: unknown Git revision",
        ),
        (
            {"data/loans.csv": "f" * 32},
            "at commit 555555555555, DVC records data/loans.csv as ffffffff, not the run's 01234567",
        ),
        ({}, "at commit 555555555555, DVC records data/loans.csv as untracked, not the run's 01234567"),
    ],
)
def test_a_snapshot_not_in_the_project_or_with_other_data_fails_lineage(recorded, reason):
    def read(commit):
        if isinstance(recorded, Exception):
            raise recorded
        return recorded

    result = lineage_complete(SNAPSHOT, None, read)
    assert not result.passed
    assert result.reason.startswith(reason)
    assert "train again" in result.fix


def test_a_dirty_run_without_a_snapshot_still_fails_and_says_why():
    tags = {k: v for k, v in SNAPSHOT.items() if k != "mlopshub.git.snapshot"}
    tags["mlopshub.git.snapshot.error"] = "git add could not stage the work tree in a temporary index"
    result = lineage_complete(tags)
    assert not result.passed
    assert "uncommitted changes" in result.reason and "git add could not stage the work tree" in result.reason
    # A snapshot claim on a run that says its tree was clean is a clean commit, not a snapshot.
    clean = lineage_complete({**LINEAGE, "mlopshub.git.snapshot": "true"})
    assert clean.passed and clean.details["snapshot"] is False


def test_data_not_pushed_to_the_team_remote_fails_lineage():
    checked = []

    def pushed(path, digest):
        checked.append((path, digest))
        return False

    result = lineage_complete(LINEAGE, pushed)
    assert checked == [("data/loans.csv", "0123456789abcdef0123456789abcdef")]
    assert result.reason == "data/loans.csv at version 01234567 is not in the team's DVC remote"
    assert result.fix == "push the data: dvc push"


def test_unreachable_remote_fails_lineage_instead_of_crashing():
    def pushed(path, digest):
        raise ConnectionError("remote s3://team-bucket unreachable")

    result = lineage_complete(LINEAGE, pushed)
    assert not result.passed
    assert "ConnectionError: remote s3://team-bucket unreachable" in result.reason


@pytest.mark.parametrize(
    ("metrics", "thresholds", "passed", "reason"),
    [
        ({"auc": 0.8}, {"auc": {"min": 0.75}}, True, "auc 0.8 >= min 0.75"),
        (
            {"auc": 0.7, "log_loss": 0.6},
            THRESHOLDS,
            False,
            "auc 0.7 < min 0.75; log_loss 0.6 > max 0.5; accuracy was not measured",
        ),
        ({"auc": math.nan}, {"auc": {"min": 0.75}}, False, "auc was not measured"),
        ({"rmse": 3.0}, {"rmse": {"min": 1, "max": 2}}, False, "rmse 3 > max 2"),
        (
            {"auc": 0.9},
            {"auc": {"minimum": 0.75}},
            False,
            "the threshold for auc is {'minimum': 0.75}; expected {min: <number>} and/or {max: ...}",
        ),
        ({}, {}, True, "the team sets no metric thresholds; nothing to check"),
        ({"auc": np.float64(0.76)}, {"auc": {"min": 0.75}}, True, "auc 0.76 >= min 0.75"),
    ],
)
def test_metrics_are_checked_against_each_bound(metrics, thresholds, passed, reason):
    result = metrics_meet_thresholds(metrics, thresholds)
    assert result.passed is passed
    assert result.reason == reason


def test_rmse_is_computed_for_a_regression_model():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 9.0]})
    model = LinearRegression().fit(frame[["x"]], frame["y"])
    measured = evaluate_on_holdout(model.predict, frame, "y", ["rmse"])
    expected = math.sqrt(np.mean((model.predict(frame[["x"]]) - frame["y"]) ** 2))
    assert measured["rmse"] == pytest.approx(expected)


def test_unknown_metric_is_named_with_the_ones_available():
    frame = pd.DataFrame({"x": [1.0], "y": [1]})
    with pytest.raises(ValueError, match="unknown metric 'f1'; the hold-out evaluation computes: accuracy, auc"):
        evaluate_on_holdout(lambda x: [1], frame, "y", ["f1"])


def test_gate_results_of_a_real_model_are_stored_on_the_release_and_audited(logged, tmp_path):
    store = ReleaseStore(tmp_path / "pipeline.db")
    request = validate_publish(
        {"model_uri": logged.uri("bare"), "name": "credit-default", "kind": "online"},
        lambda run_id: "sme-credit" if run_id == logged.run_id else None,
    )
    release = store.create(request, version=1, publisher="pat")
    store.start_gating(release.id)
    results = run_gates(
        load=lambda: mlflow.pyfunc.load_model(logged.uri("bare")),
        model_info=lambda: mlflow.models.get_model_info(logged.uri("bare")),
        tags=logged.tags,
        thresholds={"auc": {"min": 0.99}, "rmse": {"max": 1}},
        holdout=lambda: HoldOut(logged.holdout, "default", "data/holdout.csv", "feedc0de"),
    )
    stopped = store.record_gate_results(release.id, results)
    assert stopped.state == State.GATES_FAILED
    assert [g["name"] for g in stopped.gate_results if not g["passed"]] == ["signature_and_example", "metrics"]
    assert stopped.reason.startswith(
        "signature_and_example: the model has no signature and no input example; metrics: "
    )
    assert store.audit.entries(release_id=release.id)[-1].details["gates"] == stopped.gate_results
