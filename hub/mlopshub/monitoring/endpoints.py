"""Monitoring on the models service: what each endpoint call hands to monitoring, outcomes, and ``/metrics``.

* :func:`observer`: the endpoints' ``observe`` hook (:class:`mlopshub.serving.proxy.Answered`): counts the request
  in the Prometheus metrics and queues its capture (:class:`~.capture.Capture`).
* ``POST {prefix}{model}/outcomes`` (:class:`OutcomesHandler`): a consumer system, or the model's team, posts the
  true outcome of requests it made, by the request id each answer carried (``X-Mlopshub-Request-Id``).
  ``{"outcomes": [{"request_id": "...", "value": <outcome> | [<outcome per row>]}]}``; all are stored or none,
  and a refusal names the item and the field.
* ``GET {prefix}metrics``: Prometheus' text format (:class:`~.metrics.MetricsHandler`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import web

from mlopshub.serving.proxy import Answered, Authorize, Observe, bounded

from . import metrics
from .capture import Capture, Record
from .store import OutcomeError

#: Outcomes one request may carry.
MAX_OUTCOMES = 10_000
#: Seconds an outcome waits for the captures queued before it to be written.
FLUSH_WAIT = 5.0


def observer(capture: Capture | None, team_of: Callable[[str], str]) -> Observe:
    """The ``observe`` hook of the models service's endpoints: count, then capture (never blocks)."""

    def observe(answered: Answered) -> None:
        metrics.observe_request(answered.model, answered.version, answered.stage, answered.status, answered.seconds)
        if capture is None:
            return
        capture.record(
            Record(
                request_id=answered.request_id,
                team=team_of(answered.model),
                model=answered.model,
                version=answered.version,
                stage=answered.stage,
                at=time.time(),
                latency_ms=answered.seconds * 1000.0,
                status=answered.status,
                content_type=answered.content_type,
                body=answered.body,
                answer=answered.answer,
            )
        )

    return observe


class OutcomesHandler(web.RequestHandler):
    """``POST {prefix}{model}/outcomes``: true outcomes of captured requests (see the module's docstring)."""

    def initialize(self, capture: Capture, team_of: Callable[[str], str], authorize: Authorize | None) -> None:
        self.capture = capture
        self.team_of = team_of
        self.authorize = authorize

    def check_xsrf_cookie(self) -> None:
        """Posted by programs with tokens, not by browsers with cookies."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"message": getattr(error, "log_message", None) or self._reason}
        if isinstance(error, OutcomesRefused):
            body.update(message=error.message, field=error.field)
        self.finish(body)

    async def post(self, model: str) -> None:
        if self.authorize is not None:
            # Who may call the production endpoint may say what became of its answers.
            await self.authorize(self, model, "production")
        team = self.team_of(model)
        if not team:
            raise web.HTTPError(404, f"model {bounded(model)!r} was never served here")
        items = _outcomes_of(self.request.body)
        # An outcome may follow its answer within milliseconds: the answer's capture is written first.
        await asyncio.to_thread(self.capture.flush, FLUSH_WAIT)
        try:
            stored = await asyncio.to_thread(self.capture.store(team).add_outcomes, model, items)
        except OutcomeError as error:
            raise OutcomesRefused(error.status, str(error), error.field) from None
        metrics.OUTCOMES.labels(model).inc(stored)
        self.set_status(201)
        self.finish({"stored": stored})


class OutcomesRefused(web.HTTPError):
    """A refused outcomes request, with the field at fault."""

    def __init__(self, status: int, message: str, field: str):
        super().__init__(status, "%s", message)
        self.message = message
        self.field = field


def _outcomes_of(body: bytes) -> list[Any]:
    try:
        payload = json.loads(body or b"null")
    except (ValueError, RecursionError):
        message = 'the body is not JSON: send {"outcomes": [{"request_id", "value"}]}'
        raise OutcomesRefused(400, message, "body") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("outcomes"), list):
        raise OutcomesRefused(422, 'the body must be {"outcomes": [{"request_id": ..., "value": ...}]}', "outcomes")
    items = payload["outcomes"]
    if not items:
        raise OutcomesRefused(422, "outcomes is empty: give at least one", "outcomes")
    if len(items) > MAX_OUTCOMES:
        raise OutcomesRefused(422, f"at most {MAX_OUTCOMES} outcomes per request ({len(items)} given)", "outcomes")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise OutcomesRefused(
                422, f"outcomes[{index}] must be an object with request_id and value", f"outcomes[{index}]"
            )
        unknown = sorted(set(item) - {"request_id", "value"})
        if unknown:
            raise OutcomesRefused(
                422,
                f"outcomes[{index}] has an unknown field {unknown[0][:100]!r}",
                f"outcomes[{index}].{unknown[0][:100]}",
            )
    return items


def monitoring_routes(
    prefix: str,
    capture: Capture,
    team_of: Callable[[str], str],
    authorize: Authorize | None,
    authenticate: Callable[[web.RequestHandler], Awaitable[Any]],
) -> list[tuple[str, Any, dict]]:
    """Tornado routes of the models service's monitoring: outcomes and metrics."""
    base = prefix.rstrip("/")
    return [
        (f"{base}/metrics", metrics.MetricsHandler, {"authenticate": authenticate}),
        (
            rf"{base}/([A-Za-z0-9][A-Za-z0-9_.-]*)/outcomes",
            OutcomesHandler,
            {"capture": capture, "team_of": team_of, "authorize": authorize},
        ),
    ]
