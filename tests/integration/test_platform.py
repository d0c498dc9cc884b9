"""The one-machine platform, driven over HTTP like a user and a script would."""

import os
import stat
import subprocess
import time

import pytest
import requests
from platform_under_test import Platform, reachable_dir

pytestmark = pytest.mark.integration


def test_admin_token_file_is_private(platform):
    token_file = platform.data_dir / "secrets" / "admin-token"
    assert token_file.read_text().strip() == platform.admin_token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_status_reports_services(platform):
    result = platform.cli("status", "--json")
    assert '"running": true' in result.stdout
    assert '"mlflow"' in result.stdout and '"idle-culler"' in result.stdout


def test_up_twice_says_already_running(platform):
    result = platform.cli("up")
    assert "already running" in result.stdout


def test_teams_are_groups_with_profiles_seeded_from_the_catalog(platform):
    groups = {g["name"]: g for g in platform.api("GET", "groups").json()}
    assert groups["sme-credit"]["properties"]["profiles"] == ["python-cpu", "python-gpu"]
    assert groups["retail-scoring"]["properties"]["profiles"] == ["python-cpu", "r-cpu", "r-gpu"]
    assert {"model-validators", "platform-admins"} <= set(groups)


def test_spawn_form_shows_only_allowed_profiles_without_gpu(platform, alice, bob):
    session = platform.login("bob-form", platform.add_user("bob-form", "retail-scoring"))
    form = session.get(f"{platform.url}/hub/spawn", timeout=30).text
    assert 'value="python-cpu"' in form and 'value="r-cpu"' in form
    assert 'value="python-gpu"' not in form and 'value="r-gpu"' not in form  # no GPU here


def test_forbidden_profile_is_refused_and_starts_nothing(platform, alice):
    response = platform.spawn("alice", "r-cpu")
    assert response.status_code == 403
    assert "r-cpu" in response.json()["message"]
    assert platform.api("GET", "users/alice").json()["servers"] == {}


def test_unknown_profile_is_refused_with_400(platform, alice):
    response = platform.spawn("alice", "julia-cpu")
    assert response.status_code == 400
    assert "julia-cpu" in response.json()["message"]


def test_gpu_profile_is_refused_where_there_is_no_gpu(platform, alice):
    response = platform.spawn("alice", "python-gpu")
    assert response.status_code == 403
    assert "needs a GPU" in response.json()["message"]


def test_user_in_no_team_cannot_start_a_workspace(platform):
    platform.add_user("cora", None)
    response = platform.spawn("cora", None)
    assert response.status_code == 403
    assert "no team" in response.json()["message"]


def test_admin_change_of_group_profiles_applies_without_yaml(platform):
    platform.add_user("dave", "sme-credit")
    assert platform.spawn("dave", "r-cpu").status_code == 403
    group = platform.api("GET", "groups/sme-credit").json()
    properties = {**group["properties"], "profiles": ["python-cpu", "python-gpu", "r-cpu"]}
    assert platform.api("PUT", "groups/sme-credit/properties", json=properties).status_code == 200
    try:
        platform.start("dave", "r-cpu")
        platform.stop("dave")
    finally:
        properties["profiles"] = ["python-cpu", "python-gpu"]
        platform.api("PUT", "groups/sme-credit/properties", json=properties)


@pytest.fixture(scope="module")
def alice_workspace(platform, alice):
    platform.start("alice", "python-cpu")
    yield platform.token_for("alice")
    platform.stop("alice")


@pytest.fixture(scope="module")
def bob_workspace(platform, bob):
    platform.start("bob", "r-cpu")
    yield platform.token_for("bob")
    platform.stop("bob")


def test_python_profile_lists_only_python_kernel(platform, alice_workspace):
    specs = platform.workspace("alice", "api/kernelspecs", alice_workspace).json()
    assert set(specs["kernelspecs"]) == {"python3"}
    assert specs["default"] == "python3"


