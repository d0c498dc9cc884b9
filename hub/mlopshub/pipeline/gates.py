"""Release gates: small checks a model version must pass before it is served in staging.

Each gate is a function returning a :class:`GateResult`: whether it passed,
the reason in words, and the fix for the person who published. Gates take
what they check as arguments (a loader, MLflow's model info, the run's tags,
metrics) so they need no server and are tested with real MLflow models in a
temporary folder. :func:`run_gates` runs all of them and reports every
result: a publisher fixes all problems in one go rather than one per publish.

Tags checked by the lineage gate are those the workspaces put on every run
(``mlopshub_lab.lineage``): ``mlopshub.git.commit``, ``mlopshub.git.dirty``,
``mlopshub.git.snapshot`` (the commit is a snapshot of a work tree with
uncommitted changes, on ``mlopshub.git.head``), ``mlopshub.data.<path>`` =
DVC hash, and ``mlopshub.data.count``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported by whoever builds the hold-out frame
    import pandas as pd

#: Metrics the hold-out evaluation computes, and so the names thresholds may use.
METRICS = ("accuracy", "auc", "log_loss", "rmse")
DATA_TAG = "mlopshub.data."
DATA_COUNT_TAG = "mlopshub.data.count"
COMMIT_TAG = "mlopshub.git.commit"
DIRTY_TAG = "mlopshub.git.dirty"
SNAPSHOT_TAG = "mlopshub.git.snapshot"
HEAD_TAG = "mlopshub.git.head"
BRANCH_TAG = "mlopshub.git.branch"
SKIPPED_TAG = "mlopshub.git.snapshot.skipped"
SNAPSHOT_ERROR_TAG = "mlopshub.git.snapshot.error"
#: Exception texts longer than this are cut: the reason is shown in a sidebar.
MAX_ERROR = 500

FIX_SIGNATURE = (
    "log the model with input_example=... so MLflow infers the signature, "
    "e.g. mlflow.sklearn.log_model(model, name='model', input_example=X_train.head(5))"
)
FIX_THRESHOLDS = "improve the model, or ask your team lead to review the thresholds in the catalog"


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate; ``fix`` says what to do when it failed, ``details`` what was measured."""

    name: str
    passed: bool
    reason: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (stored on the release, shown in the sidebar)."""
        data = asdict(self)
        data["details"] = dict(self.details)
        return data


@dataclass(frozen=True)
class HoldOut:
    """The team's hold-out dataset, read at a DVC version the metrics gate records."""

    frame: pd.DataFrame
    target: str
    path: str
    version: str


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


# --- the gates ---------------------------------------------------------------------------------------------------


def load_model(load: Callable[[], Any]) -> tuple[Any, GateResult]:
    """Call ``load`` once: the model (None if it failed) and the ``model_loads`` result."""
    try:
        model = load()
    except Exception as error:  # any failure to load is the gate's answer, not the pipeline's crash
        return None, GateResult(
            "model_loads",
            False,
            f"the model does not load: {_error_text(error)}",
            "check that the model was logged completely with mlflow.<flavor>.log_model, in an environment "
            "with the same library versions as the workspace, then publish again",
        )
    return model, GateResult("model_loads", True, f"the model loads ({type(model).__name__})")


def model_loads(load: Callable[[], Any]) -> GateResult:
    """Gate: ``load()`` (e.g. ``lambda: mlflow.pyfunc.load_model(uri)``) returns without an exception."""
    return load_model(load)[1]


def has_signature_and_example(model_info: Any) -> GateResult:
    """Gate: the model has a signature and an input example (an ``mlflow.models.get_model_info(uri)`` result).

    Serving needs the signature to check requests, and the staging page shows
    the input example as the ready-made request.
    """
    signature = getattr(model_info, "signature", None)
    example = getattr(model_info, "saved_input_example_info", None)
    if signature is not None and example is not None:
        return GateResult(
            "signature_and_example",
            True,
            "the model has a signature and an input example",
            details={"signature": signature.to_dict() if hasattr(signature, "to_dict") else str(signature)},
        )
    missing = [what for what, value in (("signature", signature), ("input example", example)) if value is None]
    if signature is None:
        fix = FIX_SIGNATURE
    else:
        fix = "log the model with input_example=... (a few rows of the training features) as well as its signature"
    return GateResult("signature_and_example", False, f"the model has no {' and no '.join(missing)}", fix)


def data_versions(tags: Mapping[str, str]) -> dict[str, str]:
    """The DVC data versions a run records, path -> hash (its ``mlopshub.data.<path>`` tags)."""
    return {
        key[len(DATA_TAG) :]: value for key, value in tags.items() if key.startswith(DATA_TAG) and key != DATA_COUNT_TAG
    }


