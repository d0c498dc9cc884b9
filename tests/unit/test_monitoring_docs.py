"""The monitoring guide's Grafana dashboard queries only metrics the platform exports, and parses as a dashboard."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlopshub.monitoring import metrics
from mlopshub.monitoring.metrics import PipelineCollector, observe_request, pipeline_registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "mlopshub-monitoring.json"


def exported() -> set[str]:
    """Every sample name the models service and the pipeline export, each metric given one sample."""
    observe_request("m", "1", "production", 200, 0.01)
    for counter in (metrics.CAPTURE_RECORDS, metrics.CAPTURE_DROPPED):
        counter.labels("m", "production")
    metrics.OUTCOMES.labels("m")
    collector = PipelineCollector(
        lambda: {("t", "production"): 1},
        lambda: [{"model": "m", "version": "1", "stage": "production", "drift": {"drifted": True, "psi": {"f": 0.1}},
                  "quality": {"accuracy": 0.9}}],
    )  # fmt: skip
    names = set()
    for text in (generate_latest(REGISTRY), generate_latest(pipeline_registry(collector))):
        for family in text_string_to_metric_families(text.decode()):
            names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_the_dashboard_queries_is_exported():
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bmlopshub_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries no mlopshub metric"
    missing = queried - exported()
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_the_dashboard_names_its_data_source_and_every_panel_has_a_query():
    dashboard = json.loads(DASHBOARD.read_text())
    assert {variable["name"] for variable in dashboard["templating"]["list"]} >= {"datasource", "model"}
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_guide_names_every_metric_it_documents_as_exported():
    documented = set(re.findall(r"`(mlopshub_[a-z_]+)", (DOCS / "monitoring.md").read_text()))
    names = exported()
    families = names | {name.removesuffix(suffix) for name in names for suffix in ("_bucket", "_count", "_sum")}
    assert documented and documented <= families, sorted(documented - families)
