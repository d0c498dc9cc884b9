"""The sidebar as an index and the work in main-area tabs, in Chromium, as each role uses them.

Dora (team sme-credit) trained a model and published it; she follows it in
its release tab, its audit trail included, and the publish form refuses a name over 63 characters
instead of cutting it. Vic (a model validator in no team) sees only Approvals
and the Audit log, with a badge for what awaits him; he reviews the release
on its review page, tries the staging endpoint from there, and rejects it with
a reason after a confirmation; the card leaves Approvals by itself. Ada (a
platform admin) filters the audit log by model and exports it as CSV.
"""

import csv
import re
import time

import pytest
import requests
from lab_pages import open_sidebar
from release_flow import make_project, train

pytestmark = pytest.mark.e2e

TEAM = "sme-credit"
MODEL = "credit-views"
RELEASE_TIMEOUT = 240_000


def wait_for_state(platform, token, release_id, states, timeout=240):
    headers = {"Authorization": f"token {token}"}
    url = f"{platform.url}/services/pipeline/api/releases/{release_id}"
    deadline = time.monotonic() + timeout
    while True:
        release = requests.get(url, headers=headers, timeout=30).json()
        if release["state"] in states or time.monotonic() > deadline:
            assert release["state"] in states, release
            return release
        time.sleep(1)


