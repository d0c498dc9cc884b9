"""The models service's capture of requests and responses, off the request path.

An endpoint hands each answered request to :meth:`Capture.record`: a sampling draw and a ``put_nowait`` on a
bounded queue, nothing else on the event loop. One writer thread takes what is queued, reads the body as
MLflow's scoring protocol does (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV),
leaves out the model's excluded columns, and writes batches into the team's store (:mod:`.store`). So a
capture never blocks or fails a request: when the queue is full (the disk is slow, the writer is behind) the
record is dropped and counted, per model and stage, in the store and in ``mlopshub_capture_dropped_total``.

A record is durable once its batch is committed, at most :data:`FLUSH_SECONDS` after the answer was sent.
Stopping the service (:meth:`Capture.close`) writes what is queued first; a crash of the service loses at
most what was queued and not yet written, and never a committed record. The pipeline's restarts do not
touch the capture at all: it runs in the models service.

The capture settings (:class:`~.store.Settings`) are read from each team's store every
:data:`SETTINGS_SECONDS` seconds by the writer, so a change made in the pipeline applies within that time.
"""

from __future__ import annotations

import csv
import io
import logging
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import metrics
from .store import MonitoringStore, Settings, TeamStores, read_json, write_json

log = logging.getLogger("mlopshub.monitoring")

#: Records waiting to be written, at most; beyond that a record is dropped and counted.
QUEUE_SIZE = 10_000
#: Seconds between the writer's commits while records arrive; records per commit at most.
FLUSH_SECONDS = 0.2
BATCH = 1_000
#: Seconds between two reads of the capture settings, and between two retention sweeps.
SETTINGS_SECONDS = 5.0
SWEEP_SECONDS = 3600.0
#: A request body larger than this is captured without its rows (latency and status still count).
MAX_CAPTURED_BYTES = 8 << 20


@dataclass(frozen=True)
class Record:
    """One answered request, as the endpoint handed it over (the body is parsed by the writer)."""

    request_id: str
    team: str
    model: str
    version: str
    stage: str
    at: float
    latency_ms: float
    status: int
    content_type: str
    body: bytes
    answer: bytes
    source: str = "online"


class Capture:
    """The capture of one models service: :meth:`record` on the event loop, the writing in its own thread."""

    def __init__(self, folder: str | Path, *, queue_size: int = QUEUE_SIZE, rng: random.Random | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=queue_size)
        self._settings: dict[tuple[str, str], Settings] = {}
        self._stores = TeamStores(self.folder)
        self._dropped: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._random = rng or random.Random()
        self._written = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._write_loop, name="mlopshub-capture", daemon=True)
        self._thread.start()

    # --- on the event loop ---

    def settings(self, team: str, model: str) -> Settings:
        return self._settings.get((team, model), Settings())

    def record(self, record: Record) -> bool:
        """Queue ``record`` if its model's sampling draws it; never blocks. Whether it was queued."""
        if not record.team:
            return False
        rate = self.settings(record.team, record.model).sample_rate
        if rate < 1.0 and self._random.random() >= rate:
            return False
        with self._written:
            self._pending += 1
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._written:
                self._pending -= 1
            with self._lock:
                self._dropped[(record.team, record.model, record.stage)] += 1
            metrics.CAPTURE_DROPPED.labels(record.model, record.stage).inc()
            return False
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is written (or ``timeout``); whether it was. Call in a thread."""
        deadline = time.monotonic() + timeout
        with self._written:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._written.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout)

    def store(self, team: str) -> MonitoringStore:
        """``team``'s store (opened once; any thread)."""
        return self._stores(team)

    # --- the writer thread ---

    def _write_loop(self) -> None:
        next_settings = next_sweep = 0.0
        stopping = False
        while not stopping:
            now = time.monotonic()
            if now >= next_settings:
                self._read_settings()
                next_settings = now + SETTINGS_SECONDS
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + SWEEP_SECONDS
            batch: list[Record] = []
            try:
                first = self._queue.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                first = None
                self._write([])  # dropped counts, if any
                continue
            if first is None:
                stopping = True
            else:
                batch.append(first)
            deadline = time.monotonic() + FLUSH_SECONDS
            while not stopping and len(batch) < BATCH and time.monotonic() < deadline:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            self._write(batch)
        # Whatever was queued behind the stop marker.
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        self._write(rest)

    def _write(self, batch: list[Record]) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, Counter()
        by_team: dict[str, list[tuple[Any, ...]]] = {}
        for record in batch:
            try:
                row = self._row(record)
            except Exception:  # a body nobody foresaw must not stop the writer: counted as dropped
                log.exception("could not read a request of %s/%s for its capture", record.model, record.stage)
                metrics.CAPTURE_DROPPED.labels(record.model, record.stage).inc()
                continue
            by_team.setdefault(record.team, []).append(row)
        teams = set(by_team) | {team for team, _, _ in dropped}
        for team in teams:
            counts = {(model, stage): n for (owner, model, stage), n in dropped.items() if owner == team}
            rows = by_team.get(team, [])
            try:
                self.store(team).add_captures(rows, counts)
            except Exception:  # a full disk must not stop the writer: count them as dropped and go on
                log.exception("could not write %d capture(s) of team %s", len(rows), team)
                for row in rows:
                    metrics.CAPTURE_DROPPED.labels(row[1], row[3]).inc()
                continue
            for row in rows:
                metrics.CAPTURE_RECORDS.labels(row[1], row[3]).inc()
        if batch:
            with self._written:
                self._pending -= len(batch)
                self._written.notify_all()
        metrics.CAPTURE_QUEUE.set(self._queue.qsize())

    def _row(self, record: Record) -> tuple[Any, ...]:
        excluded = self.settings(record.team, record.model).exclude_columns
        inputs = outputs = None
        rows = 0
        if len(record.body) <= MAX_CAPTURED_BYTES:
            table = scoring_rows(record.body, record.content_type)
            if table is not None:
                columns, data = without_columns(table[0], table[1], excluded)
                inputs = write_json({"columns": columns, "data": data})
                rows = len(data) if inputs is not None else 0
            predictions = predictions_of(record.answer) if record.status < 400 else None
            if predictions is not None:
                outputs = write_json(predictions)
        return (record.request_id, record.model, record.version, record.stage, record.at, record.latency_ms,
                record.status, rows, inputs, outputs, record.source)  # fmt: skip

    def _read_settings(self) -> None:
        found: dict[tuple[str, str], Settings] = {}
        for team in self._stores.teams():
            try:
                for model, settings in self.store(team).all_settings().items():
                    found[(team, model)] = settings
            except Exception:
                log.exception("could not read the capture settings of team %s", team)
        self._settings = found

    def _sweep(self) -> None:
        for team in self._stores.teams():
            try:
                removed = self.store(team).sweep()
            except Exception:
                log.exception("could not remove old captures of team %s", team)
                continue
            if removed:
                log.info("removed %d capture(s) of team %s past their retention", removed, team)


