"""The first day, as the user guide's "Your first day" tells it, in Chromium, as one timed test.

Nina, new in team sme-credit, signs in, starts a workspace on the spawn form, makes a project with the
sidebar (Enable data versioning), uploads her training and hold-out data, tracks both with DVC, saves and
pushes a version, trains in a notebook without committing anything, and publishes from the sidebar: all
four gates pass on the first try. Vera, a model validator, signs in, opens the release's review page from
Approvals and approves it with a comment; production answers.

The seconds from Nina's sign-in to the release awaiting approval, and to production, are printed and written
to ``test-artifacts/first-day.json`` (with screenshots of each step).
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

TEAM = "sme-credit"
MODEL = "sme-first-day"
#: A release registers, runs four gates and starts a model server: give it time on two cores.
RELEASE_TIMEOUT = 300_000
#: The notebook Nina writes: plain MLflow, no lineage code, no commit.
TRAIN = """\
import mlflow, pandas as pd
from sklearn.linear_model import LogisticRegression
frame = pd.read_csv("data/loans.csv")
features = frame[["amount", "income"]]
mlflow.set_experiment("credit-default")
with mlflow.start_run() as run:
    model = LogisticRegression().fit(features, frame["default"])
    mlflow.sklearn.log_model(model, name="model", input_example=features.head(3))
print("run", run.info.run_id)
"""


def loans(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    income, amount = rng.uniform(20, 200, n), rng.uniform(1, 100, n)
    default = (amount / income + rng.normal(0, 0.15, n) > 0.5).astype(int)
    return pd.DataFrame({"amount": amount, "income": income, "default": default}).to_csv(index=False)


def sign_in_and_start(page, platform, name: str, password: str) -> None:
    """The login page, then the spawn form's first profile, then JupyterLab."""
    page.goto(f"{platform.url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"))
    page.check("input[name=profile][value=python-cpu]")
    page.click("form#spawn_form input[type=submit], form#spawn_form button[type=submit]")
    page.wait_for_url(re.compile(rf".*/user/{name}/lab.*"), timeout=240_000)
    page.locator(".jp-LauncherCard").first.wait_for(timeout=120_000)


def run_first_cell(page) -> None:
    """Run the notebook's first cell, and see it start: its prompt turns from ``[ ]`` to ``[*]`` or ``[1]``.

    A key press that reaches the editor before it is ready is lost; it is pressed again then (once it has
    started, a second press would only run the empty cell that Shift+Enter adds below).
    """
    cell = page.locator(".jp-Notebook .jp-CodeCell").first
    prompt = cell.locator(".jp-InputArea-prompt")
    for _ in range(4):
        dialogs = page.locator(".jp-Dialog")
        if dialogs.count():
            shown = dialogs.all_inner_texts()
            if not shown[0].startswith("Select Kernel"):
                page.screenshot(path="test-artifacts/first-day-dialog.png")
                raise AssertionError(f"a dialog is open over the notebook: {shown}")
            # JupyterLab 4.6 sometimes asks for a kernel although the notebook names python3 and its kernel has
            # started (a race in SessionContext.startKernel; 3 of 7 runs here failed on it). Nina picks the offered
            # Python 3, as the dialog suggests.
            page.locator(".jp-Dialog .jp-mod-accept").click()
            dialogs.first.wait_for(state="detached")
        try:
            cell.locator(".jp-InputArea-editor").click(timeout=15_000)
            page.keyboard.press("Shift+Enter")
            expect(prompt).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=30_000)
            return
        except (AssertionError, PlaywrightTimeout):
            continue  # a dialog that opened meanwhile is handled above
    raise AssertionError(f"the first cell never started; the notebook showed:\n{notebook_state(page)}")


def notebook_state(page) -> str:
    """What a person would look at when a cell seems stuck: prompts, outputs, kernel status, open dialogs."""
    prompts = page.locator(".jp-Notebook .jp-InputArea-prompt").all_inner_texts()
    outputs = page.locator(".jp-Notebook .jp-OutputArea-output").all_inner_texts()
    status = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    return f"prompts: {prompts}\noutputs: {outputs}\nkernel: {status}\ndialogs: {dialogs}"


def show_panel(page, panel_id: str) -> None:
    if not page.locator(f"#{panel_id}").is_visible():
        page.locator(f".jp-SideBar .lm-TabBar-tab[data-id='{panel_id}']").click()
    page.locator(f"#{panel_id}").wait_for()


def open_folder(page, platform, name: str, folder: str) -> None:
    """JupyterLab with ``folder`` open in the file browser (shown: Lab restores the last left panel)."""
    page.goto(f"{platform.url}/user/{name}/lab/tree/{folder}")
    page.locator(".jp-DirListing").first.wait_for(state="attached", timeout=120_000)
    show_panel(page, "filebrowser")
    page.locator(".jp-DirListing-content").wait_for(timeout=120_000)


def track(page, file_name: str) -> None:
    show_panel(page, "filebrowser")
    page.locator(f".jp-DirListing-item[title*='{file_name}']").first.click(button="right")
    page.locator(".lm-Menu-item[data-command='mlopshub:track']").click()


