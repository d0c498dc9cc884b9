"""What the browser tests do in JupyterLab more than once (Playwright pages against the real platform)."""

import re


def open_sidebar(page, platform, user: str, password: str) -> None:
    """Sign ``user`` in at the hub, land in their JupyterLab and open the mlopshub sidebar."""
    page.goto(f"{platform.url}/hub/login?next=/user/{user}/lab")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=120_000)
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='mlopshub-sidebar']").click()
    page.locator("#mlopshub-sidebar").wait_for()