def lineage_complete(
    tags: Mapping[str, str],
    pushed: Callable[[str, str], bool] | None = None,
    recorded: Callable[[str], Mapping[str, str | None]] | None = None,
) -> GateResult:
    """Gate: the run's code is a git commit and its input data is versioned by DVC (and pushed).

    The commit is a clean HEAD, or a snapshot commit the workspace made of a
    work tree with uncommitted changes (``mlopshub.git.snapshot=true``): both
    are the exact code. ``pushed(path, hash)`` says whether that data version
    is in the team's DVC remote; ``recorded(commit)`` reads the project at
    the commit (as the publisher) and answers what DVC records there for each
    dataset: the commit must be in the project and hold the run's data
    versions. Without them, only the tags are checked.
    """
    problems: list[str] = []
    fixes: list[str] = []
    commit = (tags.get(COMMIT_TAG) or "").strip()
    snapshot = bool(commit) and tags.get(DIRTY_TAG) == "true" and tags.get(SNAPSHOT_TAG) == "true"
    if not commit:
        problems.append(f"no git commit recorded on the run ({COMMIT_TAG})")
        fixes.append(
            "keep the notebook in a git repository with at least one commit in your workspace, and train again"
        )
    elif tags.get(DIRTY_TAG) != "false" and not snapshot:
        state = tags.get(DIRTY_TAG)
        error = tags.get(SNAPSHOT_ERROR_TAG)
        problems.append(
            f"the code had uncommitted changes when the model was trained and no snapshot of them was recorded "
            f"({DIRTY_TAG}={state!r} at {commit[:12]}{f'; {error}' if error else ''})"
            if state == "true"
            else f"the run does not say whether the code was committed ({DIRTY_TAG} is {state!r})"
        )
        fixes.append(
            "train again in a workspace (it records a snapshot of uncommitted code), or commit and train again"
        )
    data = data_versions(tags)
    if not data:
        problems.append(f"no input dataset versioned by DVC is recorded on the run ({DATA_TAG}<path>)")
        fixes.append("version the training data with dvc add <file> (and git commit the .dvc file), then train again")
    count = tags.get(DATA_COUNT_TAG)
    if count is not None and count.isdigit() and int(count) > len(data):
        problems.append(f"only {len(data)} of the {count} DVC data versions are recorded on the run")
        fixes.append("track fewer, larger datasets (e.g. dvc add a folder) so that every version is recorded")
    if commit and recorded is not None:
        _check_recorded(commit, data, recorded, problems, fixes)
    if pushed is not None:
        for path, digest in sorted(data.items()):
            try:
                present = pushed(path, digest)
            except Exception as error:  # an unreachable remote must fail the gate, not the pipeline
                problems.append(
                    f"could not check that {path} ({digest[:8]}) is in the team's DVC remote: {_error_text(error)}"
                )
                fixes.append("check the team's DVC remote is reachable, then publish again")
                continue
            if not present:
                problems.append(f"{path} at version {digest[:8]} is not in the team's DVC remote")
                fixes.append("push the data: dvc push")
    details: dict[str, Any] = {"commit": commit or None, "data": data, "snapshot": snapshot}
    if snapshot:
        details.update({"head": tags.get(HEAD_TAG), "branch": tags.get(BRANCH_TAG), "skipped": tags.get(SKIPPED_TAG)})
    if problems:
        return GateResult("lineage", False, "; ".join(problems), "; ".join(dict.fromkeys(fixes)), details)
    checked = " and pushed" if pushed is not None else ""
    if snapshot:
        head = tags.get(HEAD_TAG) or ""
        code = f"code at snapshot commit {commit[:12]} (uncommitted changes on {head[:12] or 'an unrecorded HEAD'})"
        if tags.get(SKIPPED_TAG):
            code += f", without {tags[SKIPPED_TAG]}"
    else:
        code = f"code at clean commit {commit[:12]}"
    return GateResult("lineage", True, f"{code}; {len(data)} dataset(s) versioned by DVC{checked}", details=details)


def _check_recorded(
    commit: str,
    data: Mapping[str, str],
    recorded: Callable[[str], Mapping[str, str | None]],
    problems: list[str],
    fixes: list[str],
) -> None:
    """Problems when ``commit`` is not readable in the project, or records other data versions than the run."""
    try:
        versions = recorded(commit)
    except Exception as error:  # an unknown commit, an unreadable project: the gate's answer
        problems.append(f"the run's commit {commit[:12]} cannot be read from its project: {_error_text(error)}")
        fixes.append("train again in the project (its commits and code snapshots stay in its git repository)")
        return
    for path, digest in sorted(data.items()):
        found = versions.get(path)
        if found != digest:
            problems.append(
                f"at commit {commit[:12]}, DVC records {path} as {found[:8] if found else 'untracked'}, "
                f"not the run's {digest[:8]}"
            )
            fixes.append("train again after dvc add of the data, so the commit records the version trained on")


