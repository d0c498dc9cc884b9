"""The mlopshub sidebar in a real workspace, driven in Chromium as a data scientist would.

Data: enable versioning in a folder, track a CSV, save a version, change the
file, restore the earlier version and see the old content. Experiments: a
notebook logs two runs; they appear with their lineage tags; two are compared.
"""

import re

import pytest

pytestmark = pytest.mark.e2e

V1 = "amount,default\n100,0\n2500,1\n"
V2 = "amount,default\n100,0\n2500,1\n9999,1\n"

LOG_TWO_RUNS = """
import mlflow
mlflow.set_experiment("credit")
for c, auc in ((0.1, 0.71), (1.0, 0.83)):
    with mlflow.start_run(run_name=f"C={c}"):
        mlflow.log_param("C", c)
        mlflow.log_metric("auc", auc)
        mlflow.log_metric("accuracy", auc - 0.05)
print("logged")
"""


@pytest.fixture(scope="module")
def sam(platform):
    password = platform.add_user("sam", "sme-credit")
    platform.start("sam", "python-cpu")
    token = platform.token_for("sam")
    platform.workspace("sam", "api/contents/credit", token, "PUT", json={"type": "directory"})
    platform.workspace(
        "sam", "api/contents/credit/loans.csv", token, "PUT", json={"type": "file", "format": "text", "content": V1}
    )
    yield password, token
    platform.stop("sam")


def open_lab(page, platform, password, folder):
    page.goto(f"{platform.url}/hub/login?next=/user/sam/lab/tree/{folder}")
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/user/sam/lab.*"), timeout=120_000)
    # The file browser has opened the folder before the sidebar looks at it.
    page.locator(".jp-DirListing-item[data-file-type='csv'][title*='loans.csv']").wait_for(
        state="attached", timeout=120_000
    )
    show_panel(page, "mlopshub-sidebar")


def show_panel(page, panel_id):
    """Open a left-sidebar panel (clicking the tab of an open panel would close it)."""
    if not page.locator(f"#{panel_id}").is_visible():
        page.locator(f".jp-SideBar .lm-TabBar-tab[data-id='{panel_id}']").click()
    page.locator(f"#{panel_id}").wait_for()


def file_content(platform, token, path):
    return platform.workspace("sam", f"api/contents/{path}", token, params={"content": "1"}).json()["content"]


def test_version_data_and_restore_an_earlier_version(page, platform, sam, artifacts):
    password, token = sam
    open_lab(page, platform, password, "credit")
    data = page.locator("#mlopshub-data")
    data.locator("#mlopshub-enable").click()
    data.locator("text=Project: credit").wait_for()

    show_panel(page, "filebrowser")
    page.locator(".jp-DirListing-item[data-file-type='csv'][title*='loans.csv']").click(button="right")
    page.locator(".lm-Menu-item[data-command='mlopshub:track']").click()
    data.locator("tr[data-path='credit/loans.csv']").wait_for()

    data.locator("#mlopshub-save-version").click()
    page.locator(".jp-Dialog input").fill("loans v1")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    data.locator("text=Saved version").wait_for()
    row = data.locator("tr[data-path='credit/loans.csv']")
    # Versioned but not in the team's remote yet: the row says so and the Data section's badge counts it.
    row.locator("text=not pushed").wait_for()
    badge = data.locator("[data-testid=mlopshub-badge]")
    assert badge.inner_text() == "1" and "not pushed" in badge.get_attribute("title")
    data.locator("#mlopshub-push").click()
    row.locator("text=up to date").wait_for()
    assert badge.is_hidden()

    platform.workspace(
        "sam", "api/contents/credit/loans.csv", token, "PUT", json={"type": "file", "format": "text", "content": V2}
    )
    data.locator("#mlopshub-refresh-data").click()
    row.locator("text=changed").wait_for()
    page.screenshot(path=str(artifacts / "sidebar-data-changed.png"))

    row.locator(".mlopshub-history").click()
    version = page.locator(".mlopshub-history-list li", has_text="loans v1")
    version.locator(".mlopshub-restore").click()
    page.locator(".jp-Dialog .jp-mod-accept", has_text="Restore").click()
    data.locator("text=is back at").wait_for()
    assert file_content(platform, token, "credit/loans.csv") == V1
    assert "up to date" in data.locator("tr[data-path='credit/loans.csv']").inner_text()


def test_runs_appear_with_lineage_and_two_compare(page, platform, sam, artifacts):
    password, token = sam
    session = platform.workspace(
        "sam",
        "api/sessions",
        token,
        "POST",
        json={"path": "credit/train.ipynb", "type": "notebook", "name": "train.ipynb", "kernel": {"name": "python3"}},
    ).json()
    assert platform.run_in_kernel("sam", token, session["kernel"]["id"], LOG_TWO_RUNS).strip().endswith("logged")

    open_lab(page, platform, password, "credit")
    experiments = page.locator("#mlopshub-experiments")
    experiments.locator("#mlopshub-refresh-runs").click()
    runs = experiments.locator("tr.mlopshub-run")
    runs.nth(1).wait_for()
    assert runs.count() == 2
    assert experiments.locator("#mlopshub-experiment option:checked").inner_text() == "credit"
    details = experiments.locator("tr.mlopshub-run-details").first.inner_text()
    assert "git.commit" in details and "notebook: credit/train.ipynb" in details and "profile: python-cpu" in details

    experiments.locator("th[data-sort='metrics.auc']").click()
    assert runs.first.locator("td").nth(1).inner_text() == "C=1.0"  # highest auc first

    for index in range(2):
        runs.nth(index).locator("input[type=checkbox]").check()
    experiments.locator("#mlopshub-compare-runs").click()
    # The comparison opens in a main-area tab: metrics with the best marked, params, lineage, plots.
    compare = page.locator("[data-testid=mlopshub-compare-page]")
    auc = compare.locator("[data-testid=mlopshub-compare-metrics] tr[data-metric='auc']")
    auc.wait_for()
    assert auc.locator("td").all_inner_texts()[1:] == ["0.8300", "0.7100"]  # sorted by auc: C=1.0 first
    assert auc.locator("td.mlopshub-best").inner_text() == "0.8300"
    assert compare.locator("[data-testid=mlopshub-compare-params] tr[data-key=C]").get_attribute("class") == (
        "mlopshub-differs"
    )
    assert "credit/train.ipynb" in compare.locator("[data-testid=mlopshub-compare-lineage]").inner_text()
    plot = compare.locator("[data-testid=mlopshub-plot][data-metric=auc]")
    plot.locator("circle").nth(1).wait_for()
    assert plot.locator("circle").count() == 2, "one point per run (each logged auc once)"
    page.screenshot(path=str(artifacts / "sidebar-experiments-compare.png"))