def test_r_profile_lists_r_and_python_kernels(platform, bob_workspace):
    specs = platform.workspace("bob", "api/kernelspecs", bob_workspace).json()
    assert set(specs["kernelspecs"]) == {"ir", "python3"}
    assert specs["default"] == "ir"


def test_r_cell_runs_in_the_r_kernel(platform, bob_workspace):
    out = platform.execute("bob", bob_workspace, 'cat(R.version$major, sum(1:10), "\\n")', kernel="ir")
    assert out.split() == ["4", "55"]


WHO_AND_WHERE = """
import os, pwd, stat
home_mode = oct(stat.S_IMODE(os.stat(os.environ["HOME"]).st_mode))
print(pwd.getpwuid(os.getuid()).pw_name, home_mode, os.getcwd())
"""

MLFLOW_ENV = """
import os
print(*(os.environ[name] for name in ("MLFLOW_TRACKING_URI", "MLFLOW_WORKSPACE", "MLOPSHUB_PROFILE", "MEM_LIMIT")))
"""


def test_workspace_runs_as_its_own_unix_user_with_private_home(platform, alice_workspace):
    user, mode, cwd = platform.execute("alice", alice_workspace, WHO_AND_WHERE).split()
    if os.geteuid() == 0:
        assert user == "jupyter-alice"
    assert mode == "0o700"
    assert cwd == str(platform.data_dir / "homes" / "alice")


def test_workspace_environment_points_mlflow_at_the_team_workspace(platform, alice_workspace):
    out = platform.execute("alice", alice_workspace, MLFLOW_ENV)
    assert out.split() == [f"{platform.url}/services/mlflow", "sme-credit", "python-cpu", str(4 * 2**30)]


TEAM_REMOTE = """
import os, pathlib
remote = pathlib.Path(os.environ["MLOPSHUB_DVC_REMOTE"])
(remote / "probe").write_text("x")
other = remote.parent / "{other}"
try:
    os.listdir(other)
    print(remote.name, "other-readable")
except PermissionError:
    print(remote.name, "other-private")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="team folders are Unix-group protected only when the hub runs as root")
def test_team_dvc_remote_is_writable_by_members_and_closed_to_others(platform, alice_workspace, bob_workspace):
    out = platform.execute("alice", alice_workspace, TEAM_REMOTE.format(other="retail-scoring")).split()
    assert out == ["sme-credit", "other-private"]


LOG_RUN = """
import mlflow
mlflow.set_experiment("credit-default")
with mlflow.start_run() as run:
    mlflow.log_param("C", 0.5)
    mlflow.log_metric("auc", 0.91)
