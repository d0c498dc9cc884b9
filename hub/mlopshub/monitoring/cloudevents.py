"""The capture on Kubernetes: a sink for KServe's payload logger, writing what it hears as the one-machine capture does.

Each InferenceService's predictor has KServe's payload logger (``logger: {mode: all}``,
:func:`mlopshub.serving.kserve.inference_service`). KServe's agent, beside the model server in the predictor's pod,
posts two CloudEvents per scoring request to ``{prefix}capture`` (KServe's ``pkg/logger``, commit aaac4e29), in
binary mode: the event's attributes are headers, its data is the body.

=========================== ==================================================================================
``ce-specversion``          ``1.0``
``ce-id``                   the request's id (the caller's ``Ce-Id`` header, else a UUID): the same on both events
``ce-type``                 ``org.kubeflow.serving.inference.request`` or ``org.kubeflow.serving.inference.response``
``ce-source``               the predictor's pod
``ce-time``                 when the request arrived, or when the answer was complete (RFC 3339)
``ce-inferenceservicename`` the InferenceService (:func:`mlopshub.serving.names.inference_service_name`)
``ce-namespace``            its namespace; ``ce-component`` ``predictor``; ``ce-endpoint`` (not used here)
``Content-Type``            the request's, on both events; the body is the request's, or the answer's
=========================== ==================================================================================

The agent sends the answer only when the model server answered 200, so a request whose answer never comes was
refused or failed: the sink pairs the two halves by InferenceService and ``ce-id`` and waits
:data:`PAIR_SECONDS` for the other half, in a table bounded in entries and bytes; a half left alone is dropped and
counted as a dropped capture (``mlopshub_capture_dropped_total`` and the store's dropped count), never kept. A pair
becomes one :class:`~.capture.Record` handed to the :class:`~.capture.Capture` (sampling, excluded columns, the
writer thread and the team's store are the one-machine capture's), with the latency between the two ``ce-time``,
and is counted in ``mlopshub_model_requests_total`` and ``mlopshub_model_request_duration_seconds``.

The InferenceService's name is turned back into (model, stage, version, team) by ``route``, from the pipeline's
release store (:class:`ReleaseRoutes`): an unknown name is refused with 404 and counted, never stored.

Everything in an event is the sender's and treated as hostile: each header is checked for form and length, a body
beyond :data:`MAX_BODY_BYTES` is captured without its rows (beyond :data:`MAX_TRANSFER_BYTES` the connection is
closed), a body that is no table is captured without rows, and a refusal is a 4xx naming the header, never a 500.
The logger cannot send credentials, so the sink cannot authenticate its callers: it is served on a port of its own
(``MLOPSHUB_CAPTURE_PORT``, 8090: :func:`mlopshub.services.pipeline.service.capture_sink_app`), never on the API's,
and the pipeline's NetworkPolicy opens that port to the models' predictors only (workspaces reach the API's port
alone). An event that came through the hub's proxy (which adds ``X-Forwarded-For``) is refused all the same.

KServe's MLflow runtime (MLServer) is called with the V2 protocol or MLflow's: a V2 request whose inputs are named
columns (one tensor per column, shape ``[n]`` or ``[n, 1]``) is read into columns and rows, and a V2 answer's single
output into predictions; a V2 request of unnamed columns (one ``[n, k]`` tensor) keeps latency and status only.
MLflow's formats are read by the capture's writer as on one machine (:func:`~.capture.scoring_rows`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from prometheus_client import Counter as PrometheusCounter
from tornado import httputil, web

from mlopshub.serving.kserve import NAMESPACE
from mlopshub.serving.names import KSERVE_NAME, inference_service_name

from . import metrics
from .capture import MAX_CAPTURED_BYTES, Capture, Record

log = logging.getLogger("mlopshub.monitoring")

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
#: Seconds a half waits for the other (the agent sends both within milliseconds unless the model failed).
PAIR_SECONDS = 60.0
#: Halves waiting at most, and the bytes of their bodies at most (beyond, a half waits without its body).
MAX_PENDING = 10_000
MAX_PENDING_BYTES = 64 << 20
#: A body larger than this is captured without its rows (as one machine does); larger than the second, refused.
MAX_BODY_BYTES = MAX_CAPTURED_BYTES
MAX_TRANSFER_BYTES = 32 << 20
#: How far an event's ``ce-time`` may be from this pod's clock (seconds).
MAX_CLOCK_SKEW = 600.0
#: Bodies larger than this are converted in a thread, not on the event loop.
INLINE_BYTES = 64 << 10

#: ``ce-id``: a UUID from KServe, or the caller's own ``Ce-Id``; it becomes the capture's request id (<= 100).
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
#: Headers a proxy adds: the sink is called by the predictors directly, never through the hub's proxy.
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded")

#: ``route(isvc_name) -> (model, stage, version, team)`` or None for a name the pipeline does not serve.
Route = Callable[[str], tuple[str, str, str, str] | None]

REFUSED = PrometheusCounter(
    "mlopshub_capture_refused",
    "Payload-logger events the capture sink refused: unknown InferenceService, malformed event, or via the proxy",
    ["reason"],
)


class EventRefused(web.HTTPError):
    """An event refused: ``reason`` is the metric's label, ``message`` names the header at fault and what it needs."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(status, "%s", message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Half:
    """One event: the request or the answer of one scoring call, of a served (model, stage)."""

    kind: str  # REQUEST or RESPONSE
    isvc: str
    event_id: str
    model: str
    stage: str
    version: str
    team: str
    at: float  # ce-time, epoch seconds
    content_type: str
    body: bytes = b""
    arrived: float = 0.0  # the sink's clock

    @property
    def key(self) -> tuple[str, str]:
        return self.isvc, self.event_id


