"""Prometheus metrics of the models service and the pipeline (``prometheus_client``, the text format).

The models service counts what its endpoints answer as they answer it (:data:`REQUESTS`, :data:`LATENCY`) and
what the capture keeps or drops. The pipeline's figures come from its stores at each scrape
(:class:`PipelineCollector`): releases by state, and the last drift check and quality of each model.
``/metrics`` of both asks for a hub token with JupyterHub's ``read:metrics`` scope (as the hub's own
``/hub/metrics`` does), see :class:`MetricsHandler`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tornado import web

#: Latency buckets (seconds): a scoring call is milliseconds; a model that loads on first call, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
READ_METRICS = "read:metrics"

REQUESTS = Counter(
    "mlopshub_model_requests", "Requests answered by a model endpoint", ["model", "version", "stage", "code"]
)
LATENCY = Histogram(
    "mlopshub_model_request_duration_seconds",
    "Time from a request's arrival to its answer, at the models service",
    ["model", "version", "stage"],
    buckets=LATENCY_BUCKETS,
)
CAPTURE_RECORDS = Counter(
    "mlopshub_capture_records", "Captured requests written to the team's store", ["model", "stage"]
)
CAPTURE_DROPPED = Counter(
    "mlopshub_capture_dropped", "Requests not captured because the capture queue was full", ["model", "stage"]
)
CAPTURE_QUEUE = Gauge("mlopshub_capture_queue_length", "Captured requests waiting to be written")
OUTCOMES = Counter("mlopshub_model_outcomes", "True outcomes posted for captured requests", ["model"])


def observe_request(model: str, version: str, stage: str, code: int, seconds: float) -> None:
    """Count one answered request of an endpoint."""
    REQUESTS.labels(model, version, stage, str(code)).inc()
    LATENCY.labels(model, version, stage).observe(seconds)


class PipelineCollector(Collector):
    """The pipeline's figures, read at each scrape: ``releases()`` gives ``{(team, state): count}``,
    ``monitored()`` the last drift check and quality of each served model."""

    def __init__(
        self, releases: Callable[[], dict[tuple[str, str], int]], monitored: Callable[[], Iterable[dict[str, Any]]]
    ):
        self.releases = releases
        self.monitored = monitored

    def collect(self) -> Iterable[Metric]:
        states = GaugeMetricFamily("mlopshub_releases", "Releases by team and state", labels=["team", "state"])
        for (team, state), count in sorted(self.releases().items()):
            states.add_metric([team, state], count)
        yield states
        psi = GaugeMetricFamily(
            "mlopshub_model_drift_psi",
            "Population stability index of a feature (__prediction__: the predictions) at the last drift check",
            labels=["model", "version", "stage", "feature"],
        )
        drifted = GaugeMetricFamily(
            "mlopshub_model_drifted",
            "1 when the last drift check crossed a threshold",
            labels=["model", "version", "stage"],
        )
        quality = GaugeMetricFamily(
            "mlopshub_model_quality",
            "A quality metric over the outcomes posted so far",
            labels=["model", "version", "metric"],
        )
        for item in self.monitored():
            labels = [item["model"], str(item["version"]), item["stage"]]
            if item.get("drift") is not None:
                drifted.add_metric(labels, 1.0 if item["drift"].get("drifted") else 0.0)
                for feature, value in (item["drift"].get("psi") or {}).items():
                    if value is not None:
                        psi.add_metric([*labels, feature], float(value))
            for metric, value in (item.get("quality") or {}).items():
                if value is not None:
                    quality.add_metric([item["model"], str(item["version"]), metric], float(value))
        yield psi
        yield drifted
        yield quality


DRIFT_SECONDS = Histogram(
    "mlopshub_drift_check_seconds",
    "Time a drift check took",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=None,
)


def pipeline_registry(collector: PipelineCollector) -> CollectorRegistry:
    """The pipeline's registry: its collector, the drift timing, and the process's own figures."""
    registry = CollectorRegistry()
    registry.register(collector)
    registry.register(DRIFT_SECONDS)
    from prometheus_client import PROCESS_COLLECTOR

    registry.register(PROCESS_COLLECTOR)
    return registry


class MetricsHandler(web.RequestHandler):
    """``GET .../metrics``: the registry in Prometheus' text format, for a hub token with ``read:metrics``.

    ``authenticate(handler)`` returns the caller (a :class:`~mlopshub.services.pipeline.auth.Caller`) or
    raises 401; a caller without the scope gets 403 naming it.
    """

    def initialize(
        self, authenticate: Callable[[web.RequestHandler], Any], registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.authenticate = authenticate
        self.registry = registry

    def check_xsrf_cookie(self) -> None:
        """Read with a token by a scraper, never with a cookie."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        self.finish({"message": getattr(error, "log_message", None) or self._reason})

    async def get(self) -> None:
        caller = await self.authenticate(self)
        if not caller.has(READ_METRICS):
            raise web.HTTPError(403, f"{caller.name} may not read metrics: the token lacks the scope {READ_METRICS}")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.registry))
