"""The monitoring API (``/services/pipeline/api/monitoring``), the printable report, and the pipeline's ``/metrics``.

Who reads what is the release API's rule (:meth:`Caller.may_read`): a team's members their team's models,
model risk (validators, admins) every team's; a model the caller may not read answers 404, as one that does
not exist. Capture settings are changed by the model's team (or a platform admin). The report is a page a
browser opens with the hub's login (HubOAuth, as the Teams page), laid out to print on A4.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from datetime import UTC, datetime
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from mlopshub.monitoring.metrics import MetricsHandler, PipelineCollector, pipeline_registry
from mlopshub.monitoring.monitor import MonitoringError, epoch_of, served_stages, tracked_metrics
from mlopshub.monitoring.store import Settings, SettingsError, psi_by_feature
from mlopshub.pipeline.release import MODEL_NAME_PATTERN

from .app import ApiHandler
from .auth import authenticated, caller_from_model
from .monitoring import ModelMonitoring

MANAGE_TEAMS = "custom:mlopshub:manage-teams"


class MonitoringHandler(ApiHandler):
    def initialize(self, monitoring: ModelMonitoring, **args: Any) -> None:  # type: ignore[override]
        super().initialize(**args)
        self.monitoring = monitoring

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, MonitoringError | SettingsError):
            status = getattr(error, "status", 422)
            self.set_status(status)
            data = {"error": type(error).__name__, "message": str(error), "status": status, "field": error.field}
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(data))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, MonitoringError | SettingsError):
            return
        super().log_exception(typ, value, tb)

    def query(self, name: str, default: str | None = None) -> str | None:
        value = self.get_argument(name, default)
        return value if value not in ("",) else default


class MonitoringListHandler(MonitoringHandler):
    async def get(self) -> None:
        """Every served model the caller may read, marked when its last drift check found drift."""
        models = await asyncio.to_thread(self.monitoring.listing, self.caller.may_read)
        self.reply({"models": models})


class MonitoringModelHandler(MonitoringHandler):
    async def get(self, model: str) -> None:
        """Traffic, capture, drift and quality of ``model``'s stage over the window."""
        self.model_team(model)
        answer = await self.monitoring.overview(model, self.query("stage"), self.query("window", "day") or "day")
        self.reply(answer)


class DriftCheckHandler(MonitoringHandler):
    async def post(self, model: str) -> None:
        """Check drift now over the window; the result is kept (PSI over time) and a new drift is audited."""
        self.model_team(model)
        served = self.monitoring.served(model, self.query("stage"))
        window = self.query("window", "day") or "day"
        result = await self.monitoring.check(served, window, self.caller.name)
        since, _ = self.monitoring.monitor.period(window, served)
        result["history"] = self.monitoring.monitor.history(served, since)
        self.reply(result)


class CaptureSettingsHandler(MonitoringHandler):
    async def get(self, model: str) -> None:
        """The model's capture settings (defaults when never set)."""
        team = self.model_team(model)
        self.reply(self.monitoring.monitor.store(team).settings(model).to_dict())

    async def put(self, model: str) -> None:
        """Change the share captured, the days kept and the columns left out (the model's team, or an admin)."""
        team = self.model_team(model)
        if not (self.caller.publish_teams([team]) or self.caller.has(MANAGE_TEAMS)):
            raise web.HTTPError(403, f"{self.caller.name} may not change the capture of {model}: its team {team} may")
        store = self.monitoring.monitor.store(team)
        before = store.settings(model)
        settings = Settings.parse(self.body(), before)
        store.set_settings(model, settings, self.caller.name)
        release = self.store.production(model) or next(iter(self.store.releases(model_name=model)), None)
        if release is not None:
            self.runner._audit(
                "capture settings changed", release, actor=self.caller.name, before=before.to_dict(),
                after=settings.to_dict(),
            )  # fmt: skip
        self.reply(settings.to_dict())


# --- the printable report ---