print(run.info.run_id, run.info.experiment_id)
"""


@pytest.fixture(scope="module")
def alice_run(platform, alice_workspace):
    run_id, experiment_id = platform.execute("alice", alice_workspace, LOG_RUN).strip().splitlines()[-1].split()
    return run_id, experiment_id


def mlflow_get(platform, path, token=None, workspace=None, **params):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if workspace:
        headers["X-MLFLOW-WORKSPACE"] = workspace
    return requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}", headers=headers, params=params, timeout=30
    )


def test_notebook_run_lands_in_the_team_workspace(platform, alice_run):
    run_id, _ = alice_run
    token = platform.token_for("alice")
    response = mlflow_get(platform, "runs/get", token, "sme-credit", run_id=run_id)
    assert response.status_code == 200, response.text
    run = response.json()["run"]
    assert run["data"]["metrics"][0] == {**run["data"]["metrics"][0], "key": "auc", "value": 0.91}


def test_a_renamed_notebook_is_the_one_lineage_records(platform, alice_workspace):
    # JupyterLab's Launcher makes Untitled.ipynb; renaming it moves the session, not the kernel's environment.
    empty = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    kernel = platform.open_notebook("alice", alice_workspace, "Untitled.ipynb", empty, "python3")
    sessions = platform.workspace("alice", "api/sessions", alice_workspace).json()
    session = next(s for s in sessions if s["kernel"]["id"] == kernel)
    to = {"path": "train.ipynb"}
    moved = platform.workspace("alice", "api/contents/Untitled.ipynb", alice_workspace, "PATCH", json=to)
    assert moved.status_code == 200, moved.text
    session_path = f"api/sessions/{session['id']}"
    renamed = platform.workspace("alice", session_path, alice_workspace, "PATCH", json={**to, "name": "train.ipynb"})
    assert renamed.status_code == 200, renamed.text
    try:
        run_id = platform.run_in_kernel("alice", alice_workspace, kernel, LOG_RUN).strip().splitlines()[-1].split()[0]
    finally:
        platform.workspace("alice", session_path, alice_workspace, "DELETE")
    tags = mlflow_get(platform, "runs/get", alice_workspace, "sme-credit", run_id=run_id).json()["run"]["data"]["tags"]
    recorded = {tag["key"]: tag["value"] for tag in tags}
    assert recorded["mlopshub.notebook"] == "train.ipynb" == recorded["mlflow.source.name"], recorded


@pytest.mark.parametrize("workspace", ["sme-credit", "retail-scoring", None])
def test_other_team_cannot_read_the_run(platform, alice_run, bob, workspace):
    run_id, experiment_id = alice_run
    token = platform.token_for("bob")
    assert mlflow_get(platform, "runs/get", token, workspace, run_id=run_id).status_code in (403, 404)
    assert mlflow_get(platform, "experiments/get", token, workspace, experiment_id=experiment_id).status_code in (
        403,
        404,
    )


def test_other_team_cannot_find_the_experiment_by_name_or_search(platform, alice_run, bob):
    token = platform.token_for("bob")
    by_name = mlflow_get(platform, "experiments/get-by-name", token, "sme-credit", experiment_name="credit-default")
    assert by_name.status_code in (403, 404)
    search = requests.post(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/runs/search",
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "sme-credit"},
        json={"experiment_ids": [alice_run[1]]},
        timeout=30,
    )
    assert search.status_code == 403 or search.json().get("runs", []) == []


def test_other_team_cannot_write_into_the_team_workspace(platform, alice_run, bob):
    token = platform.token_for("bob")
    response = requests.post(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/runs/log-metric",
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "sme-credit"},
        json={"run_id": alice_run[0], "key": "auc", "value": 0.1, "timestamp": 0},
        timeout=30,
    )
    assert response.status_code in (403, 404)
    create = requests.post(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/create",
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "sme-credit"},
        json={"name": "intruder"},
        timeout=30,
    )
    assert create.status_code == 403


def test_mlflow_refuses_requests_without_a_valid_token(platform, alice_run):
    assert mlflow_get(platform, "runs/get", None, "sme-credit", run_id=alice_run[0]).status_code == 401
    assert mlflow_get(platform, "runs/get", "not-a-token", "sme-credit", run_id=alice_run[0]).status_code == 401


def test_token_without_mlflow_scope_is_refused(platform, alice_run):
    token = platform.token_for("alice", scopes=["read:users:name!user"])
    assert mlflow_get(platform, "runs/get", token, "sme-credit", run_id=alice_run[0]).status_code == 403


def test_leaving_the_team_removes_mlflow_access(platform, alice_run):
    platform.add_user("elin", "sme-credit")
    token = platform.token_for("elin")
    assert mlflow_get(platform, "runs/get", token, "sme-credit", run_id=alice_run[0]).status_code == 200
    platform.api("DELETE", "groups/sme-credit/users", json={"users": ["elin"]})
    deadline = time.monotonic() + 90
    status = 200
    while time.monotonic() < deadline and status == 200:
        time.sleep(5)
        status = mlflow_get(
            platform, "runs/get", platform.token_for("elin"), "sme-credit", run_id=alice_run[0]
        ).status_code
    assert status in (403, 404)


def test_password_over_72_bytes_is_refused_with_a_message(platform):
    response = platform.sign_up("frank", "é" * 40)
    assert response.status_code == 400
    assert "72 bytes" in response.text


def test_a_blocked_sign_in_says_so_whether_or_not_the_name_exists(platform):
    password = platform.add_user("gina", None)

    def sign_in(name: str, secret: str) -> requests.Response:
        session = requests.Session()
        session.get(f"{platform.url}/hub/login", timeout=30)
        form = {"username": name, "password": secret, "_xsrf": session.cookies.get("_xsrf", "")}
        return session.post(f"{platform.url}/hub/login", data=form, timeout=30, allow_redirects=False)

    for name in ("gina", "nobody-here"):
        for _ in range(5):
            refused = sign_in(name, "wrong")
            assert refused.status_code != 302 and "Invalid username or password" in refused.text
        blocked = sign_in(name, password)  # the right password for gina: still blocked, and told so
        assert blocked.status_code == 429 and "blocked for" in blocked.text, (name, blocked.status_code)
        assert 0 < int(blocked.headers["Retry-After"]) <= 60


def test_sign_out_ends_the_browsers_access_to_the_mlflow_ui(platform, alice_run):
    # The sidebar opens the MLflow UI through the workspace, which sets a cookie for /services/mlflow/ only.
    password = platform.add_user("hana", "sme-credit")
    platform.start("hana", "python-cpu")
    try:
        browser = platform.login("hana", password)
        assert browser.get(f"{platform.url}/user/hana/lab", timeout=60).status_code == 200, "signed in to the server"
        opened = browser.get(
            f"{platform.url}/user/hana/mlopshub-lab/mlflow-ui", params={"experiment": alice_run[1]}, timeout=60
        )
        assert opened.status_code == 200, opened.status_code
        search = f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/search"
        headers = {"X-MLFLOW-WORKSPACE": "sme-credit"}
        assert browser.post(search, json={"max_results": 5}, headers=headers, timeout=30).status_code == 200
        browser.get(f"{platform.url}/hub/logout", timeout=30)
        after = browser.post(search, json={"max_results": 5}, headers=headers, timeout=30)
        assert after.status_code == 401, (after.status_code, after.text[:200])
    finally:
        platform.stop("hana")


def test_an_authorized_sign_up_can_join_a_team_before_signing_in(platform):
    # The admin guide's order: sign-up, authorize, add to the team's group; no sign-in in between.
    platform.sign_up("vera", "vera-first-day-1")
    authorized = platform.admin_session().get(f"{platform.url}/hub/authorize/vera", timeout=30)
    assert authorized.status_code == 200, authorized.text[:300]
    added = platform.api("POST", "groups/sme-credit/users", json={"users": ["vera"]})
    assert added.status_code == 200, added.text
    assert platform.api("GET", "users/vera").json()["groups"] == ["sme-credit"]


def test_sign_up_names_the_rule_the_password_broke(platform):
    short = platform.sign_up("walt", "walt-pw")
    assert short.status_code == 400
    assert "needs at least 10" in short.text and "not too common" not in short.text and "slashes" not in short.text
    common = platform.sign_up("walt", "1234567890")
    assert "most common" in common.text and "needs at least" not in common.text


def mlflow_ui_session(platform, name, team):
    """A browser's session: signed in to the hub, then to the MLflow UI through the hub's OAuth."""
    browser = platform.login(name, platform.add_user(name, team))
    page = browser.get(f"{platform.url}/services/mlflow/", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 200 and page.url == f"{platform.url}/services/mlflow/", (page.status_code, page.url)
    assert browser.cookies.get("mlopshub-mlflow-token", path="/services/mlflow/")
    return browser


def test_mlflow_sends_a_browser_page_to_the_hubs_sign_in_and_scripts_get_401(platform, alice_run):
    page = requests.get(
        f"{platform.url}/services/mlflow/", headers={"Accept": "text/html"}, timeout=30, allow_redirects=False
    )
    assert page.status_code == 302 and "/hub/api/oauth2/authorize?" in page.headers["Location"]
    assert "redirect_uri=%2Fservices%2Fmlflow%2Foauth_callback" in page.headers["Location"]
    assert mlflow_get(platform, "runs/get", None, "sme-credit", run_id=alice_run[0]).status_code == 401
    api_in_a_browser = requests.post(
        f"{platform.url}/services/mlflow/ajax-api/2.0/mlflow/runs/search",
        headers={"Accept": "application/json, text/plain, */*", "X-MLFLOW-WORKSPACE": "sme-credit"},
        json={"experiment_ids": [alice_run[1]]},
        timeout=30,
        allow_redirects=False,
    )
    assert api_in_a_browser.status_code == 401


def test_the_oauth_callback_refuses_a_sign_in_begun_in_another_browser(platform):
    # The state must be the one this browser's cookie holds (CSRF): a forged callback link sets no cookie.
    forged = requests.get(
        f"{platform.url}/services/mlflow/oauth_callback", params={"code": "x", "state": "y"}, timeout=30
    )
    assert forged.status_code == 400 and "state" in forged.text
    assert "mlopshub-mlflow-token" not in forged.cookies


def ui_search(platform, browser, workspace, experiment_id):
    """Run ids the MLflow UI's own call lists for ``experiment_id`` in ``workspace`` (none when refused)."""
    found = browser.post(
        f"{platform.url}/services/mlflow/ajax-api/2.0/mlflow/runs/search",
        headers={"X-MLFLOW-WORKSPACE": workspace},
        json={"experiment_ids": [experiment_id]},
        timeout=30,
    )
    return [run["info"]["run_id"] for run in found.json().get("runs", [])] if found.ok else []


