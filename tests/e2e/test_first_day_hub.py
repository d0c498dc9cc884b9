"""The hub on a first day, in Chromium: the admin guide's set-up order, the MLflow UI opened like any hub service,
messages that say what to do, and a workspace's file browser that leaves no 500s in the hub's log."""

import re
import subprocess

import pytest
import requests
from testing_support import until

pytestmark = pytest.mark.e2e


def sign_in(page, platform, name, password, next_url=""):
    page.goto(f"{platform.url}/hub/login" + (f"?next={next_url}" if next_url else ""))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login_submit")


def as_admin(page, platform):
    """The browser carries the first admin's hub session (``platform.admin_session()`` signed up and in)."""
    session = platform.admin_session()
    page.context.add_cookies(
        [{"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": c.path or "/"} for c in session.cookies]
    )


def mlflow_api(platform, token, workspace, path, body):
    response = requests.post(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}",
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": workspace},
        json=body,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_signed_in_browser_opens_the_mlflow_ui_like_any_hub_service(page, platform, artifacts):
    password = platform.add_user("uma", "sme-credit")
    token = platform.token_for("uma")
    experiment = mlflow_api(platform, token, "sme-credit", "experiments/create", {"name": "uma-first-day"})
    body = {"experiment_id": experiment["experiment_id"], "run_name": "uma-first-run"}
    run_id = mlflow_api(platform, token, "sme-credit", "runs/create", body)["run"]["info"]["run_id"]
    sign_in(page, platform, "uma", password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))

    # Typed in the address bar: the hub's OAuth signs the browser in to MLflow, back on the page asked for.
    page.goto(f"{platform.url}/services/mlflow/")
    page.get_by_text("Select a workspace").first.wait_for(timeout=120_000)
    assert page.get_by_text("retail-scoring", exact=True).count() == 0  # only the user's team
    page.get_by_text("sme-credit", exact=True).first.click()
    page.get_by_text("uma-first-day").first.wait_for()
    page.screenshot(path=str(artifacts / "mlflow-ui-through-hub-oauth.png"))

    # MLflow's own "View run at" link (a fragment route) in a browser signed in to the hub only.
    fresh = page.context.browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        sign_in(fresh, platform, "uma", password)
        fresh.wait_for_url(re.compile(r".*/hub/spawn.*"))
        link = f"{platform.url}/services/mlflow/#/experiments/{experiment['experiment_id']}/runs/{run_id}"
        fresh.goto(f"{link}?workspace=sme-credit")  # as `mlflow.start_run()` prints it
        fresh.get_by_text("uma-first-run").first.wait_for(timeout=120_000)
        assert fresh.url == f"{link}?workspace=sme-credit"
    finally:
        fresh.context.close()