def _json_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def metrics_meet_thresholds(metrics: Mapping[str, float], thresholds: Mapping[str, Mapping[str, float]]) -> GateResult:
    """Gate: every metric with a threshold is within it; thresholds look like ``{"auc": {"min": 0.75}}``.

    A metric with a threshold but no value fails: a gate must not pass what it did not measure.
    """
    failures: list[str] = []
    passes: list[str] = []
    for metric, bounds in thresholds.items():
        unknown = set(bounds) - {"min", "max"} if isinstance(bounds, Mapping) else {"(not a mapping)"}
        if unknown or not bounds:
            failures.append(f"the threshold for {metric} is {bounds!r}; expected {{min: <number>}} and/or {{max: ...}}")
            continue
        try:
            value = float(metrics[metric])
        except (KeyError, TypeError, ValueError):
            value = math.nan
        if math.isnan(value):
            failures.append(f"{metric} was not measured")
            continue
        for bound, limit in bounds.items():
            ok = value >= limit if bound == "min" else value <= limit
            text = f"{metric} {value:.4g} {'>=' if bound == 'min' else '<='} {bound} {limit:g}"
            if ok:
                passes.append(text)
            else:
                failures.append(f"{metric} {value:.4g} {'<' if bound == 'min' else '>'} {bound} {limit:g}")
    details = {
        # Plain floats, None for NaN: results are stored as JSON in the release and the audit log.
        "metrics": {name: _json_number(value) for name, value in metrics.items()},
        "thresholds": {k: dict(v) if isinstance(v, Mapping) else v for k, v in thresholds.items()},
    }
    if failures:
        return GateResult("metrics", False, "; ".join(failures), FIX_THRESHOLDS, details)
    if not thresholds:
        return GateResult("metrics", True, "the team sets no metric thresholds; nothing to check", details=details)
    return GateResult("metrics", True, "; ".join(passes), details=details)


# --- hold-out evaluation -------------------------------------------------------------------------------------------


def model_scores(model: Any, features: pd.DataFrame) -> Any:
    """What to evaluate a model on: class probabilities where the model gives them, else its predictions.

    An MLflow pyfunc scikit-learn classifier predicts labels, which make AUC
    and log loss meaningless; its raw model's ``predict_proba`` gives the scores.
    """
    raw = model
    if hasattr(model, "get_raw_model"):
        try:
            raw = model.get_raw_model()
        except Exception:  # not every flavor exposes its raw model; its predictions will do
            raw = model
    if hasattr(raw, "predict_proba"):
        return raw.predict_proba(features)
    return model.predict(features)


def _as_array(predictions: Any) -> np.ndarray:
    values = np.asarray(predictions.to_numpy() if hasattr(predictions, "to_numpy") else predictions)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values.ravel()
    return values


def _probability_like(scores: np.ndarray) -> bool:
    """Whether one column of predictions reads as the positive class's probability rather than labels."""
    if not np.issubdtype(scores.dtype, np.floating):
        return False
    # Labels stored as floats (0.0, 1.0) are whole numbers; probabilities almost never all are.
    return bool(np.all((scores >= 0) & (scores <= 1)) and np.any(scores != np.round(scores)))


