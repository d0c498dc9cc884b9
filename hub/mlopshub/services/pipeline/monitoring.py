"""The pipeline's side of production monitoring: baselines at release, drift checks, the API's answers.

* At release (:meth:`ModelMonitoring.take_baseline`, once the gates passed): the distributions of the training
  data version the lineage gate checked (the run's ``mlopshub.data.<path>`` tags, read from the run's project at
  the run's commit as the publisher, as the gates read the hold-out set) and of the model's predictions on the
  hold-out set (handed back by the gate process), kept in the team's store with the version. A baseline that
  cannot be taken is kept as the reason why, which the Monitoring view shows.
* Drift (:meth:`ModelMonitoring.check`): on request, and every :data:`CHECK_SECONDS` for every served stage
  over the last day (:meth:`ModelMonitoring.run`). A check that finds drift where the stage's previous check
  did not is an audit entry ("drift detected"), and the model is marked drifted in the sidebar until a check
  finds none.
* :meth:`ModelMonitoring.overview` answers ``GET /api/monitoring/{model}``; who may read what is the API's
  (a team's members their team's models, model risk every team's).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlopshub.monitoring import stats
from mlopshub.monitoring.monitor import (
    Monitor,
    MonitoringError,
    Served,
    check_window,
    epoch_of,
    served_stages,
    tracked_metrics,
    unchecked_drift,
)
from mlopshub.monitoring.store import write_json
from mlopshub.pipeline import Release
from mlopshub.pipeline.gates import COMMIT_TAG, data_versions

log = logging.getLogger("mlopshub.pipeline")

#: Seconds between two scheduled drift checks of every served stage (``MLOPSHUB_DRIFT_CHECK_SECONDS``).
CHECK_SECONDS = 3600.0
#: Training rows a baseline reads at most (a uniform sample beyond that).
BASELINE_ROWS = 200_000
#: The largest batch output monitoring captures (a larger one is counted in the run, not captured).
MAX_BATCH_BYTES = 256 << 20


class ModelMonitoring:
    """Monitoring for the release runner ``runner`` (its store, teams, projects and audit log)."""

    def __init__(self, runner: Any, monitor: Monitor, *, check_seconds: float = CHECK_SECONDS):
        self.runner = runner
        self.monitor = monitor
        self.check_seconds = check_seconds
        #: (model, stage) -> drifted at the last check: an audit entry is written when it turns true.
        self._drifted: dict[tuple[str, str], bool] = {}

    # --- at release ---

    async def take_baseline(self, release: Release, tags: Mapping[str, str], predictions: list[Any] | None) -> None:
        """Keep ``release``'s baseline (or why there is none) in its team's store; never fails the release."""
        try:
            data = await asyncio.to_thread(self._baseline, release, tags, predictions)
        except Exception as error:  # a release goes on without a baseline: monitoring says why
            log.exception("no baseline for %s version %s", release.model_name, release.version)
            data = {"unavailable": f"the baseline could not be taken at release: {type(error).__name__}: {error}"}
        store = self.monitor.store(release.team)
        await asyncio.to_thread(store.save_baseline, release.model_name, release.version, release.id, data)
        if data.get("unavailable"):
            self.runner._audit("baseline unavailable", release, reason=data["unavailable"])
        else:
            self.runner._audit(
                "baseline taken", release, data=data.get("data"), rows=data.get("rows"),
                features=sorted(data.get("features") or {}),
            )  # fmt: skip

    def _baseline(self, release: Release, tags: Mapping[str, str], predictions: list[Any] | None) -> dict[str, Any]:
        versions = data_versions(tags)
        if not versions:
            return {"unavailable": "the run records no DVC data version, so there is no training data to compare with"}
        projects = self.runner.projects
        from .runner import PROJECT_TAG

        repo = tags.get(PROJECT_TAG)
        commit = tags.get(COMMIT_TAG)
        if projects is None or not repo or not commit:
            return {"unavailable": "the run records no project and commit to read its training data from"}
        project = projects.resolve(release.publisher, repo, release.team)
        team = self.runner.teams.get(release.team)
        holdout = getattr(team, "holdout", None) or {}
        # The training data: a CSV the run versioned that is not the team's hold-out set (which the gates read).
        readable = sorted(
            path for path in versions if path.lower().endswith(".csv") and path != holdout.get("path")
        ) or sorted(path for path in versions if path.lower().endswith(".csv"))
        if not readable:
            return {
                "unavailable": f"the training data ({', '.join(sorted(versions))}) is not a CSV file; drift is "
                "computed for CSV training data"
            }
        path = readable[0]
        frame = projects.read(project, path, commit).frame()
        if len(frame) > BASELINE_ROWS:
            frame = frame.sample(BASELINE_ROWS, random_state=0)
        target = holdout.get("target")
        if target and target in frame.columns:
            frame = frame.drop(columns=[target])
        summary = stats.baseline(frame, predictions=predictions)
        return {**summary, "data": {path: versions[path]}, "commit": commit}

    # --- batch runs ---

    async def capture_batch(self, release: Release, run: Mapping[str, Any], folder: Path, name: str) -> None:
        """Capture a finished batch run's output (its input columns and ``prediction``) as one record of its stage.

        The output was written by model code: it is read without following links (``read_output``), at most
        :data:`MAX_BATCH_BYTES`, as data only; a run monitoring cannot read is logged, never failed.
        """
        try:
            await asyncio.to_thread(self._capture_batch, release, run, folder, name)
        except Exception as error:
            log.warning("batch run %s of %s not captured: %s", run.get("run"), release.model_name, str(error)[:300])

    def _capture_batch(self, release: Release, run: Mapping[str, Any], folder: Path, name: str) -> None:
        import io

        import pandas as pd

        from .runner import read_output

        frame = pd.read_csv(io.BytesIO(read_output(folder, name, limit=MAX_BATCH_BYTES)))
        predictions = frame.pop("prediction").tolist() if "prediction" in frame.columns else None
        settings = self.monitor.store(release.team).settings(release.model_name)
        frame = frame.drop(columns=[c for c in settings.exclude_columns if c in frame.columns])
        table = frame.astype(object).where(pd.notna(frame), None)
        started, finished = epoch_of(run.get("started")), epoch_of(run.get("finished")) or time.time()
        row = (
            str(run["run"]), release.model_name, str(release.version), str(run["stage"]), finished,
            max(0.0, finished - started) * 1000.0, 200, len(frame),
            write_json({"columns": [str(c) for c in table.columns], "data": table.values.tolist()}),
            write_json(predictions) if predictions is not None else None, "batch",
        )  # fmt: skip
        self.monitor.store(release.team).add_captures([row])

    # --- drift ---

    def thresholds(self, team: str) -> dict[str, float]:
        settings = self.runner.teams.get(team)
        return dict(getattr(settings, "drift", None) or {})

    def served(self, model: str, stage: str | None = None) -> Served:
        """The served ``stage`` of ``model`` (production when there is one, else staging); 404 when none."""
        stages = served_stages(self.runner.store, model)
        if stage is not None and stage not in ("production", "staging"):
            raise MonitoringError(f"stage must be production or staging, not {stage[:50]!r}", field="stage")
        chosen = stages.get(stage) if stage else (stages.get("production") or stages.get("staging"))
        if chosen is None:
            raise MonitoringError(
                f"{model} has no {stage or 'production or staging'} version served now: nothing to monitor",
                status=404,
            )
        return chosen

    async def check(self, served: Served, window: str, actor: str) -> dict[str, Any]:
        """Compute ``served``'s drift over ``window`` now (in the monitor's low-priority thread) and keep it."""
        since, until = self.monitor.period(check_window(window), served)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.monitor.executor, self.monitor.drift, served, window, since, until, self.thresholds(served.team)
        )
        key = (served.model, served.stage)
        was = self._drifted.get(key)
        if was is None:
            last = self.monitor.history(served, 0)
            was = bool(last[-2]["drifted"]) if len(last) >= 2 else False
        if result.get("available") and result.get("rows"):
            self._drifted[key] = bool(result["drifted"])
            if result["drifted"] and not was:
                features = [item["name"] for item in result.get("features") or [] if item.get("drifted")]
                if (result.get("prediction") or {}).get("drifted"):
                    features.append("predictions")
                self.runner._audit(
                    "drift detected", served.release, actor=actor, stage=served.stage, window=window,
                    features=features, thresholds=result.get("thresholds"),
                )  # fmt: skip
            elif was and not result["drifted"]:
                self.runner._audit("drift cleared", served.release, actor=actor, stage=served.stage, window=window)
        return result

    async def run(self) -> None:
        """Until cancelled: check every served stage over the last day, every :attr:`check_seconds`."""
        while True:
            await asyncio.sleep(self.check_seconds)
            for model in sorted(self.models()):
                for served in served_stages(self.runner.store, model).values():
                    try:
                        await self.check(served, "day", "pipeline")
                    except Exception:
                        log.exception("scheduled drift check of %s/%s failed", served.model, served.stage)

    def models(self) -> set[str]:
        from mlopshub.pipeline import State

        return {release.model_name for release in self.runner.store.releases() if release.state in (
            State.PRODUCTION, State.STAGING, State.AWAITING_APPROVAL, State.APPROVED)}  # fmt: skip

    # --- answers ---

    def listing(self, may_read: Callable[[str], bool]) -> list[dict[str, Any]]:
        """Every served model the caller may read, with its stages and whether its last check found drift."""
        out = []
        for model in sorted(self.models()):
            stages = served_stages(self.runner.store, model)
            if not stages:
                continue
            team = next(iter(stages.values())).team
            if not may_read(team):
                continue
            drifted = False
            checked = None
            for served in stages.values():
                last = self.monitor.last_drift(served)
                if last is not None:
                    drifted = drifted or bool(last.get("drifted"))
                    checked = max(checked or 0, last.get("checked_at") or 0)
            captured = sum(self.monitor.capture(served)["captured"] for served in stages.values())
            out.append({
                "model": model, "team": team, "drifted": drifted, "checked_at": checked, "captured": captured,
                "stages": {stage: {"version": s.version, "since": s.since} for stage, s in stages.items()},
            })  # fmt: skip
        return out

    async def overview(self, model: str, stage: str | None, window: str) -> dict[str, Any]:
        served = self.served(model, stage)
        check_window(window)
        since, until = self.monitor.period(window, served)
        monitor = self.monitor
        team = self.runner.teams.get(served.team)
        metrics = tracked_metrics(list(getattr(team, "thresholds", None) or {}) or _gate_metric_names(served.release))
        traffic, capture, quality = await asyncio.gather(
            asyncio.to_thread(monitor.traffic, served, since, until),
            asyncio.to_thread(monitor.capture, served),
            asyncio.to_thread(monitor.quality, served, since, until, metrics),
        )
        drift = await asyncio.to_thread(self._last_drift_answer, served, since)
        return {
            "model": model, "team": served.team, "stage": served.stage, "version": served.version,
            "window": {"name": window, "since": since, "until": until},
            "traffic": traffic, "capture": capture, "drift": drift, "quality": quality,
        }  # fmt: skip

    def _last_drift_answer(self, served: Served, since: float) -> dict[str, Any]:
        last = self.monitor.last_drift(served)
        if last is None:
            baseline = self.monitor.store(served.team).baseline(served.model, served.version)
            last = unchecked_drift(served, baseline, self.thresholds(served.team))
        return {**last, "history": self.monitor.history(served, since)}


def _gate_metric_names(release: Release) -> list[str]:
    for result in release.gate_results or []:
        if result.get("name") == "metrics":
            return list((result.get("details") or {}).get("thresholds") or {})
    return []


def check_seconds_from(environ: Mapping[str, str]) -> float:
    """The drift check interval from ``MLOPSHUB_DRIFT_CHECK_SECONDS`` (default :data:`CHECK_SECONDS`)."""
    text = environ.get("MLOPSHUB_DRIFT_CHECK_SECONDS")
    if not text:
        return CHECK_SECONDS
    value = float(text)
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"MLOPSHUB_DRIFT_CHECK_SECONDS must be a number of seconds, at least 1, not {text!r}")
    return value