def ui_get_run(platform, browser, run_id):
    return browser.get(
        f"{platform.url}/services/mlflow/ajax-api/2.0/mlflow/runs/get",
        headers={"X-MLFLOW-WORKSPACE": "sme-credit"},
        params={"run_id": run_id},
        timeout=30,
    )


def test_the_mlflow_ui_session_sees_the_own_team_and_never_another(platform, alice_run):
    run_id, experiment_id = alice_run
    own = mlflow_ui_session(platform, "yuri", "sme-credit")
    assert run_id in ui_search(platform, own, "sme-credit", experiment_id)
    assert ui_get_run(platform, own, run_id).status_code == 200
    other = mlflow_ui_session(platform, "zoe", "retail-scoring")
    for workspace in ("sme-credit", "retail-scoring"):
        assert run_id not in ui_search(platform, other, workspace, experiment_id), workspace
    assert ui_get_run(platform, other, run_id).status_code in (403, 404)


def test_port_in_use_is_refused_clearly(platform, tmp_path_factory):
    clash = Platform(reachable_dir(tmp_path_factory), port=platform.port)
    result = clash.cli("up", check=False)
    assert result.returncode == 1
    assert f"port {platform.port}" in result.stderr and "already in use" in result.stderr
    assert not (clash.data_dir / "run" / "hub.pid").exists()


def test_invalid_catalog_stops_the_start_with_the_message(platform, tmp_path, tmp_path_factory):
    bad = tmp_path / "catalog"
    bad.mkdir()
    (bad / "teams.yaml").write_text("teams:\n  sme-credit: {profiles: [nope]}\nprofiles: []\n")
    other = Platform(reachable_dir(tmp_path_factory), extra_env={"MLOPSHUB_CATALOG": str(bad)})
    result = other.cli("up", check=False)
    assert result.returncode == 1
    assert "teams.yaml" in result.stderr
    assert not (other.data_dir / "run" / "hub.pid").exists()
    assert subprocess.run(["pgrep", "-f", str(other.data_dir)], capture_output=True).returncode == 1
