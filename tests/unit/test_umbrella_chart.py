"""One install: the umbrella chart deploy/mlopshub holds the whole platform, with values Helm accepts.

Helm cannot fetch the dependencies here (no chart repository is reachable), so
this checks what Helm checks before it renders: each dependency's section of
the umbrella values, with a site's file merged over it, against that chart's
schema and defaults (../shared/peers); the plain templates strictly against
Kubernetes' schemas; and that the hand-written site template reads only values
that exist.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chart_values import CNPG_CLUSTER, MLFLOW, Z2JH, helm_merge

from mlopshub import umbrella

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "mlopshub"
SITE_EXAMPLE = REPO / "deploy" / "site-values.example.yaml"
GUIDE = REPO / "docs" / "kubernetes.md"
#: values key in the umbrella chart -> (Chart.yaml entry, the chart's peer schema and defaults)
DEPENDENCIES = {
    "jupyterhub": (
        {"name": "jupyterhub", "version": "4.4.0", "repository": "https://hub.jupyter.org/helm-chart/"},
        Z2JH,
    ),
    "mlflow": (
        {"name": "mlflow", "version": "1.11.5", "repository": "https://community-charts.github.io/helm-charts"},
        MLFLOW,
    ),
    "postgresql": (
        {
            "name": "cluster",
            "alias": "postgresql",
            "version": "0.8.1",
            "repository": "https://cloudnative-pg.github.io/charts",
        },
        CNPG_CLUSTER,
    ),
}
KUBERNETES_VERSION = "1.33"


def chart_yaml() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def umbrella_values(*site_files: Path) -> dict:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in site_files:
        values = helm_merge(values, yaml.safe_load(path.read_text()))
    return values


def dependency_values(section: dict) -> dict:
    """What the dependency sees: its section, with the umbrella's globals (none here) that Helm adds."""
    return {**section, "global": section.get("global", {})}


def test_chart_pins_exactly_the_tested_dependency_versions():
    dependencies = chart_yaml()["dependencies"]
    assert dependencies == [entry for entry, _ in DEPENDENCIES.values()]
    assert chart_yaml()["apiVersion"] == "v2"


def test_the_guide_installs_with_one_command_and_names_the_pinned_versions():
    guide = GUIDE.read_text()
    assert "helm dependency build deploy/mlopshub" in guide
    assert "helm upgrade --install mlopshub deploy/mlopshub" in guide
    for entry, _ in DEPENDENCIES.values():
        rows = [line for line in guide.splitlines() if line.startswith("|") and f"`{entry['name']}`" in line]
        assert any(f"| {entry['version']} |" in row and entry["repository"] in row for row in rows), (
            f"docs/kubernetes.md's table does not name chart {entry['name']} {entry['version']} from its repository"
        )
    # No other version of the three charts is offered.
    for entry, _ in DEPENDENCIES.values():
        others = set(re.findall(rf"{entry['name']}\W+(\d+\.\d+\.\d+)", guide)) - {entry["version"]}
        assert not others, f"docs/kubernetes.md names untested versions of {entry['name']}: {sorted(others)}"


def test_values_and_templates_are_generated_from_helm_values():
    assert (CHART / "values.yaml").read_text() == umbrella.render_values(), (
        "deploy/mlopshub/values.yaml is stale: run `mlopshub helm generate`"
    )
    templates = umbrella.render_templates()
    on_disk = {p.name for p in (CHART / "templates").glob("*.yaml") if p.name.startswith(umbrella.GENERATED_PREFIXES)}
    assert on_disk == set(templates), "deploy/mlopshub/templates is stale: run `mlopshub helm generate`"
    for name, text in templates.items():
        assert (CHART / "templates" / name).read_text() == text, (
            f"templates/{name} is stale: run `mlopshub helm generate`"
        )


@pytest.mark.parametrize("site", [None, SITE_EXAMPLE], ids=["chart-defaults", "site-example"])
@pytest.mark.parametrize("section", list(DEPENDENCIES))
def test_each_dependency_section_validates_against_its_charts_schema(section, site):
    chart = DEPENDENCIES[section][1]
    if chart.missing():
        pytest.skip(chart.missing())
    values = umbrella_values(*([site] if site else []))
    assert chart.errors(dependency_values(values[section])) == []


