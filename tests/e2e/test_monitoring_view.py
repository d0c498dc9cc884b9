"""The Monitoring view in Chromium: a production model that drifted, as its team and a model validator see it.

Mira (sme-credit) trained a model on versioned data; it was published and approved through the API (the
sidebar's publish and approval are clicked in tests/e2e/test_release.py); traffic from the training
distribution, then with ``income`` shifted, went to its production endpoint. In the sidebar the model is marked
drifted; its Monitoring view shows the traffic, ``income`` drifted and ``amount`` not, and "Check drift now"
checks again; the printable report opens in a tab with the validator's hub login.
"""

import re

import numpy as np
import pytest
from lab_pages import open_sidebar
from release_flow import Pipeline, make_project, train
from testing_support import until

pytestmark = pytest.mark.e2e

TEAM = "sme-credit"
MODEL = "credit-monitored"


def applicants(rng, shifted: bool) -> dict:
    income = rng.uniform(250, 450, 25) if shifted else rng.uniform(20, 200, 25)
    rows = np.column_stack([rng.uniform(1, 100, 25), income]).tolist()
    return {"dataframe_split": {"columns": ["amount", "income"], "data": rows}}


@pytest.fixture(scope="module")
def drifted(platform):
    """credit-monitored in production with normal then shifted traffic, and one drift check done."""
    password = platform.add_user("mira", TEAM)
    validator_password = platform.add_user("vlad", "model-validators")
    platform.start("mira", "python-cpu")
    token = platform.token_for("mira")
    assert "project ready" in platform.execute("mira", token, make_project(seed=9))
    run = platform.execute("mira", token, train(1.0)).strip().splitlines()[-1]
    mira, vlad = Pipeline(platform, token), Pipeline(platform, platform.token_for("vlad"))
    release = mira.wait(mira.publish(run, MODEL)["id"])
    assert release["state"] == "awaiting_approval", release["reason"]
    assert vlad.call("POST", f"releases/{release['id']}/approve", {"comment": "checked"}).status_code == 200
    assert mira.wait(release["id"], {"production", "failed"})["state"] == "production"
    rng = np.random.default_rng(4)
    for shifted in (False, True):
        for _ in range(20):
            assert mira.invoke(MODEL, "production", applicants(rng, shifted)).status_code == 200
    # Captures are written off the request path, within a fraction of a second.
    until(lambda: mira.call("GET", f"monitoring/{MODEL}").json()["capture"]["captured"] == 40, "40 requests captured")
    checked = mira.call("POST", f"monitoring/{MODEL}/drift?window=day")
    assert checked.status_code == 200 and checked.json()["drifted"], checked.text
    yield password, validator_password
    platform.stop("mira")


def test_the_team_sees_the_drifted_feature_and_the_validator_prints_the_report(
    page, browser, platform, drifted, artifacts
):
    password, validator_password = drifted
    open_sidebar(page, platform, "mira", password)
    row = page.locator(f"[data-testid=mlopshub-release-row][data-model={MODEL}][data-state=production]")
    row.wait_for(timeout=60_000)
    row.locator("[data-testid=mlopshub-monitoring-drifted]").wait_for(timeout=60_000)  # the sidebar's mark
    row.locator("[data-testid=mlopshub-open-monitoring]").click()

    view = page.locator("[data-testid=mlopshub-monitoring-page]")
    view.wait_for()
    income = view.locator("[data-testid=mlopshub-monitoring-drift-row][data-feature=income]")
    amount = view.locator("[data-testid=mlopshub-monitoring-drift-row][data-feature=amount]")
    income.wait_for(timeout=60_000)
    assert income.get_attribute("data-drifted") == "true"
    assert amount.get_attribute("data-drifted") == "false"
    traffic = view.locator("[data-testid=mlopshub-monitoring-traffic]")
    assert "40" in traffic.inner_text()  # the 40 requests sent
    view.locator("[data-testid=mlopshub-monitoring-quality]").wait_for()
    income.click()  # its baseline and live histograms
    view.locator("[data-testid=mlopshub-monitoring-histogram]").wait_for()
    view.locator("[data-testid=mlopshub-monitoring-check]").click()
    page.wait_for_timeout(1000)
    assert income.get_attribute("data-drifted") == "true"
    page.screenshot(path=str(artifacts / "monitoring-view-traffic.png"))
    view.locator("[data-testid=mlopshub-monitoring-histogram]").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "monitoring-view-drifted.png"))

    # The validator opens the printable report from the view, in a tab signed in through the hub.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    validator = context.new_page()
    validator.set_default_timeout(60_000)
    validator.goto(f"{platform.url}/hub/login?next=/hub/home")
    validator.fill("input[name=username]", "vlad")
    validator.fill("input[name=password]", validator_password)
    validator.click("#login_submit")
    validator.wait_for_url(re.compile(r".*/hub/home.*"))
    href = view.locator("[data-testid=mlopshub-monitoring-report]").get_attribute("href")
    assert href and MODEL in href
    validator.goto(f"{platform.url}/services/pipeline/monitoring/{MODEL}/report?window=day")
    report = validator.locator("[data-testid=mlopshub-monitoring-report]")
    report.wait_for()
    assert "DRIFT on income" in report.inner_text()
    validator.screenshot(path=str(artifacts / "monitoring-report.png"), full_page=True)
    context.close()
