"""What the pipeline shows of a served model: traffic, drift against its training data, and quality.

:class:`Monitor` reads the teams' stores (:mod:`.store`) and computes, for one model's stage over a window
(the last day, the last week, or since the version was promoted):

* **traffic**: requests, errors and p50/p99 latency in time buckets (at most :data:`MAX_BUCKETS`);
* **drift**: each feature's and the predictions' population stability index and distribution test against
  the version's baseline (:mod:`.stats`), streamed from the captured rows in a thread of its own at a lower
  CPU priority, so the endpoints (another process) keep their share of the machine while it runs;
* **quality**: the team's gate metrics over the captures that have an outcome, per day, beside the value the
  metrics gate measured on the hold-out set at approval.

Each drift check is kept (the PSI over time), and a check that crosses the team's threshold where the one
before did not is reported to the caller (the runner records it in the audit log).

A version without a baseline (released before monitoring, or whose training data could not be read) still
shows traffic and latency; ``drift.available`` is false and ``drift.reason`` says why.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .metrics import DRIFT_SECONDS
from .store import TeamStores, read_json

WINDOWS = ("day", "week", "promotion")
WINDOW_SECONDS = {"day": 86400.0, "week": 7 * 86400.0}
#: Time buckets a traffic or quality series has at most.
MAX_BUCKETS = 48
#: Drift thresholds when the team sets none: PSI 0.2 (a shift worth a look), the test at 1%.
DEFAULT_PSI = 0.2
DEFAULT_P_VALUE = 0.01
#: The drift thread's niceness where SCHED_IDLE is not allowed: the endpoints (another process) come first.
DRIFT_NICENESS = 19


class MonitoringError(ValueError):
    """A monitoring request that cannot be answered: ``status`` is its HTTP answer, ``field`` the bad field."""

    def __init__(self, message: str, status: int = 422, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Served:
    """One stage of a model as the release store knows it: which version, since when, and its release."""

    model: str
    team: str
    stage: str
    version: str
    since: float
    release: Any  # mlopshub.pipeline.Release


#: Metrics that need the classes' probabilities, which an endpoint that answers labels does not give.
PROBABILITY_METRICS = ("auc", "log_loss")


def tracked_metrics(gate_metrics: list[str]) -> list[str]:
    """The quality metrics tracked over outcomes: the team's gate metrics and, for a classifier judged on
    probabilities (AUC, log loss), accuracy as well, which its endpoint's labels always allow."""
    names = list(dict.fromkeys(gate_metrics))
    if any(name in PROBABILITY_METRICS for name in names) and "accuracy" not in names:
        names.append("accuracy")
    return names


def check_window(name: str) -> str:
    if name not in WINDOWS:
        raise MonitoringError(f"window must be one of {', '.join(WINDOWS)}, not {name[:50]!r}", field="window")
    return name


def lower_priority(thread_id: int = 0) -> str:
    """Run the calling thread (or ``thread_id``) only on CPU time nothing else wants: Linux's ``SCHED_IDLE``, else
    niceness :data:`DRIFT_NICENESS`. A drift check then takes no CPU the endpoints could use. Returns which."""
    thread_id = thread_id or threading.get_native_id()
    try:
        os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, DRIFT_NICENESS)
        return f"nice {DRIFT_NICENESS}"
    except OSError:  # not allowed here: run at the normal priority
        return "normal"


def _nice_thread() -> None:
    lower_priority()