class CaptureSink:
    """Pairs the payload logger's halves and hands each pair to ``capture`` (see the module's docstring).

    ``clock`` measures how long a half has waited (monotonic); ``now`` is the wall clock ``ce-time`` is checked
    against. Both are arguments so that a test can let a half expire without waiting a minute.
    """

    def __init__(
        self,
        capture: Capture,
        route: Route,
        *,
        namespace: str = NAMESPACE,
        pair_seconds: float = PAIR_SECONDS,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ):
        self.capture = capture
        self.route = route
        self.namespace = namespace
        self.pair_seconds = pair_seconds
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.clock = clock
        self.now = now
        self._pending: OrderedDict[tuple[str, str], Half] = OrderedDict()
        self._bytes = 0
        self._lost: Counter[tuple[str, str, str]] = Counter()
        self._lost_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Halves waiting for their other half now."""
        return len(self._pending)

    # --- reading an event's headers ---

    def half(self, headers: httputil.HTTPHeaders) -> Half:
        """The event these headers announce (its body comes later); :class:`EventRefused` names what is wrong."""
        for name in PROXY_HEADERS:
            if name in headers:
                raise EventRefused(403, "proxied", "the capture sink takes events from the predictors in the cluster, "
                                   "not through the hub's proxy")  # fmt: skip
        if headers.get("ce-specversion") != "1.0":
            raise EventRefused(400, "malformed", "ce-specversion must be 1.0 (a CloudEvent in binary mode)")
        kind = headers.get("ce-type", "")
        if kind not in (REQUEST, RESPONSE):
            raise EventRefused(400, "malformed", f"ce-type must be {REQUEST} or {RESPONSE}")
        event_id = headers.get("ce-id", "")
        if not EVENT_ID.fullmatch(event_id):
            raise EventRefused(400, "malformed", "ce-id must be 1-100 letters, digits or ._:- (the request's id)")
        if not 0 < len(headers.get("ce-source", "")) <= 2048:
            raise EventRefused(400, "malformed", "ce-source is missing (the predictor's pod)")
        if headers.get("ce-component") != "predictor":
            raise EventRefused(400, "malformed", "ce-component must be predictor: only predictors log payloads here")
        isvc = headers.get("ce-inferenceservicename", "")
        if len(isvc) > 63 or not KSERVE_NAME.fullmatch(isvc):
            raise EventRefused(400, "malformed", "ce-inferenceservicename must be an InferenceService's name")
        if headers.get("ce-namespace") != self.namespace:
            raise EventRefused(404, "unknown_service", f"ce-namespace: models are served in {self.namespace} only")
        at = event_time(headers.get("ce-time", ""))
        if at is None:
            raise EventRefused(400, "malformed", "ce-time must be a time in RFC 3339 (2026-08-21T14:26:03.5Z)")
        if abs(at - self.now()) > MAX_CLOCK_SKEW:
            raise EventRefused(400, "malformed", f"ce-time is more than {MAX_CLOCK_SKEW:.0f} s from the pipeline's "
                               "clock: check the nodes' time")  # fmt: skip
        served = self.route(isvc)
        if served is None:
            raise EventRefused(404, "unknown_service", f"InferenceService {isvc} serves no model of this pipeline")
        model, stage, version, team = served
        content_type = headers.get("Content-Type", "")
        return Half(kind, isvc, event_id, model, stage, version, team, at, content_type if len(content_type) <= 200
                    else "", arrived=self.clock())  # fmt: skip

    # --- pairing ---

    def take(self, half: Half) -> Record | None:
        """Keep ``half`` until its other half comes, or, when that one is waiting, the capture of the two."""
        self.expire()
        other = self._pending.get(half.key)
        if other is None:
            self._keep(half)
            return None
        if other.kind == half.kind:
            raise EventRefused(409, "duplicate", f"ce-id {half.event_id}: a {half.kind.rsplit('.', 1)[1]} with this "
                               "id is already waiting for its other half")  # fmt: skip
        self._forget(half.key)
        request, response = (other, half) if other.kind == REQUEST else (half, other)
        return Record(
            request_id=request.event_id,
            team=request.team,
            model=request.model,
            version=request.version,
            stage=request.stage,
            at=response.at,
            latency_ms=max(0.0, (response.at - request.at) * 1000.0),
            # The agent logs an answer only when the model server answered 200.
            status=200,
            content_type=request.content_type,
            body=request.body,
            answer=response.body,
        )

    def expire(self) -> int:
        """Drop the halves that waited longer than ``pair_seconds`` (counted as dropped captures); how many."""
        deadline = self.clock() - self.pair_seconds
        expired = 0
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            if oldest.arrived > deadline:
                break
            self._forget(key)
            self._lose(oldest)
            expired += 1
        return expired

    def _keep(self, half: Half) -> None:
        while len(self._pending) >= self.max_pending:
            key, oldest = next(iter(self._pending.items()))
            self._forget(key)
            self._lose(oldest)
        if self._bytes + len(half.body) > self.max_pending_bytes:
            half = replace(half, body=b"")  # it still counts in traffic and latency, without its rows
        self._pending[half.key] = half
        self._bytes += len(half.body)

    def _forget(self, key: tuple[str, str]) -> None:
        self._bytes -= len(self._pending.pop(key).body)

    def _lose(self, half: Half) -> None:
        metrics.CAPTURE_DROPPED.labels(half.model, half.stage).inc()
        with self._lost_lock:
            self._lost[(half.team, half.model, half.stage)] += 1

    def write_lost(self) -> None:
        """Add the halves dropped since the last call to their teams' dropped counts (a thread: it writes SQLite)."""
        with self._lost_lock:
            lost, self._lost = self._lost, Counter()
        for team in {team for team, _, _ in lost}:
            counts = {(model, stage): n for (owner, model, stage), n in lost.items() if owner == team}
            try:
                self.capture.store(team).add_captures([], counts)
            except Exception:
                log.exception("could not count %d unpaired capture(s) of team %s", sum(counts.values()), team)

    @property
    def lost(self) -> bool:
        return bool(self._lost)


