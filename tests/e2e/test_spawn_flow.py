"""A data scientist signs in on the real login page, picks a profile, lands in JupyterLab."""

import re

import pytest

pytestmark = pytest.mark.e2e


def sign_in(page, platform, name, password):
    page.goto(f"{platform.url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login_submit")


def test_sign_in_pick_allowed_profile_and_reach_jupyterlab(page, platform, artifacts):
    password = platform.add_user("grace", "retail-scoring")
    sign_in(page, platform, "grace", password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    offered = page.locator("input[name=profile]").evaluate_all("inputs => inputs.map(i => i.value)")
    assert offered == ["python-cpu", "r-cpu"]  # the team's CPU profiles; no GPU on this machine
    page.screenshot(path=str(artifacts / "spawn-form.png"), full_page=True)

    page.check("input[name=profile][value=r-cpu]")
    page.click("form#spawn_form input[type=submit], form#spawn_form button[type=submit]")
    page.wait_for_url(re.compile(r".*/user/grace/lab.*"), timeout=180_000)
    page.locator(".jp-LauncherCard[title*='R']").first.wait_for(timeout=120_000)
    cards = page.locator(".jp-Launcher-section").first.locator(".jp-LauncherCard").all_inner_texts()
    assert any("R" == card.strip() for card in cards) and any("Python" in card for card in cards)
    page.screenshot(path=str(artifacts / "jupyterlab-r-cpu.png"))
    assert page.locator("text=official Jupyter news").count() == 0  # workspaces don't call out to the internet


def test_wrong_password_is_refused_on_the_login_page(page, platform):
    platform.add_user("heidi", "sme-credit")
    sign_in(page, platform, "heidi", "not-the-password")
    page.locator("text=Invalid username or password").wait_for()  # raises if the page never says it


def test_user_without_team_is_told_to_ask_for_access(page, platform):
    password = platform.add_user("ivan", None)
    sign_in(page, platform, "ivan", password)
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    assert "Ask for access to your team" in page.locator("#mlopshub-no-profiles").inner_text()