def test_a_wrong_key_in_a_site_file_is_refused_and_named(tmp_path):
    if MLFLOW.missing():
        pytest.skip(MLFLOW.missing())
    site = tmp_path / "site.yaml"
    site.write_text("mlflow:\n  artifactRoot:\n    s3:\n      bukket: typo\n")
    errors = MLFLOW.errors(umbrella_values(site)["mlflow"])
    assert any("bukket" in error for error in errors), errors


def test_services_keep_the_names_the_platform_refers_to():
    values = umbrella_values()
    # Without these a dependency's names would start with the release name, and the hub,
    # NetworkPolicies and pipeline would point at Services that do not exist.
    assert values["jupyterhub"]["fullnameOverride"] == ""  # hub, proxy-public
    assert values["mlflow"]["fullnameOverride"] == "mlflow"
    assert values["postgresql"]["fullnameOverride"] == "mlopshub-db"  # mlopshub-db-rw


def plain_template_documents() -> list:
    return list(_plain_template_documents())


def _plain_template_documents():
    for path in sorted((CHART / "templates").glob("*.yaml")):
        if path.name.startswith(umbrella.GENERATED_PREFIXES):
            for index, document in enumerate(yaml.safe_load_all(path.read_text())):
                if document:
                    yield pytest.param(document, id=f"{path.name}[{index}]")


@pytest.mark.parametrize("document", plain_template_documents())
def test_plain_templates_are_strictly_valid_kubernetes_objects(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_manifest_helm_would_read_as_a_template_is_refused(tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\ndata: {a: '{{ x }}'}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*plain YAML"):
        umbrella.render_templates(tmp_path)


def test_site_template_reads_only_values_that_exist_and_defines_every_key_the_platform_reads():
    text = (CHART / "templates" / "site.yaml").read_text()
    values = umbrella_values()
    for dotted in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
        node = values
        for key in dotted.split("."):
            assert isinstance(node, dict) and key in node, f"templates/site.yaml reads .Values.{dotted}: no such value"
            node = node[key]
    defined = set()
    for part in text.split("\n---\n"):
        name = re.search(r"^  name: (\S+)$", part, re.M).group(1)
        data = part.split("\ndata:\n", 1)[1]
        defined |= {(name, key) for key in re.findall(r"^  ([\w-]+):", data, re.M)}
    rendered = (CHART / "values.yaml").read_text() + "".join(
        p.read_text() for p in (CHART / "templates").glob("*.yaml")
    )
    refs = set(re.findall(r"configMapKeyRef: \{name: (mlopshub-(?:site|oidc)), key: ([\w-]+)\}", rendered))
    refs |= set(re.findall(r"configMapKeyRef:\n\s+key: ([\w-]+)\n\s+name: (mlopshub-(?:site|oidc))", rendered))
    refs = {(a, b) if a.startswith("mlopshub-") else (b, a) for a, b in refs}
    assert refs, "nothing reads mlopshub-site or mlopshub-oidc"
    assert refs <= defined, f"keys read but not defined by templates/site.yaml: {sorted(refs - defined)}"


def test_site_example_agrees_with_itself_and_a_mismatch_is_named(tmp_path):
    assert umbrella.check_site([SITE_EXAMPLE]) == []
    bad = tmp_path / "site.yaml"
    bad.write_text(
        SITE_EXAMPLE.read_text().replace("hosts: [jupyter.example-bank.internal]", "hosts: [jupyter.bank.test]")
    )
    problems = umbrella.check_site([bad])
    assert any(p.startswith("jupyterhub.ingress.hosts:") and "jupyter.example-bank.internal" in p for p in problems)
    assert any(p.startswith("oidc.issuer:") for p in umbrella.check_site([]))


def test_helm_never_deletes_a_teams_files_the_releases_or_the_models_namespace():
    kept = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in (param.values[0] for param in plain_template_documents())
        if (doc["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    }
    holding_data = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in (param.values[0] for param in plain_template_documents())
        if doc["kind"] in ("PersistentVolumeClaim", "Namespace")
    }
    assert holding_data, "no volume or namespace in the templates"
    assert holding_data <= kept, f"helm upgrade/uninstall would delete: {sorted(holding_data - kept)}"


def test_check_site_command_names_the_key_and_fails(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("oidc: {issuer: http://sso.bank.test, clientId: mlopshub}\n")
    command = [sys.executable, "-m", "mlopshub.cli", "helm", "check-site", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert "oidc.issuer: 'http://sso.bank.test' must be an https:// URL" in result.stderr
    command[-1] = str(SITE_EXAMPLE)
    good = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert good.returncode == 0, good.stderr