def test_first_day_from_sign_in_to_production_without_an_error(browser, platform, artifacts):
    nina_password = platform.add_user("nina", TEAM)
    vera_password = platform.add_user("vera-v", "model-validators")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.monotonic()
    times: dict[str, float] = {}

    # 1. Sign in and start a workspace.
    sign_in_and_start(page, platform, "nina", nina_password)
    times["workspace_ready"] = time.monotonic() - started
    token = platform.token_for("nina")

    # 2. A project: a folder, Enable data versioning.
    assert platform.workspace("nina", "api/contents/credit", token, "PUT", json={"type": "directory"}).ok
    open_folder(page, platform, "nina", "credit")
    show_panel(page, "mlopshub-sidebar")
    data = page.locator("#mlopshub-data")
    data.locator("#mlopshub-enable").click()
    data.locator("text=Project: credit").wait_for()

    # 3. Upload training and hold-out data (the file browser's upload writes the same files), track, save, push.
    platform.workspace("nina", "api/contents/credit/data", token, "PUT", json={"type": "directory"})
    for path, text in (("credit/data/loans.csv", loans(600, 1)), ("credit/data/holdout.csv", loans(300, 2))):
        body = {"type": "file", "format": "text", "content": text}
        assert platform.workspace("nina", f"api/contents/{path}", token, "PUT", json=body).ok
    open_folder(page, platform, "nina", "credit/data")
    for file_name in ("loans.csv", "holdout.csv"):
        track(page, file_name)
        data.locator(f"tr[data-path='credit/data/{file_name}']").wait_for()
    show_panel(page, "mlopshub-sidebar")
    data.locator("#mlopshub-save-version").click()
    page.locator(".jp-Dialog input").fill("loans and hold-out, first version")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    data.locator("text=Saved version").wait_for()
    data.locator("#mlopshub-push").click()
    for file_name in ("loans.csv", "holdout.csv"):
        data.locator(f"tr[data-path='credit/data/{file_name}']").locator("text=up to date").wait_for()
    page.screenshot(path=str(artifacts / "first-day-data.png"))

    # 4. Train in a notebook: run it; nothing committed.
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": TRAIN}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    body = {"type": "notebook", "format": "json", "content": notebook}
    assert platform.workspace("nina", "api/contents/credit/train.ipynb", token, "PUT", json=body).ok
    page.goto(f"{platform.url}/user/nina/lab/tree/credit/train.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").wait_for(timeout=120_000)
    run_first_cell(page)
    # The run's id, or a traceback: a failing cell fails the test at once, with what the notebook showed.
    output = page.locator(".jp-OutputArea-output", has_text=re.compile(r"run [0-9a-f]{32}|Traceback"))
    try:
        output.first.wait_for(timeout=240_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(artifacts / "first-day-notebook-timeout.png"))
        raise AssertionError(f"no training result in 240 s; the notebook showed:\n{notebook_state(page)}") from None
    printed = "\n".join(output.all_inner_texts())
    found = re.search(r"run ([0-9a-f]{32})", printed)
    assert found, f"training failed in the notebook:\n{printed}"
    run_id = found.group(1)
    page.screenshot(path=str(artifacts / "first-day-notebook.png"))
    times["trained"] = time.monotonic() - started

    # 5. Publish from the sidebar: all four gates pass on the first try.
    show_panel(page, "mlopshub-sidebar")
    row = page.locator(f"[data-testid=mlopshub-model-row][data-run='{run_id}']")
    for _ in range(20):
        if row.is_visible():
            break
        page.locator("#mlopshub-refresh-models").click()
        time.sleep(3)
    row.locator("[data-testid=mlopshub-publish]").click()
    form = page.locator("[data-testid=mlopshub-publish-form]")
    form.locator("[data-testid=mlopshub-publish-name]").fill(MODEL)
    form.locator("[data-testid=mlopshub-publish-kind]").select_option("online")
    form.locator("[data-testid=mlopshub-publish-description]").fill("default probability of SME loans")
    form.locator("[data-testid=mlopshub-publish-submit]").click()
    release = page.locator("#mlopshub-release-box [data-testid=mlopshub-release]")
    settled = release.locator("[data-testid=mlopshub-release-state][data-state=awaiting_approval]")
    failed = release.locator("[data-testid=mlopshub-release-state][data-state=gates_failed]")
    settled.or_(failed).wait_for(timeout=RELEASE_TIMEOUT)
    page.screenshot(path=str(artifacts / "first-day-awaiting-approval.png"))
    assert failed.count() == 0, release.inner_text()
    gates = release.locator("[data-testid=mlopshub-gate]")
    assert gates.count() == 4 and release.locator("[data-testid=mlopshub-gate][data-passed=false]").count() == 0
    release_id = release.get_attribute("data-release")
    times["awaiting_approval"] = time.monotonic() - started

    # 6. The validator approves from the review page.
    vera = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    vera.set_default_timeout(120_000)
    sign_in_and_start(vera, platform, "vera-v", vera_password)
    show_panel(vera, "mlopshub-sidebar")
    card = vera.locator(f"[data-testid=mlopshub-approval][data-release='{release_id}']")
    card.locator("[data-testid=mlopshub-review]").click()
    review = vera.locator(f"[data-testid=mlopshub-review-page][data-release='{release_id}']")
    review.locator("[data-testid=mlopshub-decision-comment]").fill("hold-out metrics and lineage reviewed")
    review.locator("[data-testid=mlopshub-approve]").click()
    vera.locator(".jp-Dialog .jp-mod-accept", has_text="Approve").click()
    review.locator("[data-testid=mlopshub-release-state][data-state=production]").wait_for(timeout=RELEASE_TIMEOUT)
    vera.screenshot(path=str(artifacts / "first-day-approved.png"))
    times["production"] = time.monotonic() - started

    # 7. Production answers, as the user guide's curl line calls it.
    answer = requests.post(
        f"{platform.url}/services/models/{MODEL}/production/invocations",
        json={"dataframe_split": {"columns": ["amount", "income"], "data": [[10.0, 150.0], [90.0, 30.0]]}},
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["predictions"] == [0, 1], answer.text
    assert errors == [], errors
    report = {name: round(seconds, 1) for name, seconds in times.items()}
    (artifacts / "first-day.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfirst day, seconds from sign-in: {report}")
    vera.context.close()
    context.close()
    platform.stop("vera-v")
    platform.stop("nina")
