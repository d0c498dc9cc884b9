"""The Teams page in Chromium, as a platform admin (issue 14): a bad team name is named next to its field and makes
nothing; a good team lets its member start the team's profile; a quota lowered in the page refuses the member's next
spawn with the quota's words; usage downloads as CSV; archiving asks first. No script error on the way."""

from pathlib import Path

import pytest
from playwright.sync_api import expect
from testing_support import until

pytestmark = pytest.mark.e2e

# Other suites share the platform: names used nowhere else (teams there: quota-race, fraud-ops).
ADMIN = "pia-teams"
MEMBER = "milo-teams"
TEAM = "page-analytics"
CSV_HEADER = "team,user,sessions,server_hours,cpu_hours,memory_gib_hours,gpu_hours"


def sign_in(page, platform, name, password, next_url):
    page.goto(f"{platform.url}/hub/login?next={next_url}")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login_submit")


def team_row(page, name):
    return page.locator(f'[data-testid="team-row"][data-team="{name}"]')


def shown_after_refresh(page, refresh, locator, text) -> bool:
    """Click the ``refresh`` button and say whether ``locator`` then shows ``text`` (the hub and the usage poll
    see a server a few seconds apart)."""
    page.get_by_test_id(refresh).click()
    try:
        expect(locator).to_contain_text(text, timeout=3_000)
    except AssertionError:
        return False
    return True


def create_team(form, name):
    form.get_by_test_id("field-name").fill(name)
    form.get_by_test_id("create-submit").click()


def test_an_admin_makes_a_team_lowers_its_quota_and_exports_usage_in_the_teams_page(page, platform, artifacts):
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    password = platform.add_user(ADMIN, "platform-admins")
    member_password = platform.add_user(MEMBER, None)
    sign_in(page, platform, ADMIN, password, "/services/pipeline/teams/")
    form = page.get_by_test_id("create-form")
    expect(form).to_be_visible(timeout=120_000)  # after the hub's OAuth, back on the page asked for

    # A name that is no group name: the message sits next to the name field, nothing typed is lost, nothing is made.
    form.get_by_test_id("field-display_name").fill("Page analytics")
    form.get_by_test_id("field-members").fill(MEMBER)
    form.get_by_test_id("field-profile-python-cpu").check()
    form.get_by_test_id("field-quotas.max_servers").fill("2")
    form.get_by_test_id("field-threshold-metric").select_option("auc")
    form.get_by_test_id("field-threshold-min").fill("0.7")
    form.get_by_test_id("field-holdout-path").fill("data/holdout.csv")
    form.get_by_test_id("field-holdout-target").fill("default")
    create_team(form, "Page Analytics!")
    expect(form.locator('[data-testid="field-error"][data-field="name"]')).to_contain_text("lower-case letters")
    expect(form.get_by_test_id("field-name")).to_have_value("Page Analytics!")
    expect(form.get_by_test_id("field-members")).to_have_value(MEMBER)
    groups = [group["name"] for group in platform.api("GET", "groups").json()]
    assert "Page Analytics!" not in groups and TEAM not in groups

    # A good name: the team is in the table with its member, the form is empty again, the hub has the group.
    create_team(form, TEAM)
    row = team_row(page, TEAM)
    expect(row.get_by_test_id("team-members")).to_contain_text(MEMBER)
    expect(row).to_contain_text("auc")
    expect(form.get_by_test_id("field-name")).to_have_value("")
    expect(form.get_by_test_id("field-error")).to_have_count(0)
    assert platform.api("GET", f"groups/{TEAM}").json()["users"] == [MEMBER]

    # The member signs in (another browser) and is offered exactly the team's profiles, with no restart.
    member_view = page.context.browser.new_context()
    try:
        spawn_page = member_view.new_page()
        sign_in(spawn_page, platform, MEMBER, member_password, "/hub/spawn")
        spawn_page.locator("#mlopshub-profiles").wait_for(timeout=120_000)
        offered = spawn_page.locator("input[name=profile]").evaluate_all("inputs => inputs.map(i => i.value)")
        assert offered == ["python-cpu"], offered
        # No Teams link for a member: it is only for those who manage teams.
        assert spawn_page.locator("#mlopshub-teams-link").count() == 0
    finally:
        member_view.close()
    # ... and the admin has the link in the hub's navigation bar.
    page.goto(f"{platform.url}/hub/home")
    expect(page.locator("#mlopshub-teams-link")).to_be_visible()
    page.locator("#mlopshub-teams-link").click()
    expect(form).to_be_visible(timeout=60_000)
    row = team_row(page, TEAM)

    # A member the hub does not know is refused in the row, with the reason.
    row.get_by_test_id("member-input").fill("nobody-teams-page")
    row.get_by_test_id("member-add").click()
    expect(row.get_by_test_id("row-error")).to_contain_text("no such user")
    expect(row.get_by_test_id("team-members")).not_to_contain_text("nobody-teams-page")

    # The member starts the team's profile; the page shows the server in the team's use and in what runs now.
    started = platform.spawn(MEMBER, "python-cpu")
    assert started.status_code in (201, 202), started.text
    try:
        platform.wait_ready(MEMBER)
        until(
            lambda: shown_after_refresh(page, "teams-refresh", row.get_by_test_id("team-use"), MEMBER),
            f"{MEMBER}'s server in the use of {TEAM}",
            timeout=90,
            every=2,
        )
        until(
            lambda: shown_after_refresh(page, "usage-refresh", page.get_by_test_id("usage-running"), MEMBER),
            f"{MEMBER}'s server in the usage's running list",
            timeout=90,
            every=2,
        )

        # Lowered below what runs: allowed, with a warning; nothing running is stopped.
        row.get_by_test_id("team-edit").click()
        edit = page.get_by_test_id("edit-form")
        edit.get_by_test_id("field-quotas.max_servers").fill("0")
        edit.get_by_test_id("edit-save").click()
        expect(page.get_by_test_id("warnings")).to_contain_text("quotas.max_servers")
        expect(row.get_by_test_id("team-quotas")).to_contain_text("Servers (team): 0")
        expect(edit).to_have_count(0)
        assert platform.api("GET", f"users/{MEMBER}").json()["servers"], "lowering a quota stops nothing"
    finally:
        platform.stop(MEMBER)

    refused = platform.spawn(MEMBER, "python-cpu")
    if refused.status_code in (201, 202):
        platform.stop(MEMBER)
    assert refused.status_code == 429, refused.text
    assert f"team {TEAM}" in refused.json()["message"] and "quota of 0" in refused.json()["message"]

    # Usage as CSV: the same period and grouping as the table shows.
    page.get_by_test_id("usage-refresh").click()
    expect(page.locator(f'[data-testid="usage-row"][data-team="{TEAM}"]')).to_have_count(1)
    with page.expect_download() as download:
        page.get_by_test_id("usage-csv").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == CSV_HEADER
    assert any(line.startswith(f"{TEAM},") for line in lines[1:]), lines

    # Archiving asks first, then marks the team.
    row.get_by_test_id("team-archive").click()
    row.get_by_test_id("team-archive-confirm").click()
    expect(row.get_by_test_id("archived-badge")).to_be_visible()
    expect(page.get_by_test_id("page-status")).to_contain_text(f"Team {TEAM} is archived")

    page.screenshot(path=str(artifacts / "teams-page.png"), full_page=True)
    assert page_errors == []