# --- MLflow's scoring protocol, read for the capture ---


def scoring_rows(body: bytes, content_type: str) -> tuple[list[str], list[list[Any]]] | None:
    """The request's rows as ``(columns, rows)``, or None when the body is not a table the protocol knows.

    Never raises: the body is the caller's, and a capture must not fail a request (the model server already
    answered it).
    """
    try:
        if content_type.split(";")[0].strip().lower() == "text/csv":
            reader = list(csv.reader(io.StringIO(body.decode("utf-8", "replace"))))
            return (reader[0], [list(row) for row in reader[1:]]) if reader else None
    except (ValueError, RecursionError):
        return None
    payload = read_json(body)
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("dataframe_split"), dict):
        split = payload["dataframe_split"]
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and isinstance(data, list) and all(isinstance(row, list) for row in data):
            return [str(c) for c in columns], data
        return None
    for key in ("dataframe_records", "instances", "inputs"):
        if key in payload:
            return _rows_of(payload[key])
    return None


def _rows_of(value: Any) -> tuple[list[str], list[list[Any]]] | None:
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        columns = list(dict.fromkeys(str(key) for item in value for key in item))
        return columns, [[item.get(column) for column in columns] for item in value]
    if isinstance(value, dict) and value and all(isinstance(item, list) for item in value.values()):
        columns = [str(key) for key in value]
        length = max(len(item) for item in value.values())
        return columns, [[column[i] if i < len(column) else None for column in value.values()] for i in range(length)]
    if isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        width = max(len(item) for item in value)
        return [str(i) for i in range(width)], value
    return None


def without_columns(
    columns: list[str], data: list[list[Any]], excluded: tuple[str, ...]
) -> tuple[list[str], list[list[Any]]]:
    """``columns`` and ``data`` with the ``excluded`` columns taken out (before anything is written)."""
    if not excluded:
        return columns, data
    keep = [i for i, column in enumerate(columns) if column not in excluded]
    return [columns[i] for i in keep], [[row[i] for i in keep if i < len(row)] for row in data]


def predictions_of(answer: bytes) -> list[Any] | None:
    """The model server's predictions (``{"predictions": [...]}``), or None."""
    payload = read_json(answer)
    predictions = payload.get("predictions") if isinstance(payload, dict) else payload
    return predictions if isinstance(predictions, list) else None