# --- the handler ---


@web.stream_request_body
class CaptureSinkHandler(web.RequestHandler):
    """``POST {prefix}capture``: one event of KServe's payload logger (see the module's docstring).

    The body is read as it arrives and kept up to :data:`MAX_BODY_BYTES`; the answer is 200 once the event is
    taken (paired or waiting), or a 4xx naming the header at fault.
    """

    def initialize(self, sink: CaptureSink) -> None:
        self.sink = sink
        self._half: Half | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    def check_xsrf_cookie(self) -> None:
        """Posted by KServe's agent, not by browsers with cookies."""

    def prepare(self) -> None:
        self.request.connection.set_max_body_size(MAX_TRANSFER_BYTES)  # type: ignore[union-attr]
        if self.request.method != "POST":
            return
        length = self.request.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_TRANSFER_BYTES:
            raise EventRefused(413, "malformed", f"the event's body must be at most {MAX_TRANSFER_BYTES} bytes")
        self._half = self.sink.half(self.request.headers)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_BODY_BYTES:
            self._chunks = []  # captured without its rows, as one machine does
        else:
            self._chunks.append(chunk)

    async def post(self) -> None:
        assert self._half is not None  # prepare() read it, or refused the event
        body = b"".join(self._chunks) if self._size <= MAX_BODY_BYTES else b""
        half = replace(self._half, body=body)
        record = self.sink.take(half)
        if record is not None:
            # The models service's request metrics, from the predictors' answers (the agent logs 200s only).
            metrics.observe_request(record.model, record.version, record.stage, record.status, record.latency_ms / 1e3)
            if len(record.body) + len(record.answer) > INLINE_BYTES:
                record = await asyncio.to_thread(readable, record)
            else:
                record = readable(record)
            self.sink.capture.record(record)
        if self.sink.lost:
            asyncio.get_running_loop().run_in_executor(None, self.sink.write_lost)
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, EventRefused):
            REFUSED.labels(error.reason).inc()
            self.finish({"message": error.message})
            return
        if status_code >= 500:
            # A fault of ours must not look like the sender's; it is logged, and the sender does not retry anyway.
            REFUSED.labels("unreadable").inc()
            self.set_status(422)
            self.finish({"message": "the event could not be captured (the pipeline's log says why)"})
            return
        self.finish({"message": getattr(error, "log_message", None) or self._reason})