@pytest.fixture(scope="module")
def dora(platform):
    """A data scientist whose model, trained on versioned data, awaits approval."""
    password = platform.add_user("dora", TEAM)
    platform.start("dora", "python-cpu")
    token = platform.token_for("dora")
    assert "project ready" in platform.execute("dora", token, make_project(seed=5))
    run_id = platform.execute("dora", token, train(1.0)).strip().splitlines()[-1]
    body = {"model_uri": f"runs:/{run_id}/model", "name": MODEL, "kind": "online", "description": "SME defaults"}
    answer = requests.post(
        f"{platform.url}/services/pipeline/api/releases",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    assert answer.status_code == 201, answer.text
    release = wait_for_state(platform, token, answer.json()["id"], {"awaiting_approval"})
    yield password, token, run_id, release
    platform.stop("dora")


@pytest.fixture(scope="module")
def vic(platform):
    """A model validator in no team, with a workspace of his own."""
    password = platform.add_user("vico", "model-validators")
    platform.start("vico", "python-cpu")
    yield password
    platform.stop("vico")


@pytest.fixture(scope="module")
def ada(platform):
    """A platform admin (in a team too, for a workspace: admins alone get no profile)."""
    password = platform.add_user("ada", "retail-scoring")
    assert platform.api("POST", "groups/platform-admins/users", json={"users": ["ada"]}).status_code == 200
    platform.start("ada", "python-cpu")
    yield password
    platform.stop("ada")


def test_the_release_tab_shows_timeline_gates_and_the_example_from_the_signature(page, platform, dora, artifacts):
    password, _, run_id, release = dora
    open_sidebar(page, platform, "dora", password)
    row = page.locator(f"[data-testid=mlopshub-release-row][data-release='{release['id']}']")
    row.locator(".mlopshub-open-release").click()
    tab = page.locator(f"[data-testid=mlopshub-release-page][data-release='{release['id']}']")
    tab.locator("[data-testid=mlopshub-release-state][data-state=awaiting_approval]").wait_for()
    assert tab.locator(".mlopshub-timeline li[data-step=gates][data-status=passed]").count() == 1
    assert tab.locator("[data-testid=mlopshub-gate][data-passed=true]").count() == 4
    example = tab.locator("[data-testid=mlopshub-example-request][data-stage=staging]").inner_text()
    assert '"columns":["amount","income"]' in example and f"/services/models/{MODEL}/staging/invocations" in example
    # Her release's audit trail, though she is no validator: only its entries, from her publish on.
    trail = tab.locator("[data-testid=mlopshub-page-audit] li[data-action]")
    trail.last.wait_for()
    assert trail.first.get_attribute("data-action") == "registered" and "by dora" in trail.first.inner_text()
    actions = trail.evaluate_all("items => items.map(item => item.dataset.action)")
    assert {"gates passed", "staging ready"} <= set(actions), actions
    # Opening it again activates the same tab.
    row.locator(".mlopshub-open-release").click()
    assert page.locator("[data-testid=mlopshub-release-page]").count() == 1
    page.screenshot(path=str(artifacts / "views-release-tab.png"))

    # A name over 63 characters is refused with the rule, never cut.
    model_row = page.locator(f"[data-testid=mlopshub-model-row][data-run='{run_id}']")
    if not model_row.is_visible():
        page.locator("#mlopshub-refresh-models").click()
    model_row.locator("[data-testid=mlopshub-publish]").click()
    name = page.locator("[data-testid=mlopshub-publish-name]")
    name.fill("x" * 70)
    assert name.input_value() == "x" * 70
    assert "70 characters; at most 63" in page.locator("[data-testid=mlopshub-publish-problem]").inner_text()
    assert "1 to 63 letters" in page.locator("[data-testid=mlopshub-publish-rule]").inner_text()
    assert page.locator("[data-testid=mlopshub-publish-submit]").is_disabled()


def test_a_validator_reviews_tries_staging_and_rejects_with_a_reason(page, platform, dora, vic, artifacts):
    _, token, _, release = dora
    open_sidebar(page, platform, "vico", vic)
    sidebar = page.locator("#mlopshub-sidebar")
    card = sidebar.locator(f"[data-testid=mlopshub-approval][data-release='{release['id']}']")
    card.wait_for()
    # Vic is in no team: no Data, Experiments or Models sections that would only say "no team".
    assert sidebar.locator("#mlopshub-data, #mlopshub-experiments, #mlopshub-models").count() == 0
    badge = sidebar.locator("#mlopshub-approvals [data-testid=mlopshub-badge]")
    assert int(badge.inner_text()) >= 1
    assert sidebar.locator("[data-testid=mlopshub-open-audit]").is_visible()

    card.locator("[data-testid=mlopshub-review]").click()
    review = page.locator(f"[data-testid=mlopshub-review-page][data-release='{release['id']}']")
    auc = review.locator("[data-testid=mlopshub-evidence] tr[data-metric=auc]")
    auc.wait_for()
    assert auc.get_attribute("data-met") == "true" and "≥ 0.75" in auc.inner_text()
    commit = review.locator("[data-testid=mlopshub-page-lineage] dd[data-fact=commit]").inner_text()
    assert re.fullmatch(r"[0-9a-f]{40}", commit.strip()), commit
    assert "data/loans.csv" in review.locator("[data-testid=mlopshub-page-lineage]").inner_text()

    review.locator("[data-testid=mlopshub-try]").click()
    answer = review.locator("[data-testid=mlopshub-try-answer]")
    answer.wait_for()
    assert answer.get_attribute("data-status") == "200" and "predictions" in answer.inner_text()
    assert review.locator("[data-testid=mlopshub-page-audit] li[data-action]").count() >= 1

    review.locator("[data-testid=mlopshub-reject]").click()
    assert "Say why you reject it" in review.locator("[data-testid=mlopshub-decision-status]").inner_text()
    review.locator("[data-testid=mlopshub-decision-comment]").fill("hold-out too small for SME loans")
    page.screenshot(path=str(artifacts / "views-review-page.png"))
    review.locator("[data-testid=mlopshub-reject]").click()
    page.locator(".jp-Dialog .jp-mod-accept", has_text="Reject").click()
    review.locator("[data-testid=mlopshub-release-state][data-state=rejected]").wait_for()
    # The rejected card leaves Approvals without a Refresh.
    card.wait_for(state="detached")
    assert wait_for_state(platform, token, release["id"], {"rejected"})["reason"] == "hold-out too small for SME loans"


def test_an_admin_filters_the_audit_log_by_model_and_exports_it(page, platform, dora, ada, artifacts):
    _, _, _, release = dora
    open_sidebar(page, platform, "ada", ada)
    page.locator("[data-testid=mlopshub-open-audit]").click()
    audit = page.locator("[data-testid=mlopshub-audit-page]")
    audit.locator("[data-testid=mlopshub-audit-entries]").wait_for()
    audit.locator("[data-testid=mlopshub-audit-model]").fill(MODEL)
    audit.locator("[data-testid=mlopshub-audit-apply]").click()
    # The table shows every model's entries until the filtered page arrives: wait for that page, whose rows are
    # all of MODEL (a filter that never applies times out here).
    page.wait_for_function(
        """model => {
            const rows = [...document.querySelectorAll("[data-testid=mlopshub-audit-entries] tbody tr")];
            return rows.length > 0 && rows.every(row => row.dataset.model === model);
        }""",
        arg=MODEL,
        timeout=60_000,
    )
    rows = audit.locator("[data-testid=mlopshub-audit-entries] tbody tr")
    assert release["id"] in audit.locator("[data-testid=mlopshub-audit-entries]").inner_text()
    page.screenshot(path=str(artifacts / "views-audit-log.png"))

    with page.expect_download() as download:
        audit.locator("[data-testid=mlopshub-audit-export]").click()
    path = download.value.path()
    with open(path, newline="") as exported:
        lines = list(csv.reader(exported))
    assert lines[0][:4] == ["id", "at", "actor", "action"]
    assert len(lines) == 1 + rows.count() and {line[5] for line in lines[1:]} == {MODEL}


def test_the_sidebar_remembers_a_collapsed_section(page, platform, dora):
    password, *_ = dora
    open_sidebar(page, platform, "dora", password)
    header = page.locator("[data-testid=mlopshub-section-header][data-section=mlopshub-data]")
    # Collapsing saves the user's setting; the reload reads it back.
    with page.expect_response(lambda r: "api/settings/mlopshub-lab" in r.url and r.request.method == "PUT"):
        header.click()
    assert header.get_attribute("aria-expanded") == "false"
    assert not page.locator("#mlopshub-data .mlopshub-section-body").is_visible()
    page.reload()
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='mlopshub-sidebar']").wait_for()
    if not page.locator("#mlopshub-sidebar").is_visible():
        page.locator(".jp-SideBar .lm-TabBar-tab[data-id='mlopshub-sidebar']").click()
    header = page.locator("[data-testid=mlopshub-section-header][data-section=mlopshub-data]")
    header.wait_for()
    assert header.get_attribute("aria-expanded") == "false"
    header.click()
    assert page.locator("#mlopshub-data .mlopshub-section-body").is_visible()