class Monitor:
    """The monitoring figures of the pipeline, from the teams' stores in ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.store = TeamStores(self.folder)
        # One drift check at a time, in a thread of lower priority (see the module's docstring).
        self.executor = concurrent.futures.ThreadPoolExecutor(1, "mlopshub-drift", initializer=_nice_thread)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- windows ---

    @staticmethod
    def period(window: str, served: Served, now: float | None = None) -> tuple[float, float]:
        now = time.time() if now is None else now
        if window == "promotion":
            return served.since, now
        return now - WINDOW_SECONDS[window], now

    # --- traffic ---

    def traffic(self, served: Served, since: float, until: float) -> dict[str, Any]:
        rows = self.store(served.team).traffic(served.model, served.stage, since, until)
        bucket = _bucket_seconds(until - since)
        series: list[dict[str, Any]] = []
        if rows:
            at = np.array([row[0] for row in rows])
            latency = np.array([row[1] for row in rows])
            errors = np.array([row[2] >= 400 for row in rows])
            keys = np.floor(at / bucket) * bucket
            for key in np.unique(keys):
                chosen = keys == key
                series.append({"t": float(key), "requests": int(chosen.sum()), "errors": int(errors[chosen].sum()),
                               **_percentiles(latency[chosen])})  # fmt: skip
            totals = {"requests": len(rows), "errors": int(errors.sum()), **_percentiles(latency)}
        else:
            totals = {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None}
        return {"bucket_seconds": bucket, **totals, "series": series}

    def capture(self, served: Served) -> dict[str, Any]:
        store = self.store(served.team)
        counts = store.counts(served.model, served.stage)
        return {"captured": counts["captured"], "dropped": counts["dropped"], **store.settings(served.model).to_dict()}

    # --- drift ---

    def drift(
        self, served: Served, window: str, since: float, until: float, thresholds: Mapping[str, float]
    ) -> dict[str, Any]:
        """Compute the drift of ``served`` over ``[since, until)`` now, keep it, and return it (blocks: a thread)."""
        store = self.store(served.team)
        baseline = store.baseline(served.model, served.version)
        answer = unchecked_drift(served, baseline, thresholds)
        if baseline is None or not answer["available"]:
            return answer
        limits = answer["thresholds"]
        started = time.monotonic()
        accumulator = stats.DriftAccumulator(baseline)
        for _, inputs, outputs in store.records(served.model, served.stage, since, until, served.version):
            # orjson (read_json): decoding the captured JSON is most of a check's time (bench/monitoring_bench.py).
            if inputs:
                table = read_json(inputs)
                if isinstance(table, dict):
                    accumulator.add(table.get("columns") or [], table.get("data") or [])
            if outputs and baseline.get("prediction") is not None:
                predictions = read_json(outputs)
                if isinstance(predictions, list):
                    accumulator.add_predictions(predictions)
        result = accumulator.result(psi_threshold=limits["psi"], p_threshold=limits["p_value"])
        DRIFT_SECONDS.observe(time.monotonic() - started)
        answer.update(result)
        answer.update(checked_at=time.time(), window={"name": window, "since": since, "until": until}, reason=None)
        if answer["rows"]:
            store.save_drift(served.model, served.version, served.stage, window, answer)
        else:
            answer["reason"] = "no captured requests in this window yet"
        return answer

    def last_drift(self, served: Served) -> dict[str, Any] | None:
        return self.store(served.team).latest_drift(served.model, served.stage, served.version)

    def history(self, served: Served, since: float) -> list[dict[str, Any]]:
        """The checks of ``served``'s version since ``since``, oldest first (PSI over time)."""
        return self.store(served.team).drift_history(served.model, served.stage, served.version, since)

    # --- quality ---

    def quality(self, served: Served, since: float, until: float, metrics: Iterable[str]) -> dict[str, Any]:
        names = list(metrics)
        approval = _approval_metrics(served.release)
        thresholds = _gate_thresholds(served.release)
        rows = self.store(served.team).outcomes(served.model, served.stage, since, until, served.version)
        answer: dict[str, Any] = {"available": False, "reason": None, "outcomes": 0, "metrics": [], "series": []}
        if not names:
            answer["reason"] = "the team sets no metric thresholds, so there is no quality metric to track"
            return answer
        predictions, outcomes, times = _pairs(rows)
        answer["outcomes"] = len(outcomes)
        if not outcomes:
            answer["reason"] = (
                f"no outcomes posted yet: post them to /services/models/{served.model}/outcomes with the request ids"
            )
            return answer
        figures = stats.quality(names, predictions, outcomes)
        answer["available"] = True
        answer["metrics"] = [
            {"name": name, "value": figures[name]["value"], "reason": figures[name].get("reason"),
             "approval": approval.get(name), "threshold": thresholds.get(name)}
            for name in names
        ]  # fmt: skip
        bucket = max(86400.0, _bucket_seconds(until - since))
        keys = np.floor(np.array(times) / bucket) * bucket
        for key in np.unique(keys):
            chosen = [i for i, k in enumerate(keys) if k == key]
            values = stats.quality(names, [predictions[i] for i in chosen], [outcomes[i] for i in chosen])
            answer["series"].append({"t": float(key), "values": {n: values[n]["value"] for n in names}})
        return answer