def capture_sink_routes(prefix: str, capture: Capture, route: Route, **options: Any) -> list[tuple[str, Any, dict]]:
    """Tornado routes of the capture sink: ``POST {prefix}capture`` (``options`` go to :class:`CaptureSink`)."""
    sink = CaptureSink(capture, route, **options)
    return [(f"{prefix.rstrip('/')}/capture", CaptureSinkHandler, {"sink": sink})]


# --- the InferenceService's name, back to its model ---


class ReleaseRoutes:
    """``route`` from the pipeline's release store: each served (model, stage) by its InferenceService's name.

    The table is built from the releases in staging and production (:func:`~.monitor.served_stages`) and read
    again at most every ``refresh`` seconds, on a call (an unknown name cannot make it read the store more often).
    A promotion is seen within ``refresh`` seconds; until then its first captures count for the version before.
    """

    def __init__(
        self, store: Any, namespace: str = NAMESPACE, refresh: float = 5.0, clock: Callable[[], float] = time.monotonic
    ):
        self.store = store
        self.namespace = namespace
        self.refresh = refresh
        self.clock = clock
        self._table: dict[str, tuple[str, str, str, str]] = {}
        self._read_at: float | None = None

    def __call__(self, isvc: str) -> tuple[str, str, str, str] | None:
        if self._read_at is None or self.clock() - self._read_at >= self.refresh:
            self._read_at = self.clock()
            try:
                self._table = self._read()
            except Exception:
                log.exception("could not read the served models for the capture sink; keeping the last table")
        return self._table.get(isvc)

    def _read(self) -> dict[str, tuple[str, str, str, str]]:
        from mlopshub.pipeline import State

        from .monitor import served_stages

        live = (State.PRODUCTION, State.STAGING, State.AWAITING_APPROVAL, State.APPROVED)
        models = {release.model_name for release in self.store.releases() if release.state in live}
        table = {}
        for model in models:
            for served in served_stages(self.store, model).values():
                if getattr(served.release, "kind", "online") != "online":
                    continue
                name = inference_service_name(model, served.stage, self.namespace)
                table[name] = (model, served.stage, served.version, served.team)
        return table