def _probabilities(metric: str, y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class labels, index of each row's true class, probabilities per class) or ValueError naming the fix."""
    classes = np.unique(y)
    if scores.ndim == 1:
        if not _probability_like(scores):
            raise ValueError(
                f"{metric} needs class probabilities but the model returns labels; log a classifier that has "
                "predict_proba, or a pyfunc whose predict returns probabilities"
            )
        scores = np.column_stack([1 - scores, scores])
    if scores.shape[1] != len(classes):
        raise ValueError(
            f"the model gives {scores.shape[1]} class probabilities but the hold-out target has "
            f"{len(classes)} classes ({', '.join(map(str, classes))}); the hold-out set must contain every class"
        )
    return classes, np.searchsorted(classes, y), scores


def _metric(name: str, y: np.ndarray, scores: np.ndarray) -> float:
    # scikit-learn is imported here: the service imports the pipeline at start, and only gating scores a hold-out.
    from sklearn import metrics as skm

    if name == "rmse":
        if scores.ndim != 1:
            raise ValueError("rmse needs one number per row, but the model returns several columns")
        return float(skm.root_mean_squared_error(y.astype(float), scores.astype(float)))
    if name == "accuracy" and scores.ndim == 1 and not _probability_like(scores):
        return float(skm.accuracy_score(y, scores))
    classes, truth, probabilities = _probabilities(name, y, scores)
    if name == "accuracy":
        return float(skm.accuracy_score(y, classes[np.argmax(probabilities, axis=1)]))
    if name == "log_loss":
        return float(skm.log_loss(truth, probabilities, labels=list(range(len(classes)))))
    if len(classes) == 2:
        return float(skm.roc_auc_score(truth, probabilities[:, 1]))
    return float(skm.roc_auc_score(truth, probabilities, multi_class="ovr", labels=list(range(len(classes)))))


def evaluate_on_holdout(
    predict: Callable[[pd.DataFrame], Any], holdout: pd.DataFrame, target: str, metrics: Sequence[str]
) -> dict[str, float]:
    """Score ``predict`` on ``holdout`` (features = every column but ``target``): metric name -> value.

    ``predict`` returns labels, numbers, or class probabilities (one column per
    class, in sorted class order as scikit-learn gives them). Raises
    ValueError naming the metric or column and the fix when a metric cannot
    be computed.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; the hold-out evaluation computes: {', '.join(METRICS)}")
    if target not in holdout.columns:
        raise ValueError(
            f"the hold-out set has no column {target!r} (its columns: {', '.join(map(str, holdout.columns))}); "
            "name the label column as the hold-out target in the catalog"
        )
    if holdout.empty:
        raise ValueError("the hold-out set has no rows")
    y = holdout[target].to_numpy()
    scores = _as_array(predict(holdout.drop(columns=[target])))
    if len(scores) != len(y):
        raise ValueError(f"the model gave {len(scores)} predictions for {len(y)} hold-out rows")
    return {name: _metric(name, y, scores) for name in metrics}


# --- all gates ---------------------------------------------------------------------------------------------------


def _not_run(name: str, reason: str, fix: str) -> GateResult:
    return GateResult(name, False, reason, fix)


def run_gates(
    *,
    load: Callable[[], Any],
    model_info: Callable[[], Any],
    tags: Mapping[str, str],
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    holdout: Callable[[], HoldOut] | None = None,
    pushed: Callable[[str, str], bool] | None = None,
    predict: Callable[[Any, pd.DataFrame], Any] = model_scores,
    recorded: Callable[[str], Mapping[str, str | None]] | None = None,
) -> list[GateResult]:
    """Run every gate, in order, and return every result (a failure stops nothing).

    ``load`` loads the model (``lambda: mlflow.pyfunc.load_model(uri)``),
    ``model_info`` reads its metadata (``lambda: mlflow.models.get_model_info(uri)``),
    ``tags`` are the run's tags, ``thresholds`` the team's, ``holdout`` reads
    the team's hold-out set, ``pushed(path, hash)`` checks the DVC remote,
    ``predict(model, features)`` gives what the metrics are computed on and
    ``recorded(commit)`` the data versions the project records at the run's commit.
    """
    model, loads = load_model(load)
    results = [loads]
    try:
        results.append(has_signature_and_example(model_info()))
    except Exception as error:  # unreadable metadata fails this gate only
        results.append(
            _not_run(
                "signature_and_example",
                f"cannot read the model's metadata: {_error_text(error)}",
                "publish a model logged with mlflow.<flavor>.log_model",
            )
        )
    results.append(lineage_complete(tags, pushed, recorded))
    results.append(_metrics_gate(model, loads, thresholds or {}, holdout, predict))
    return results


def _metrics_gate(
    model: Any,
    loads: GateResult,
    thresholds: Mapping[str, Mapping[str, float]],
    holdout: Callable[[], HoldOut] | None,
    predict: Callable[[Any, pd.DataFrame], Any],
) -> GateResult:
    if not thresholds:
        return metrics_meet_thresholds({}, {})
    if holdout is None:
        return _not_run(
            "metrics",
            f"the team has thresholds ({', '.join(thresholds)}) but no hold-out dataset to measure them on",
            "name the team's hold-out dataset in the catalog (teams.<team>.release.holdout)",
        )
    if not loads.passed:
        return _not_run("metrics", "not measured: the model does not load", loads.fix)
    try:
        data = holdout()
    except Exception as error:
        return _not_run(
            "metrics",
            f"cannot read the hold-out dataset: {_error_text(error)}",
            "check the hold-out path and version in the catalog, and that it is pushed to the DVC remote",
        )
    source = {"path": data.path, "version": data.version, "rows": len(data.frame), "target": data.target}
    try:
        measured = evaluate_on_holdout(
            lambda features: predict(model, features), data.frame, data.target, list(thresholds)
        )
    except Exception as error:
        result = _not_run(
            "metrics",
            f"cannot measure the model on the hold-out set: {_error_text(error)}",
            "make the model accept the hold-out features and return what the metrics need",
        )
        return GateResult(**{**result.to_dict(), "details": {"holdout": source}})
    result = metrics_meet_thresholds(measured, thresholds)
    return GateResult(**{**result.to_dict(), "details": {**result.details, "holdout": source}})
