"""Names of the serving objects: valid for their kind whatever the model is called, stable, one per (model, stage)."""

import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from testing_support import KSERVE_SCHEMA_FILE, kserve_errors

from mlopshub.pipeline.release import MODEL_NAME
from mlopshub.serving import kserve, manifests, names

NAMESPACE = kserve.NAMESPACE
#: Kubernetes' DNS-1123 subdomain and label value rules.
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
#: KServe's own rule for an InferenceService's name.
KSERVE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

#: Names a registered model may have (MODEL_NAME) that are not valid Kubernetes names as they are.
AWKWARD = [
    "2024_credit",
    "2024-credit",
    "9",
    "Credit_Default",
    "credit.default",
    "CREDIT-DEFAULT",
    "a",
    "a--b",
    "credit-",
    "x" * 63,
    "9" * 63,
    "Retail_Scoring.Monthly-Default_Probability_For_Small_Business_2",
    "a_" * 31 + "b",
]


@pytest.mark.parametrize("model", AWKWARD)
def test_every_registrable_name_gives_names_valid_for_each_kind(model):
    assert MODEL_NAME.match(model), "a name the pipeline accepts"
    for stage in kserve.STAGES:
        service = names.inference_service_name(model, stage, NAMESPACE)
        assert KSERVE_NAME.fullmatch(service), service
        assert len(f"{service}-predictor-{NAMESPACE}") <= 63, "KServe's host label fits"
        job = names.job_name(model, "12345", stage)
        assert SUBDOMAIN.fullmatch(job) and len(job) <= 63 and LABEL_VALUE.fullmatch(job), job
    cronjob = names.cronjob_name(model)
    assert SUBDOMAIN.fullmatch(cronjob) and len(cronjob) <= 52, cronjob
    assert len(f"{cronjob}-manual") <= 63, "the manual run the pipeline suggests is a valid Job name"


def test_a_name_starting_with_a_digit_gets_a_letter_first():
    service = names.inference_service_name("2024_credit", "production", NAMESPACE)
    assert service != "2024-credit-production"
    assert service.startswith("m-2024-cred") and "--" in service and service.endswith("-production")
    assert names.cronjob_name("2024_credit").startswith("m-2024-credit--")


def test_long_names_are_cut_to_each_kinds_limit_and_stay_apart():
    long_a, long_b = "credit_" + "x" * 55 + "a", "credit_" + "x" * 55 + "b"  # the same first 62 characters
    assert len(long_a) == 63 and MODEL_NAME.match(long_a)
    assert len(names.cronjob_name(long_a)) == 52
    assert len(names.job_name(long_a, "7", "staging")) == 63
    assert len(names.inference_service_name(long_a, "production", NAMESPACE)) == 63 - len(f"-predictor-{NAMESPACE}")
    assert names.cronjob_name(long_a) != names.cronjob_name(long_b)
    assert names.job_name(long_a, "7", "staging") != names.job_name(long_b, "7", "staging")
    assert names.inference_service_name(long_a, "staging", NAMESPACE) != names.inference_service_name(
        long_b, "staging", NAMESPACE
    )


def test_a_lower_case_name_that_fits_is_kept_as_it_is():
    assert names.inference_service_name("credit-default", "production", NAMESPACE) == "credit-default-production"
    assert names.cronjob_name("credit-default") == "credit-default-batch"
    assert names.job_name("credit-default", "3", "staging") == "credit-default-v3-staging"


def test_names_are_stable():
    assert names.cronjob_name("2024_credit") == names.cronjob_name("2024_credit")
    assert names.inference_service_name("Credit_Default", "staging", NAMESPACE) == (
        "credit-default--pjru5wmxcsqj2-staging"
    ), "a name already applied to a cluster must not change from one version of mlopshub to the next"


