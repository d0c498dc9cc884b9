"""The batch scheduler: every minute, run each production batch model whose schedule is due.

The release store says which version is in production, so promoting or
rolling back a batch model switches what the scheduler runs without telling
it. Each run is a process of its own (``ReleaseRunner.start_batch``),
audited as ``batch run``. A run still in progress when its next time comes is
not started twice (the later time is skipped and logged). Times are UTC.
Minutes the service was down for are not caught up: run the model on demand
(``POST .../models/{name}/runs``) if one was missed.

Start it in the service with :func:`start_scheduler`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mlopshub.pipeline import Conflict, Release, State
from mlopshub.serving.schedule import ScheduleError, parse

from .runner import PIPELINE, ReleaseRunner

log = logging.getLogger("mlopshub.pipeline")


class BatchScheduler:
    """Runs production batch models on their schedules; ``clock`` gives the time (UTC)."""

    def __init__(self, runner: ReleaseRunner, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.runner = runner
        self.clock = clock
        # model -> the minute it was last started for, so a minute is never run twice.
        self._started: dict[str, datetime] = {}

    def due(self, now: datetime) -> list[Release]:
        """The production batch releases whose schedule fires in the minute of ``now`` and not yet started for it."""
        minute = now.replace(second=0, microsecond=0)
        found = []
        for release in self.runner.store.releases(state=State.PRODUCTION):
            schedule = (release.batch or {}).get("schedule") if release.kind == "batch" else None
            if not schedule or self._started.get(release.model_name) == minute:
                continue
            try:
                fires = parse(schedule).matches(minute)
            except ScheduleError:
                log.exception("release %s has a bad schedule %r; it is not run", release.id, schedule)
                continue
            if fires:
                found.append(release)
        return found

    def tick(self, now: datetime) -> list[asyncio.Task[dict[str, Any]]]:
        """Start the runs due at ``now`` (each in its own task); the tasks started."""
        minute = now.replace(second=0, microsecond=0)
        tasks = []
        for release in self.due(now):
            self._started[release.model_name] = minute
            try:
                tasks.append(self.runner.start_batch(release, "production", PIPELINE))
            except Conflict as busy:
                log.warning("scheduled run of %s skipped: %s", release.model_name, busy)
        return tasks

    async def run_forever(self) -> None:
        """Tick at the start of every minute until cancelled."""
        while True:
            try:
                self.tick(self.clock())
            except Exception:
                # A broken tick (the database locked too long) must not stop every later schedule.
                log.exception("batch scheduler tick failed")
            now = self.clock()
            next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            await asyncio.sleep(max((next_minute - now).total_seconds(), 0.0) + 0.05)


def start_scheduler(runner: ReleaseRunner) -> asyncio.Task[None]:
    """Start the batch scheduler of ``runner`` on the running event loop (in the service's ``serve``)."""
    return asyncio.get_running_loop().create_task(BatchScheduler(runner).run_forever())
