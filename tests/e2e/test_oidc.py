"""Single sign-on: a real OIDC provider on loopback, the real hub, Chromium.

The provider (oidc-provider-mock, a real OpenID Connect provider built on
Authlib) issues RS256 ID tokens and userinfo with a ``groups`` claim.
"""

import json
import re
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import requests
from platform_under_test import Platform, free_port, reachable_dir

pytestmark = pytest.mark.e2e

USERS = [
    {"sub": "olivia", "preferred_username": "olivia", "email": "olivia@bank.test", "groups": ["sme-credit", "staff"]},
    {"sub": "peter", "preferred_username": "peter", "groups": ["platform-admins"]},
    {"sub": "quinn", "preferred_username": "quinn", "groups": ["marketing"]},
    {"sub": "rita", "preferred_username": "rita"},  # the IdP sends no groups claim
]


@contextmanager
def running_provider(port):
    """oidc-provider-mock on ``port`` with USERS, once its discovery document answers; its issuer URL."""
    args = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
    for user in USERS:
        args += ["--user-claims", json.dumps(user)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.2)
    try:
        yield issuer
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def provider():
    with running_provider(free_port()) as issuer:
        yield issuer


def sso_env(issuer: str) -> dict[str, str]:
    return {
        "MLOPSHUB_OIDC_ISSUER": issuer,
        "MLOPSHUB_OIDC_CLIENT_ID": "mlopshub",
        "MLOPSHUB_OIDC_CLIENT_SECRET": "test-client-secret",
    }


@pytest.fixture(scope="module")
def sso_platform(provider, tmp_path_factory):
    running = Platform(reachable_dir(tmp_path_factory), extra_env=sso_env(provider)).up()
    yield running
    running.down()


def sign_in_with_sso(page, platform, sub):
    page.goto(f"{platform.url}/hub/login")
    page.click("a#login_submit, a.btn-jupyter")
    page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    page.fill("input[name=sub]", sub)
    page.click("button:has-text('Authorize')")


def test_team_member_lands_on_spawn_form_with_team_profiles(page, sso_platform, artifacts):
    sign_in_with_sso(page, sso_platform, "olivia")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    offered = page.locator("input[name=profile]").evaluate_all("inputs => inputs.map(i => i.value)")
    assert offered == ["python-cpu"]  # sme-credit's CPU profile; python-gpu needs a GPU
    page.screenshot(path=str(artifacts / "sso-spawn-form.png"), full_page=True)
    user = sso_platform.api("GET", "users/olivia").json()
    assert user["groups"] == ["sme-credit"]  # the directory's other groups are not brought in
    assert user["admin"] is False


def test_admin_group_member_sees_the_admin_page(page, sso_platform, artifacts):
    sign_in_with_sso(page, sso_platform, "peter")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    page.goto(f"{sso_platform.url}/hub/admin")
    page.locator("text=Manage Groups").first.wait_for()
    page.screenshot(path=str(artifacts / "sso-admin-page.png"))
    assert sso_platform.api("GET", "users/peter").json()["admin"] is True


def test_user_outside_allowed_groups_is_refused(page, sso_platform):
    sign_in_with_sso(page, sso_platform, "quinn")
    page.wait_for_url(re.compile(r".*/hub/oauth_callback.*"))
    page.locator("text=403").first.wait_for()
    assert sso_platform.api("GET", "users/quinn").status_code == 404


def test_missing_groups_claim_signs_in_with_no_team_and_says_ask_for_access(page, sso_platform):
    sign_in_with_sso(page, sso_platform, "rita")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    assert "Ask for access to your team" in page.locator("#mlopshub-no-profiles").inner_text()
    assert sso_platform.api("GET", "users/rita").json()["groups"] == []


def test_auth_state_keeps_refresh_token_for_refresh(sso_platform, page):
    sign_in_with_sso(page, sso_platform, "olivia")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    state = sso_platform.api("GET", "users/olivia").json()["auth_state"]
    assert state and state.get("refresh_token")


def test_hub_starts_while_the_sso_is_down_and_sign_in_works_once_it_is_back(page, tmp_path_factory, artifacts):
    port = free_port()  # the issuer's port: nothing listens on it while the hub starts
    platform = Platform(reachable_dir(tmp_path_factory), extra_env=sso_env(f"http://127.0.0.1:{port}")).up()
    try:
        login = requests.get(f"{platform.url}/hub/login", timeout=60)
        assert login.status_code == 200 and "Sign-in is unavailable for now" in login.text
        attempt = requests.get(f"{platform.url}/hub/oauth_login", timeout=60, allow_redirects=False)
        assert attempt.status_code == 503 and "Sign-in is unavailable for now" in attempt.text
        assert attempt.headers["Retry-After"] == "30"
        page.goto(f"{platform.url}/hub/login")
        page.locator("#mlopshub-sign-in-unavailable").wait_for()
        page.screenshot(path=str(artifacts / "sso-down-login-page.png"))

        with running_provider(port):
            sign_in_with_sso(page, platform, "olivia")
            page.wait_for_url(re.compile(r".*/hub/spawn.*"))
            assert platform.api("GET", "users/olivia").json()["groups"] == ["sme-credit"]
            page.goto(f"{platform.url}/hub/logout")
            page.goto(f"{platform.url}/hub/login")
            assert page.locator("#mlopshub-sign-in-unavailable").count() == 0, "the plain sign-in button again"
    finally:
        platform.down()