#: The report has no script and loads nothing: its one stylesheet is inline.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class ReportPage(HubOAuthenticated, web.RequestHandler):
    """``{prefix}monitoring/{model}/report?stage=&window=``: one page for the model-risk file."""

    def initialize(self, monitoring: ModelMonitoring) -> None:
        self.monitoring = monitoring

    @web.authenticated
    async def get(self, model: str) -> None:
        caller = caller_from_model(self.current_user)
        store = self.monitoring.runner.store
        team = store.owner(model)
        if team is None or not caller.may_read(team):
            raise web.HTTPError(404, f"no model '{model}' has been published")
        window = self.get_argument("window", "week")
        try:
            data = await self.monitoring.overview(model, self.get_argument("stage", None) or None, window)
        except MonitoringError as error:
            raise web.HTTPError(error.status, str(error)) from None
        self.set_header("Content-Security-Policy", REPORT_POLICY)
        self.finish(render_report(data, store.production(model), caller.name))


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else html.escape(str(value))


def _bars(baseline: list[float], live: list[float]) -> str:
    """An inline SVG of baseline (grey) and live (blue) shares per bin."""
    width, height = 160, 36
    n = max(len(baseline), len(live), 1)
    top = max([*baseline, *live, 1e-9])
    step = width / n
    parts = []
    for i in range(n):
        for offset, shares, colour in ((0.0, baseline, "#9e9e9e"), (step / 2, live, "#1976d2")):
            value = shares[i] if i < len(shares) and shares[i] is not None else 0.0
            h = height * value / top
            parts.append(f'<rect x="{i * step + offset:.1f}" y="{height - h:.1f}" width="{step / 2 - 1:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"/>')  # fmt: skip
    label = 'role="img" aria-label="baseline and live shares"'
    return f'<svg width="{width}" height="{height}" {label}>{"".join(parts)}</svg>'


def render_report(data: dict[str, Any], production: Any, reader: str) -> str:
    """The report as one HTML page (everything escaped: feature names and values come from callers)."""
    e = html.escape
    traffic, drift, quality, capture = data["traffic"], data["drift"], data["quality"], data["capture"]
    window = data["window"]
    if not drift.get("available"):
        verdict = f"Drift unavailable: {e(drift.get('reason') or '')}"
    elif drift.get("checked_at") is None:
        verdict = "Drift not checked yet in this period."
    else:
        drifted = [f["name"] for f in drift.get("features") or [] if f.get("drifted")]
        if (drift.get("prediction") or {}).get("drifted"):
            drifted.append("predictions")
        verdict = (
            f"DRIFT on {e(', '.join(drifted))}" if drifted else "No drift: every feature below the PSI threshold"
        ) + f" (checked {_when(drift.get('checked_at'))} over {drift.get('rows', 0)} rows)"
    rows = []
    for item in [*(drift.get("features") or []), *([drift["prediction"]] if drift.get("prediction") else [])]:
        base = (item.get("baseline") or {}).get("shares") or []
        live = (item.get("live") or {}).get("shares") or []
        name = "predictions" if item is drift.get("prediction") else item.get("name", "")
        why = e(" - " + item["reason"]) if item.get("reason") else ""
        rows.append(
            f'<tr class="{"drifted" if item.get("drifted") else ""}"><td>{e(str(name))}</td>'
            f"<td>{e(str(item.get('kind', '')))}</td><td>{_number(item.get('psi'))}</td>"
            f"<td>{e(str(item.get('test', '')))} {_number(item.get('p_value'))}</td>"
            f"<td>{'yes' if item.get('drifted') else 'no'}{why}</td>"
            f"<td>{_bars(base, live)}</td></tr>"
        )
    quality_rows = "".join(
        f"<tr><td>{e(m['name'])}</td><td>{_number(m.get('value'))}</td><td>{_number(m.get('approval'))}</td>"
        f"<td>{e(json.dumps(m.get('threshold')) if m.get('threshold') else '-')}</td>"
        f"<td>{e(m.get('reason') or '')}</td></tr>"
        for m in quality.get("metrics") or []
    )
    baseline = drift.get("baseline") or {}
    limits = drift.get("thresholds") or {}
    data_text = ", ".join(f"{e(path)} @ {e(str(h)[:12])}" for path, h in (baseline.get("data") or {}).items()) or "-"
    approval = ""
    if production is not None and data["stage"] == "production":
        since = _when(epoch_of(production.promoted))
        approval = f"approved by {e(production.approver or '-')}, in production since {since}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Monitoring report: {e(data["model"])}</title>