def unchecked_drift(served: Served, baseline: Mapping[str, Any] | None, thresholds: Mapping[str, float]) -> dict:
    """The drift answer before a check: unavailable and why (no baseline), or available with the baseline."""
    answer: dict[str, Any] = {
        "available": False, "reason": None, "baseline": None, "checked_at": None, "drifted": False, "rows": 0,
        "features": [], "prediction": None, "history": [],
        "thresholds": {"psi": float(thresholds.get("psi", DEFAULT_PSI)),
                       "p_value": float(thresholds.get("p_value", DEFAULT_P_VALUE))},
    }  # fmt: skip
    if baseline is None or baseline.get("unavailable"):
        answer["reason"] = (baseline or {}).get("unavailable") or (
            f"version {served.version} of {served.model} has no baseline: it was released before monitoring "
            "existed; publish it again to take one from its training data"
        )
        return answer
    answer.update(
        available=True,
        baseline={"data": baseline.get("data") or {}, "rows": baseline.get("rows")},
        reason="not checked yet: check drift now, or wait for the hourly check",
    )
    return answer


def _pairs(rows: Iterable[tuple[float, str | None, str]]) -> tuple[list[Any], list[Any], list[float]]:
    """Row by row: each captured prediction with its posted outcome, and the capture's time."""
    predictions: list[Any] = []
    outcomes: list[Any] = []
    times: list[float] = []
    for at, outputs, value in rows:
        answered = read_json(outputs) if outputs else None
        truth = read_json(value)
        if not isinstance(answered, list) or len(answered) != len(truth):
            continue
        for predicted, actual in zip(answered, truth, strict=True):
            predictions.append(predicted)
            outcomes.append(actual)
            times.append(at)
    return predictions, outcomes, times


def _approval_metrics(release: Any) -> dict[str, float | None]:
    for result in getattr(release, "gate_results", None) or []:
        if result.get("name") == "metrics":
            return dict((result.get("details") or {}).get("metrics") or {})
    return {}


def _gate_thresholds(release: Any) -> dict[str, Any]:
    for result in getattr(release, "gate_results", None) or []:
        if result.get("name") == "metrics":
            return dict((result.get("details") or {}).get("thresholds") or {})
    return {}


def _bucket_seconds(span: float) -> float:
    """A round bucket (minutes, hours or days) that cuts ``span`` into at most :data:`MAX_BUCKETS`."""
    for size in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400):
        if span / size <= MAX_BUCKETS:
            return float(size)
    return float(math.ceil(span / MAX_BUCKETS))


def _percentiles(latency: np.ndarray) -> dict[str, float | None]:
    if latency.size == 0:
        return {"p50_ms": None, "p99_ms": None}
    p50, p99 = np.percentile(latency, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def served_stages(store: Any, model: str) -> dict[str, Served]:
    """The stages of ``model`` served now, from the release store: production and, while a release is in staging,
    staging (with the time each began)."""
    from mlopshub.pipeline import State

    found: dict[str, Served] = {}
    production = store.production(model)
    if production is not None:
        found["production"] = Served(
            model, production.team, "production", str(production.version), epoch_of(production.promoted), production
        )
    in_flight = store.in_flight(model)
    if in_flight is not None and in_flight.state in (State.STAGING, State.AWAITING_APPROVAL, State.APPROVED):
        found["staging"] = Served(
            model,
            in_flight.team,
            "staging",
            str(in_flight.version),
            epoch_of(_step_time(in_flight, "staging")),
            in_flight,
        )
    return found


def _step_time(release: Any, name: str) -> str | None:
    for step in release.steps:
        if step.get("name") == name:
            return step.get("at") or step.get("started") or step.get("finished")
    return release.created


def epoch_of(text: str | None) -> float:
    from datetime import datetime

    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0
