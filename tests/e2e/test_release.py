"""One-click publish to production, clicked in the sidebar as the publisher and the model validator would.

Dana (team sme-credit, also a model validator) trains two scikit-learn models
in a notebook on DVC-versioned data and publishes them from the sidebar's
Models section; the gates pass and the staging endpoint answers the four
MLflow input formats; her own approval is refused with the pipeline's reason;
Victor (model validator only) approves on his review page; production answers;
Dana rolls back and the previous version serves again.
"""

import pytest
import requests
from lab_pages import open_sidebar
from release_flow import FORMATS, PROJECT, make_project, train

pytestmark = pytest.mark.e2e

TEAM = "sme-credit"
MODEL = "credit-scorecard"
#: A release moves through registry, gates and a model server start: give it time on two cores.
RELEASE_TIMEOUT = 240_000


def notebook(source: str) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    return {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def dana(platform):
    """A data scientist who is also a validator: her notebook trained two models from a versioned project."""
    password = platform.add_user("dana", TEAM)
    assert platform.api("POST", "groups/model-validators/users", json={"users": ["dana"]}).status_code == 200
    platform.start("dana", "python-cpu")
    token = platform.token_for("dana")
    assert "project ready" in platform.execute("dana", token, make_project(seed=3))
    kernel = platform.open_notebook("dana", token, f"{PROJECT}/train.ipynb", notebook(train(1.0)), "python3")
    runs = [platform.run_in_kernel("dana", token, kernel, train(c)).strip().splitlines()[-1] for c in (1.0, 0.02)]
    yield password, token, runs
    platform.stop("dana")


@pytest.fixture(scope="module")
def victor(platform):
    """A model validator with a workspace of his own (validators get python-cpu from the catalog)."""
    password = platform.add_user("victor-v", "model-validators")
    platform.start("victor-v", "python-cpu")
    yield password
    platform.stop("victor-v")


def publish(page, run_id, name=MODEL, until="awaiting_approval"):
    row = page.locator(f"[data-testid=mlopshub-model-row][data-run='{run_id}']")
    if not row.is_visible():
        page.locator("#mlopshub-refresh-models").click()
    row.wait_for(timeout=60_000)
    row.locator("[data-testid=mlopshub-publish]").click()
    form = page.locator("[data-testid=mlopshub-publish-form]")
    form.locator("[data-testid=mlopshub-publish-name]").fill(name)
    form.locator("[data-testid=mlopshub-publish-kind]").select_option("online")
    form.locator("[data-testid=mlopshub-publish-description]").fill("default probability of SME loans")
    form.locator("[data-testid=mlopshub-publish-submit]").click()
    release = page.locator("#mlopshub-release-box [data-testid=mlopshub-release]")
    release.locator(f"[data-testid=mlopshub-release-state][data-state={until}]").wait_for(timeout=RELEASE_TIMEOUT)
    return release, release.get_attribute("data-release")


def review_page(page, release_id):
    """The release's review page, opened from its card in Approvals (which follows the pipeline by itself)."""
    card = page.locator(f"[data-testid=mlopshub-approval][data-release='{release_id}']")
    card.wait_for(timeout=30_000)
    card.locator("[data-testid=mlopshub-review]").click()
    review = page.locator(f"[data-testid=mlopshub-review-page][data-release='{release_id}']")
    review.locator("[data-testid=mlopshub-decision]").wait_for()
    return review


def approve(page, review, comment):
    """Approve on the review page: the comment, then the confirmation dialog."""
    review.locator("[data-testid=mlopshub-decision-comment]").fill(comment)
    review.locator("[data-testid=mlopshub-approve]").click()
    page.locator(".jp-Dialog .jp-mod-accept", has_text="Approve").click()


def invoke(platform, token, stage, body):
    url = f"{platform.url}/services/models/{MODEL}/{stage}/invocations"
    return requests.post(url, json=body, headers={"Authorization": f"token {token}"}, timeout=60)


def production_version(platform, token):
    answer = requests.get(
        f"{platform.url}/services/pipeline/api/endpoints", headers={"Authorization": f"token {token}"}, timeout=30
    )
    served = [e for e in answer.json()["endpoints"] if e["model"] == MODEL and e["stage"] == "production"]
    return served[0]["version"] if served else None


def test_publish_approve_serve_and_roll_back_from_the_sidebar(page, browser, platform, dana, victor, artifacts):
    password, token, (first_run, second_run) = dana
    open_sidebar(page, platform, "dana", password)

    release, first = publish(page, first_run)
    gates = release.locator("[data-testid=mlopshub-gate]")
    assert gates.count() == 4 and release.locator("[data-testid=mlopshub-gate][data-passed=false]").count() == 0
    example = release.locator("[data-testid=mlopshub-example-request][data-stage=staging]").inner_text()
    assert f"/services/models/{MODEL}/staging/invocations" in example and "dataframe_split" in example
    page.screenshot(path=str(artifacts / "sidebar-release-staging.png"))
    for name, body in FORMATS.items():
        answer = invoke(platform, token, "staging", body)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2, (name, answer.text)

    # Four eyes: Dana is a validator, but this release is hers.
    review = review_page(page, first)
    approve(page, review, "my own model, looks fine")
    refused = review.locator("[data-testid=mlopshub-decision-status] [data-testid=mlopshub-error]")
    refused.wait_for()
    assert "needs a second person's approval" in refused.inner_text()

    validator = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    validator.set_default_timeout(60_000)
    open_sidebar(validator, platform, "victor-v", victor)
    review = review_page(validator, first)
    assert review.locator("header dd[data-fact=publisher]").inner_text().strip() == "dana"
    validator.screenshot(path=str(artifacts / "sidebar-approval.png"))
    approve(validator, review, "hold-out AUC and lineage reviewed")
    review.locator("[data-testid=mlopshub-release-state][data-state=production]").wait_for(timeout=RELEASE_TIMEOUT)
    release.locator("[data-testid=mlopshub-release-state][data-state=production]").wait_for(timeout=RELEASE_TIMEOUT)
    first_version = production_version(platform, token)
    assert invoke(platform, token, "production", FORMATS["inputs"]).status_code == 200

    # A second version goes the same way; then Dana rolls production back to the first.
    _, second = publish(page, second_run)
    approve(validator, review_page(validator, second), "second version reviewed")
    second_box = page.locator(f"#mlopshub-release-box [data-testid=mlopshub-release][data-release='{second}']")
    second_box.locator("[data-testid=mlopshub-release-state][data-state=production]").wait_for(timeout=RELEASE_TIMEOUT)
    assert production_version(platform, token) != first_version

    # "Releases of the team" follows the states by itself: no Refresh.
    row = page.locator(f"[data-testid=mlopshub-release-row][data-release='{second}'][data-state=production]")
    row.locator("[data-testid=mlopshub-rollback]").click()
    page.locator("[data-testid=mlopshub-rollback-reason]").fill("drift on last week's applications")
    page.locator("[data-testid=mlopshub-rollback-confirm]").click()
    page.locator(f"[data-testid=mlopshub-release-row][data-release='{first}'][data-state=production]").wait_for()
    assert production_version(platform, token) == first_version
    assert invoke(platform, token, "production", FORMATS["dataframe_records"]).status_code == 200
    page.screenshot(path=str(artifacts / "sidebar-release-rolled-back.png"))

    # The first version has no earlier one: its rollback is refused with the reason, and the refusal is in the
    # audit log the validator reads (issue 11, item 10).
    row = page.locator(f"[data-testid=mlopshub-release-row][data-release='{first}'][data-state=production]")
    row.locator("[data-testid=mlopshub-rollback]").click()
    row.locator("[data-testid=mlopshub-rollback-reason]").fill("one more step back")
    row.locator("[data-testid=mlopshub-rollback-confirm]").click()
    assert "no earlier production version" in row.locator("[data-testid=mlopshub-error]").inner_text()
    validator.locator("[data-testid=mlopshub-open-audit]").click()
    audit = validator.locator("[data-testid=mlopshub-audit-page]")
    audit.locator("[data-testid=mlopshub-audit-action]").fill("rollback refused")
    audit.locator("[data-testid=mlopshub-audit-apply]").click()
    refused = audit.locator("[data-testid=mlopshub-audit-entries] tbody tr", has_text=MODEL)
    refused.first.wait_for()
    assert "dana" in refused.first.inner_text() and "no earlier production version" in refused.first.inner_text()
    validator.screenshot(path=str(artifacts / "audit-rollback-refused.png"))
    validator.context.close()


def test_unpushed_training_data_stops_the_release_at_the_lineage_gate_with_the_fix(page, platform, dana, artifacts):
    password, token, _ = dana
    # The data scientist versions new data but forgets `dvc push`, then trains and publishes.
    assert "project ready" in platform.execute("dana", token, make_project(seed=11, push=False))
    run_id = platform.execute("dana", token, train(0.5)).strip().splitlines()[-1]
    open_sidebar(page, platform, "dana", password)
    release, _ = publish(page, run_id, name="credit-unpushed", until="gates_failed")
    lineage = release.locator("[data-testid=mlopshub-gate][data-gate=lineage][data-passed=false]")
    assert "not in the team's DVC remote" in lineage.inner_text()
    assert "dvc push" in lineage.locator(".mlopshub-gate-fix").inner_text()
    assert release.locator("[data-testid=mlopshub-example-request]").count() == 0, "nothing was deployed"
    page.screenshot(path=str(artifacts / "sidebar-release-gate-failed.png"))


def test_a_batch_model_is_published_from_the_sidebar_with_a_weekday_schedule(page, platform, dana, artifacts):
    password, token, runs = dana
    open_sidebar(page, platform, "dana", password)
    row = page.locator(f"[data-testid=mlopshub-model-row][data-run='{runs[0]}']")
    if not row.is_visible():
        page.locator("#mlopshub-refresh-models").click()
    row.wait_for(timeout=60_000)
    row.locator("[data-testid=mlopshub-publish]").click()
    form = page.locator("[data-testid=mlopshub-publish-form]")
    form.locator("[data-testid=mlopshub-publish-name]").fill("credit-nightly")
    assert form.locator("[data-testid=mlopshub-publish-batch]").count() == 0  # online: no batch settings
    form.locator("[data-testid=mlopshub-publish-kind]").select_option("batch")
    batch = form.locator("[data-testid=mlopshub-publish-batch]")
    batch.wait_for()
    submit = form.locator("[data-testid=mlopshub-publish-submit]")
    assert submit.is_disabled()
    assert "input" in form.locator("[data-testid=mlopshub-publish-batch-problem]").inner_text()
    batch.locator("[data-testid=mlopshub-publish-input]").fill("data/loans.csv")
    # A day name Kubernetes' CronJob refuses is refused by the pipeline, under the schedule field.
    batch.locator("[data-testid=mlopshub-publish-schedule]").fill("0 6 * * MON-FRY")
    submit.click()
    refusal = form.locator("[data-testid=mlopshub-publish-refusal][data-field='batch.schedule']")
    refusal.wait_for(timeout=60_000)
    assert "MON-FRY" in refusal.inner_text()
    # The weekday schedule a CronJob takes is taken: the release carries it to the pipeline.
    batch.locator("[data-testid=mlopshub-publish-schedule]").fill("0 6 * * MON-FRI")
    submit.click()
    release = page.locator("#mlopshub-release-box [data-testid=mlopshub-release]")
    release.wait_for(timeout=60_000)
    release_id = release.get_attribute("data-release")
    answer = requests.get(
        f"{platform.url}/services/pipeline/api/releases/{release_id}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    published = answer.json()
    assert published["kind"] == "batch" and published["model_name"] == "credit-nightly"
    assert published["batch"]["input"] == "data/loans.csv" and published["batch"]["schedule"] == "0 6 * * MON-FRI"
    page.screenshot(path=str(artifacts / "sidebar-batch-published.png"))
