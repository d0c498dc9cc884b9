"""helm-values/: valid for the Zero to JupyterHub chart, current with the catalog, manifests valid for k8s 1.33.

Helm checks values the same way before it renders anything: the chart's
defaults (values.yaml) are merged with each ``-f`` file in order, then the
result must validate against the chart's schema (tests/chart_values.py, shared
with the MLflow and CloudNativePG values in test_platform_values.py). The
chart's schema and defaults are peer artifacts in ``../shared/peers/z2jh/``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_values import helm_merge, load_yaml, schema_errors

from mlopshub import catalog, helm, images

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO.parent / "shared" / "peers" / "z2jh"
SCHEMA_FILE = PEERS / "values.schema.yaml"
DEFAULTS_FILE = PEERS / "values.yaml"
VALUES_DIR = REPO / "helm-values"
HAND_WRITTEN = VALUES_DIR / "jupyterhub.yaml"
GENERATED = VALUES_DIR / "generated" / "catalog.yaml"
GENERATED_CONFIGMAP = VALUES_DIR / "generated" / "catalog-configmap.yaml"
GENERATED_ACCOUNTS = VALUES_DIR / "generated" / "models-service-accounts.yaml"
GENERATED_TEAM_VOLUMES = VALUES_DIR / "generated" / "team-volumes.yaml"
MANIFESTS = sorted((VALUES_DIR / "platform" / "manifests").glob("*.yaml")) + [
    GENERATED_CONFIGMAP,
    GENERATED_ACCOUNTS,
    GENERATED_TEAM_VOLUMES,
]
KUBERNETES_VERSION = "1.33"

#: The z2jh values files in the order of `helm upgrade -f a -f b`.
INSTALL_ORDER = [HAND_WRITTEN, GENERATED]

pytestmark = pytest.mark.skipif(not SCHEMA_FILE.exists(), reason=f"chart schema not found at {SCHEMA_FILE}")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = load_yaml(SCHEMA_FILE)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def chart_defaults() -> dict[str, Any]:
    # Without the chart's values.yaml the files are checked over empty defaults.
    return load_yaml(DEFAULTS_FILE) if DEFAULTS_FILE.exists() else {}


def values_for(paths: list[Path], defaults: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for path in paths:
        merged = helm_merge(merged, load_yaml(path))
    return merged


# --- the merge itself ----------------------------------------------------------


def test_merge_follows_helm_maps_merge_lists_replace_null_deletes():
    base = {"hub": {"a": 1, "b": [1, 2], "c": {"x": 1}, "d": 4}}
    override = {"hub": {"b": [3], "c": {"y": 2}, "d": None}}
    assert helm_merge(base, override) == {"hub": {"a": 1, "b": [3], "c": {"x": 1, "y": 2}}}


# --- schema validity -------------------------------------------------------------


def test_chart_defaults_alone_validate(validator, chart_defaults):
    assert DEFAULTS_FILE.exists(), f"{DEFAULTS_FILE} is missing: values are checked over empty defaults"
    assert schema_errors(validator, chart_defaults) == []


@pytest.mark.parametrize(
    "files",
    [[HAND_WRITTEN], [GENERATED], INSTALL_ORDER],
    ids=["jupyterhub.yaml", "generated/catalog.yaml", "jupyterhub.yaml+generated/catalog.yaml"],
)
def test_values_validate_against_the_chart_schema_as_helm_would(validator, chart_defaults, files):
    assert schema_errors(validator, values_for(files, chart_defaults)) == []


def test_an_unknown_key_is_refused_and_named(validator, chart_defaults):
    values = helm_merge(values_for(INSTALL_ORDER, chart_defaults), {"hub": {"notAKey": True}})
    errors = schema_errors(validator, values)
    assert len(errors) == 1
    assert errors[0].startswith("hub: ")
    assert "'notAKey'" in errors[0]


def test_a_wrongly_typed_value_is_refused_with_its_path(validator, chart_defaults):
    values = helm_merge(values_for(INSTALL_ORDER, chart_defaults), {"cull": {"timeout": "one hour"}})
    assert schema_errors(validator, values) == ["cull.timeout: 'one hour' is not of type 'integer', 'null'"]


# --- the generated file ----------------------------------------------------------


def test_generated_catalog_values_are_current():
    assert GENERATED.read_text() == helm.render_catalog_values(), (
        "helm-values/generated/catalog.yaml is stale: run `mlopshub helm generate`"
    )


def test_generated_model_service_accounts_are_current_one_per_team_matching_what_releases_run_as():
    assert GENERATED_ACCOUNTS.read_text() == helm.render_model_service_accounts(), (
        "helm-values/generated/models-service-accounts.yaml is stale: run `mlopshub helm generate`"
    )
    from mlopshub.serving.kserve import NAMESPACE, inference_service

    accounts = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(GENERATED_ACCOUNTS.read_text()) if doc}
    assert set(accounts) == {"models-sme-credit", "models-retail-scoring"}
    assert {doc["metadata"]["namespace"] for doc in accounts.values()} == {NAMESPACE}
    served = inference_service("credit", "3", "s3://bucket/m", "sme-credit", "production")
    assert served["spec"]["predictor"]["serviceAccountName"] in accounts


def test_generated_catalog_configmap_is_current():
    assert GENERATED_CONFIGMAP.read_text() == helm.render_catalog_configmap(), (
        "helm-values/generated/catalog-configmap.yaml is stale: run `mlopshub helm generate`"
    )


def test_generated_files_say_they_are_generated():
    for path in (GENERATED, GENERATED_CONFIGMAP, GENERATED_ACCOUNTS, GENERATED_TEAM_VOLUMES):
        assert path.read_text().startswith("# generated by `mlopshub helm generate`; do not edit\n")


def test_every_profile_image_is_pre_pulled():
    cat = catalog.load(REPO / "profiles")
    pulled = {f"{i['name']}:{i['tag']}" for i in load_yaml(GENERATED)["prePuller"]["extraImages"].values()}
    assert pulled == {images.image_ref(p.image) for p in cat.profiles.values()}


def test_catalog_values_name_a_missing_image_key():
    cat = catalog.load(REPO / "profiles")
    refs = {k: v for k, v in images.all_refs().items() if k != "r-gpu"}
    with pytest.raises(KeyError, match="'r-gpu'"):
        helm.catalog_values(cat, refs)


def test_catalog_checksum_changes_with_the_catalog_not_with_comments(tmp_path):
    for name in ("profiles.yaml", "teams.yaml"):
        (tmp_path / name).write_text((REPO / "profiles" / name).read_text())
    before = helm.catalog_checksum(catalog.load(tmp_path))
    teams = tmp_path / "teams.yaml"
    teams.write_text("# a new comment\n" + teams.read_text())
    assert helm.catalog_checksum(catalog.load(tmp_path)) == before
    teams.write_text(teams.read_text().replace("max_servers: 20", "max_servers: 21", 1))
    assert helm.catalog_checksum(catalog.load(tmp_path)) != before


def test_hub_reads_the_catalog_where_the_configmap_is_mounted():
    hub_env = load_yaml(HAND_WRITTEN)["hub"]["extraEnv"]
    mounts = load_yaml(GENERATED)["hub"]["extraVolumeMounts"]
    assert hub_env["MLOPSHUB_CATALOG"] in {m["mountPath"] for m in mounts}
    configmap = load_yaml(GENERATED_CONFIGMAP)
    volumes = load_yaml(GENERATED)["hub"]["extraVolumes"]
    assert [v["configMap"]["name"] for v in volumes] == [configmap["metadata"]["name"]]
    assert set(configmap["data"]) == {"profiles.yaml", "teams.yaml"}


# --- the hand-written file -------------------------------------------------------


def test_hub_extra_config_only_imports_and_calls_mlopshub():
    (code,) = load_yaml(HAND_WRITTEN)["hub"]["extraConfig"].values()
    statements = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert [s.split("#")[0].strip() for s in statements] == ["import mlopshub", "mlopshub.configure(c)"]
    compile(code, "hub.extraConfig", "exec")


def test_hub_runs_in_kubernetes_mode_with_oidc_settings():
    env = load_yaml(HAND_WRITTEN)["hub"]["extraEnv"]
    assert env["MLOPSHUB_MODE"] == "kubernetes"
    for name in (
        "MLOPSHUB_OIDC_ISSUER",
        "MLOPSHUB_OIDC_CLIENT_ID",
        "MLOPSHUB_OIDC_CLIENT_SECRET",
        "MLOPSHUB_OIDC_GROUPS_CLAIM",
        "MLOPSHUB_OIDC_ADMIN_GROUPS",
    ):
        assert name in env, f"hub.extraEnv lacks {name}"


def test_the_chart_does_not_register_the_service_mlopshub_registers():
    # mlopshub.configure adds `mlflow` to c.JupyterHub.services in Kubernetes mode;
    # a second registration by the chart would stop the hub at start.
    from mlopshub.configure import MLFLOW_SERVICE

    values = load_yaml(HAND_WRITTEN)
    assert MLFLOW_SERVICE not in values["hub"].get("services", {})
    assert values["hub"]["extraEnv"]["MLOPSHUB_MLFLOW_URL"] == "http://mlflow:5000"


def test_public_url_is_the_ingress_host():
    values = load_yaml(HAND_WRITTEN)
    hosts = values["ingress"]["hosts"]
    assert values["hub"]["extraEnv"]["MLOPSHUB_PUBLIC_URL"] in {f"https://{host}" for host in hosts}
    assert all(host in tls["hosts"] for tls in values["ingress"]["tls"] for host in hosts)


def test_no_secret_is_written_in_the_values():
    values = load_yaml(HAND_WRITTEN)
    env = values["hub"]["extraEnv"]
    for name, entry in env.items():
        if re.search("SECRET|PASSWORD|TOKEN|PGPASSWORD", name):
            assert isinstance(entry, dict) and "secretKeyRef" in entry.get("valueFrom", {}), (
                f"hub.extraEnv.{name} must come from a Secret (valueFrom.secretKeyRef)"
            )
    assert values["hub"]["db"].get("password") is None
    assert not re.search(r"://[^/@]*:[^/@]*@", values["hub"]["db"]["url"]), "hub.db.url must not carry a password"
    assert "cookieSecret" not in values["hub"] and "secretToken" not in values.get("proxy", {})


def test_every_top_and_second_level_key_opens_with_a_comment():
    previous = ""
    missing = []
    for number, line in enumerate(HAND_WRITTEN.read_text().splitlines(), 1):
        if re.match(r"^( {0}| {2})[A-Za-z][\w.-]*:", line) and not previous.lstrip().startswith("#"):
            missing.append(f"line {number}: {line.strip()}")
        if line.strip():
            previous = line
    assert missing == [], "keys without a comment saying who uses them"


def test_platform_images_are_the_hub_image_from_tags():
    name, tag = helm.split_image(images.image_ref("hub"))
    assert load_yaml(HAND_WRITTEN)["hub"]["image"] == {"name": name, "tag": tag}
    mlflow = load_yaml(VALUES_DIR / "platform" / "mlflow.yaml")["image"]
    assert (mlflow["repository"], mlflow["tag"]) == (name, tag)
    for path in (VALUES_DIR / "platform" / "manifests").glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] != "Deployment":
                continue
            for container in document["spec"]["template"]["spec"]["containers"]:
                assert container["image"] == f"{name}:{tag}", f"{path.name}: {container['name']}"


# --- plain manifests -------------------------------------------------------------


def manifest_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in MANIFESTS:
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if document:
                documents.append((f"{path.relative_to(VALUES_DIR)}#{index}", document))
    return documents


@pytest.mark.parametrize(("where", "document"), manifest_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifests_validate_strictly_for_kubernetes_1_33(where, document):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_manifest_validation_refuses_an_unknown_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    (where, deployment) = next((w, d) for w, d in manifest_documents() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePulPolicy"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