# --- ce-time, and V2 bodies read as MLflow's ---


def event_time(text: str) -> float | None:
    """``text`` (RFC 3339, as the CloudEvents SDK writes ``ce-time``: nanoseconds, ``Z``) in epoch seconds, or None."""
    found = RFC3339.fullmatch(text.strip()) if len(text) <= 64 else None
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = found.groups()
    try:
        zone = UTC if zulu else timezone((1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m)))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), tzinfo=zone)
    except ValueError:
        return None
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def readable(record: Record) -> Record:
    """``record`` with a V2 request and answer rewritten as MLflow's ``dataframe_split`` and ``predictions``,
    which the capture's writer reads; other bodies as they are. Never raises."""
    return replace(record, body=_request_body(record.body), answer=_answer_body(record.answer))


def _request_body(body: bytes) -> bytes:
    if b'"inputs"' not in body:
        return body  # MLflow's dataframe_split, dataframe_records, instances, or CSV
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if not (isinstance(payload, dict) and _is_v2(payload.get("inputs"))):
        return body  # MLflow's own "inputs"
    table = v2_table(payload["inputs"])
    if table is None:
        return b""  # unnamed columns: latency and status only
    columns, rows = table
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def _answer_body(answer: bytes) -> bytes:
    if b'"outputs"' not in answer:
        return answer
    try:
        payload = json.loads(answer)
    except (ValueError, RecursionError):
        return answer
    if not (isinstance(payload, dict) and _is_v2(payload.get("outputs"))):
        return answer
    predictions = v2_predictions(payload["outputs"])
    return json.dumps({"predictions": predictions}).encode() if predictions is not None else b""


def _is_v2(tensors: Any) -> bool:
    return (
        isinstance(tensors, list)
        and bool(tensors)
        and all(isinstance(t, dict) and "name" in t and "data" in t for t in tensors)
    )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _column(tensor: dict[str, Any]) -> list[Any] | None:
    """The values of a one-column tensor (shape ``[n]`` or ``[n, 1]``, data flat or nested), or None."""
    data, shape = tensor.get("data"), tensor.get("shape")
    if not isinstance(data, list):
        return None
    if all(isinstance(item, list) and len(item) == 1 for item in data):
        data = [item[0] for item in data]
    if not all(_scalar(item) for item in data):
        return None
    if shape is not None:
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)):
            return None
        if not (shape == [len(data)] or shape == [len(data), 1]):
            return None
    return data


def v2_table(inputs: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]] | None:
    """A V2 request's rows when each input is a named column of the same length, else None."""
    names = [tensor.get("name") for tensor in inputs]
    if not all(isinstance(name, str) and 0 < len(name) <= 200 for name in names) or len(set(names)) != len(names):
        return None
    columns = [_column(tensor) for tensor in inputs]
    if any(column is None for column in columns):
        return None
    lengths = {len(column) for column in columns if column is not None}
    if len(lengths) != 1 or 0 in lengths:
        return None
    return [str(name) for name in names], [list(row) for row in zip(*columns, strict=True)]


def v2_predictions(outputs: list[dict[str, Any]]) -> list[Any] | None:
    """A V2 answer's predictions: its one output, one value per row (or one list per row), else None."""
    if len(outputs) != 1:
        return None
    (tensor,) = outputs
    column = _column(tensor)
    if column is not None:
        return column
    data, shape = tensor.get("data"), tensor.get("shape")
    if not (isinstance(data, list) and isinstance(shape, list) and len(shape) == 2):
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        return None
    rows, width = shape
    if all(isinstance(row, list) and len(row) == width and all(_scalar(v) for v in row) for row in data):
        return data if len(data) == rows else None
    if len(data) == rows * width and all(_scalar(v) for v in data):
        return [data[i * width : (i + 1) * width] for i in range(rows)]
    return None