def test_models_whose_names_read_the_same_never_share_an_object():
    # Two teams' models in one namespace: one must not replace the other's endpoint or schedule.
    models = [
        "credit-default",
        "Credit_Default",
        "credit_default",
        "credit.default",
        "CREDIT-DEFAULT",
        "credit--default",
        "2024-credit",
        "2024_credit",
        "m-2024-credit",
        "a" * 62 + "b",
        "a" * 62 + "c",
    ]
    # A model named after another's changed name (its hash included) still gets a name of its own.
    models.append(names.inference_service_name("2024_credit", "production", NAMESPACE).removesuffix("-production"))
    models.append(names.cronjob_name("Credit_Default").removesuffix("-batch"))
    for make in (
        lambda model: names.inference_service_name(model, "production", NAMESPACE),
        lambda model: names.inference_service_name(model, "staging", NAMESPACE),
        names.cronjob_name,
        lambda model: names.job_name(model, "3", "staging"),
    ):
        made = [make(model) for model in models]
        assert len(set(made)) == len(models), made


def test_a_namespace_too_long_for_kserve_host_names_is_named():
    namespace = "models-of-the-retail-and-small-business-credit-division"
    with pytest.raises(ValueError, match=f"namespace '{namespace}'.*shorter namespace"):
        names.inference_service_name("credit", "production", namespace)
    with pytest.raises(ValueError, match="name suffix 'v1.2-staging'"):
        names.job_name("credit", "1.2", "staging")


def release(model: str, kind: str) -> dict:
    batch = {"input": "data/loans.csv", "rev": "v2", "schedule": "0 6 * * *", "repo": None}
    return {"id": "r", "model_name": model, "version": "12", "team": "sme-credit", "kind": kind,
            "batch": batch if kind == "batch" else None}  # fmt: skip


@pytest.mark.parametrize("model", ["2024_credit", "x" * 63, AWKWARD[-2]])
@pytest.mark.parametrize("stage", kserve.STAGES)
def test_batch_objects_with_awkward_names_are_valid_kubernetes(model, stage):
    (document,) = manifests.release_objects(release(model, "batch"), stage)
    limit = 52 if document["kind"] == "CronJob" else 63
    assert len(document["metadata"]["name"]) <= limit
    assert all(LABEL_VALUE.fullmatch(value) and len(value) <= 63 for value in document["metadata"]["labels"].values())
    assert document["metadata"]["annotations"]["mlopshub.io/model"] == model
    for version in ("1.33", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.skipif(not KSERVE_SCHEMA_FILE.exists(), reason=f"KServe's schema not found at {KSERVE_SCHEMA_FILE}")
@pytest.mark.parametrize("model", ["2024_credit", "x" * 63, "Credit_Default"])
@pytest.mark.parametrize("stage", kserve.STAGES)
def test_inference_services_with_awkward_names_are_valid_for_kserve(model, stage):
    (document,) = manifests.release_objects(release(model, "online"), stage, storage_uri="s3://mlflow/1/a/model")
    assert kserve_errors(document) == []
    assert KSERVE_NAME.fullmatch(document["metadata"]["name"])
    assert all(LABEL_VALUE.fullmatch(value) and len(value) <= 63 for value in document["metadata"]["labels"].values())


def render(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mlopshub.cli", "serving", "render", "--model", "2024_credit", "--version", "3"]
    return subprocess.run([*command, "--team", "sme-credit", *arguments], capture_output=True, text=True)


def test_cli_renders_what_the_stage_asks_for_a_batch_model():
    staging = render("--kind", "batch", "--input", "data/new.csv", "--stage", "staging")
    assert staging.returncode == 0, staging.stderr
    (job,) = list(yaml.safe_load_all(staging.stdout))
    assert job["kind"] == "Job" and job["metadata"]["name"] == names.job_name("2024_credit", "3", "staging")
    production = render("--kind", "batch", "--input", "data/new.csv", "--stage", "production")
    assert production.returncode == 0, production.stderr
    (cronjob,) = list(yaml.safe_load_all(production.stdout))
    assert cronjob["kind"] == "CronJob" and cronjob["metadata"]["name"] == names.cronjob_name("2024_credit")
    command = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--output") + 1] == "/scores/2024_credit/production"


def test_cli_names_what_an_online_render_misses():
    missing = render("--stage", "staging")
    assert missing.returncode == 1 and "--storage-uri" in missing.stderr
    online = render("--stage", "staging", "--storage-uri", "s3://mlflow/x")
    assert online.returncode == 0, online.stderr
    assert yaml.safe_load(online.stdout)["metadata"]["name"] == names.inference_service_name(
        "2024_credit", "staging", NAMESPACE
    )