def test_the_hub_services_menu_opens_mlflow(page, platform):
    password = platform.add_user("umar", "retail-scoring")
    sign_in(page, platform, "umar", password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    page.goto(f"{platform.url}/hub/home")
    page.get_by_role("button", name="Services").click()
    page.get_by_role("link", name="mlflow").click()
    page.wait_for_url(re.compile(r".*/services/mlflow/.*"))
    page.get_by_text("Select a workspace").first.wait_for(timeout=120_000)
    assert page.get_by_text("retail-scoring", exact=True).count() == 1


def test_signing_out_of_the_hub_in_the_browser_ends_its_mlflow_ui(page, platform):
    password = platform.add_user("ulla", "sme-credit")
    sign_in(page, platform, "ulla", password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    page.goto(f"{platform.url}/services/mlflow/")
    page.get_by_text("Select a workspace").first.wait_for(timeout=120_000)
    page.goto(f"{platform.url}/hub/logout")
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    assert not [cookie for cookie in page.context.cookies() if cookie["name"] == "mlopshub-mlflow-token"]
    # Back to the MLflow UI: the hub asks for a sign-in again; MLflow shows nothing meanwhile.
    page.goto(f"{platform.url}/services/mlflow/")
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    assert page.get_by_text("Select a workspace").count() == 0


def test_the_admin_guides_order_sign_up_authorize_then_add_to_a_team(page, browser, platform, artifacts):
    # 1. The new user signs up on the real page.
    page.goto(f"{platform.url}/hub/signup")
    page.fill("input[name=username]", "vic")
    page.fill("input[name=signup_password]", "vic-first-day-1")
    page.fill("input[name=signup_password_confirmation]", "vic-first-day-1")
    page.click("input[type=submit], button[type=submit]")
    page.locator(".alert").first.wait_for()

    # 2. The admin authorizes them at /hub/authorize, in another browser.
    admin = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    admin.set_default_timeout(60_000)
    try:
        as_admin(admin, platform)
        admin.goto(f"{platform.url}/hub/authorize")
        admin.click("tr#vic a[href$='/authorize/vic']")
        admin.locator("tr#vic.success").wait_for()  # NativeAuthenticator's row of an authorized sign-up

        # 3. ... and adds them to the team's group in the admin page: Add user, then Apply.
        admin.goto(f"{platform.url}/hub/admin#/groups")
        admin.get_by_role("link", name="sme-credit").first.click()
        admin.fill("#username-input", "vic")
        admin.click("#validate-user")
        # Before the fix: '"vic" is not a valid JupyterHub user.' until vic had signed in once.
        admin.locator(".users-container .item.selected", has_text="vic").wait_for()
        assert admin.get_by_text("is not a valid JupyterHub user").count() == 0
        admin.click("#submit")
        until(lambda: "vic" in platform.api("GET", "groups/sme-credit").json()["users"], "vic in sme-credit")
        admin.screenshot(path=str(artifacts / "admin-added-vic-to-sme-credit.png"))
    finally:
        admin.context.close()

    # The user signs in and may start the team's profile.
    sign_in(page, platform, "vic", "vic-first-day-1")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    assert page.locator("input[name=profile][value=python-cpu]").count() == 1


def test_a_refused_sign_up_names_only_the_rule_the_password_broke(page, platform):
    page.goto(f"{platform.url}/hub/signup")
    page.fill("input[name=username]", "wes")
    page.fill("input[name=signup_password]", "short-pw")
    page.fill("input[name=signup_password_confirmation]", "short-pw")
    page.click("input[type=submit], button[type=submit]")
    message = page.locator(".alert").first.inner_text()
    assert "needs at least 10" in message
    assert "spaces" not in message and "common" not in message


def test_the_first_admin_in_no_team_is_told_how_to_join_one_and_gets_no_start(page, platform, artifacts):
    as_admin(page, platform)
    page.goto(f"{platform.url}/hub/spawn")
    notice = page.locator("#mlopshub-no-profiles")
    assert "no team" in notice.inner_text() and "Add user, then Apply" in notice.inner_text()
    assert notice.locator("a[href$='admin#/groups']").count() == 1
    assert not page.get_by_role("button", name="Start").is_visible()
    page.screenshot(path=str(artifacts / "spawn-page-admin-in-no-team.png"))


def test_the_admin_page_shows_a_teams_quotas_as_values(page, platform, artifacts):
    as_admin(page, platform)
    page.goto(f"{platform.url}/hub/admin#/groups")
    page.get_by_role("link", name="retail-scoring").first.click()
    page.locator(".properties-table").wait_for()
    values = dict(
        zip(
            page.locator(".properties-table tbody tr td:nth-child(1) input").evaluate_all("i => i.map(x => x.value)"),
            page.locator(".properties-table tbody tr td:nth-child(2) input").evaluate_all("i => i.map(x => x.value)"),
            strict=False,
        )
    )
    page.screenshot(path=str(artifacts / "admin-group-properties.png"), full_page=True)
    assert "[object Object]" not in values.values(), values
    assert values["quotas.gpus"] == "2" and values["quotas.max_servers"] == "20"


@pytest.fixture
def data_dir_in_a_clone(platform):
    """The data dir inside a git repository of another account, as `make up`'s ./.mlopshub in a clone is."""
    subprocess.run(["git", "init", "-q", str(platform.data_dir)], check=True)
    yield
    subprocess.run(["rm", "-rf", str(platform.data_dir / ".git")], check=True)


def test_browsing_folders_that_are_no_repository_leaves_no_500_in_the_hub_log(page, platform, data_dir_in_a_clone):
    password = platform.add_user("xena", "sme-credit")
    platform.start("xena", "python-cpu")
    try:
        token = platform.token_for("xena")
        platform.workspace("xena", "api/contents/notes", token, "PUT", json={"type": "directory"})
        log = platform.data_dir / "logs" / "hub.log"
        sign_in(page, platform, "xena", password, next_url="/user/xena/lab/tree/notes")
        page.wait_for_url(re.compile(r".*/user/xena/lab.*"), timeout=120_000)
        # The Git extension asks show_prefix for the home, then for the folder the file browser shows.
        until(lambda: "POST /user/xena/git/notes/show_prefix" in log.read_text(), "the Git panel asked about notes/")
        failures = [line for line in log.read_text().splitlines() if re.search(r" 5\d\d POST /user/xena/git/", line)]
        assert failures == []
    finally:
        platform.stop("xena")