<style>
body {{ font: 12px/1.4 system-ui, sans-serif; margin: 16mm; color: #111; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }} h2 {{ font-size: 14px; margin: 14px 0 4px; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; }}
tr.drifted td {{ background: #fdecea; }} .verdict {{ font-weight: 600; padding: 6px; border: 1px solid #999; }}
@media print {{ body {{ margin: 10mm; }} @page {{ size: A4; }} }}
</style></head><body data-testid="mlopshub-monitoring-report">
<h1>Monitoring report: {e(data["model"])} version {e(data["version"])} ({e(data["stage"])})</h1>
<p>Team {e(data["team"])}. Period {_when(window["since"])} to {_when(window["until"])} ({e(window["name"])}).
{approval}. Generated {_when(time.time())} for {e(reader)}.</p>
<p class="verdict">{verdict}</p>
<h2>Traffic</h2>
<table><tr><th>requests</th><th>errors</th><th>p50 latency</th><th>p99 latency</th><th>captured</th><th>dropped</th>
<th>sampling</th></tr>
<tr><td>{traffic["requests"]}</td><td>{traffic["errors"]}</td><td>{_number(traffic.get("p50_ms"))} ms</td>
<td>{_number(traffic.get("p99_ms"))} ms</td><td>{capture["captured"]}</td><td>{capture["dropped"]}</td>
<td>{capture["sample_rate"]:.0%}, kept {capture["retention_days"]} days</td></tr></table>
<h2>Drift against the training data</h2>
<p>Baseline: {data_text} ({_number(baseline.get("rows"))} rows). Threshold PSI {_number(limits.get("psi"))},
test level {_number(limits.get("p_value"))}.</p>
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>test, p-value</th><th>drifted</th><th>baseline / live</th></tr>
{"".join(rows) or '<tr><td colspan="6">no drift check in this period</td></tr>'}</table>
<h2>Quality against outcomes</h2>
<p>{quality.get("outcomes", 0)} outcomes posted. {e(quality.get("reason") or "")}</p>
<table><tr><th>metric</th><th>live</th><th>at approval (hold-out)</th><th>threshold</th><th></th></tr>
{quality_rows or '<tr><td colspan="5">-</td></tr>'}</table>
</body></html>"""


# --- the routes ---


def releases_by_state(runner: Any) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for release in runner.store.releases():
        key = (release.team, str(release.state))
        counts[key] = counts.get(key, 0) + 1
    return counts


def monitored(monitoring: ModelMonitoring) -> list[dict[str, Any]]:
    """For ``/metrics``: the last drift check and quality of each served stage."""
    out = []
    for model in sorted(monitoring.models()):
        for served in served_stages(monitoring.runner.store, model).values():
            last = monitoring.monitor.last_drift(served)
            drift = None
            if last is not None:
                drift = {"drifted": last.get("drifted"), "psi": psi_by_feature(last)}
            quality = {}
            team = monitoring.runner.teams.get(served.team)
            metrics = tracked_metrics(list(getattr(team, "thresholds", None) or {}))
            if metrics:
                figures = monitoring.monitor.quality(served, served.since, time.time(), metrics)
                quality = {m["name"]: m["value"] for m in figures.get("metrics") or []}
            out.append({"model": model, "version": served.version, "stage": served.stage, "drift": drift,
                        "quality": quality})  # fmt: skip
    return out


def monitoring_routes(
    api: str, prefix: str, args: dict[str, Any], monitoring: ModelMonitoring, pages: bool
) -> list[Any]:
    """The monitoring API under ``api``, ``{prefix}metrics``, and (with ``pages``) the report page."""
    model = rf"({MODEL_NAME_PATTERN})"
    margs = {**args, "monitoring": monitoring}
    runner = args["runner"]
    registry = pipeline_registry(PipelineCollector(lambda: releases_by_state(runner), lambda: monitored(monitoring)))
    authenticate = args["authenticate"]
    base = prefix.rstrip("/")
    routes: list[Any] = [
        (rf"{api}/monitoring/?", MonitoringListHandler, margs),
        (rf"{api}/monitoring/{model}/?", MonitoringModelHandler, margs),
        (rf"{api}/monitoring/{model}/drift/?", DriftCheckHandler, margs),
        (rf"{api}/monitoring/{model}/settings/?", CaptureSettingsHandler, margs),
        (
            rf"{base}/metrics",
            MetricsHandler,
            {"authenticate": lambda handler: authenticated(handler, authenticate), "registry": registry},
        ),
    ]
    if pages:
        routes.append((rf"{base}/monitoring/{model}/report/?", ReportPage, {"monitoring": monitoring}))
    return routes
