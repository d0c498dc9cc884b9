"""The private data dir (modes `up` sets and checks) and the revocation bound (caches, the membership service).

Pure or on a temporary folder; clocks are fakes handed to the caches.
"""

import asyncio
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web

from mlopshub import catalog, launcher, settings
from mlopshub.services import membership, mlflow_auth
from mlopshub.services.pipeline.app import store_owner
from mlopshub.services.pipeline.auth import Caller, endpoint_authorizer, hub_authenticator
from mlopshub.settings import TRUST_SECONDS
from mlopshub.spawners import TEAMS_STATE, LocalWorkspaceSpawner

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the data dir ---------------------------------------------------------


def folder_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "problem"),
    [
        (0o755, 0, 0, None),
        (0o1777, 0, 0, None),  # /tmp: sticky
        (0o711, 1000, 1000, None),  # the platform's own user
        (0o777, 0, 0, "writable by every user (mode 0o777); chmod o-w"),
        (0o775, 0, 4242, "writable by group 4242"),
        (0o775, 0, 1000, None),  # the platform user's own group
        (0o755, 4242, 0, "belongs to uid 4242"),
    ],
)
def test_a_folder_someone_else_may_replace_is_named(mode, uid, gid, problem):
    found = launcher.open_folder_problem(Path("/srv/x"), folder_stat(mode, uid, gid), euid=1000, egid=1000)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith("/srv/x ") and problem in found


@pytest.mark.parametrize(("mode", "private"), [(0o644, 0o600), (0o755, 0o700), (0o2775, 0o700), (0o600, 0o600)])
def test_private_mode_keeps_only_the_owners_bits(mode, private):
    assert launcher.private_mode(stat.S_IFREG | mode) == private


def data_settings(tmp_path: Path) -> settings.Settings:
    return settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path / "data")})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_old_open_data_dir_is_made_private_with_the_passable_folders_kept(tmp_path):
    s = data_settings(tmp_path)
    old = s.data_dir
    layout = {"": 0o755, "run": 0o755, "pipeline": 0o755, "pipeline/models": 0o711, "pipeline/batch": 0o755,
              "pipeline/logs": 0o755, "homes": 0o755, "homes/alice": 0o755, "dvc-remotes": 0o755,
              "dvc-remotes/sme-credit": 0o2770}  # fmt: skip
    for folder, mode in layout.items():
        (old / folder).mkdir(parents=True, exist_ok=True)
        (old / folder).chmod(mode)
    for file in ("jupyterhub.sqlite", "run/runtime.json", "pipeline/pipeline.sqlite"):
        (old / file).write_text("x")
        (old / file).chmod(0o644)

    launcher.ensure_dirs(s)

    assert mode_of(old) == 0o711
    assert mode_of(old / "jupyterhub.sqlite") == 0o600
    assert mode_of(old / "pipeline" / "pipeline.sqlite") == 0o600
    for private in ("run", "logs", "secrets", "mlflow", "pipeline/logs", "homes/alice"):
        assert mode_of(old / private) == 0o700, private
    for passable in ("homes", "dvc-remotes", "pipeline", "pipeline/models"):
        assert mode_of(old / passable) == 0o711, passable
    assert mode_of(old / "pipeline" / "batch") == 0o755  # the pipeline's to set
    assert mode_of(old / "dvc-remotes" / "sme-credit") == 0o2770  # the spawner's to set


def test_a_new_data_dir_and_its_missing_parents_stay_passable_under_the_hubs_umask(tmp_path):
    s = settings.from_env({"MLOPSHUB_DATA_DIR": str(tmp_path / "new" / "data")})
    previous = os.umask(launcher.HUB_UMASK)
    try:
        launcher.ensure_dirs(s)
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "new") & 0o001, "workspaces must pass through to their homes"
    assert mode_of(s.data_dir) == 0o711


def test_a_world_writable_parent_is_refused_with_the_fix(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    s = settings.from_env({"MLOPSHUB_DATA_DIR": str(parent / "data")})
    with pytest.raises(launcher.LaunchError, match=rf"{parent} is writable by every user .*chmod o-w {parent}"):
        launcher.check_data_dir(s)


def test_a_symlink_in_the_data_dir_is_refused(tmp_path):
    s = data_settings(tmp_path)
    launcher.ensure_dirs(s)
    (tmp_path / "elsewhere").mkdir()
    (s.data_dir / "logs").rmdir()
    (s.data_dir / "logs").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(launcher.LaunchError, match=rf"{s.data_dir / 'logs'} is a symlink"):
        launcher.check_data_dir(s)


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_an_entry_of_another_user_is_refused(tmp_path):
    s = data_settings(tmp_path)
    launcher.ensure_dirs(s)
    database = s.data_dir / "jupyterhub.sqlite"
    database.write_text("x")
    os.chown(database, 4242, 4242)
    with pytest.raises(launcher.LaunchError, match=rf"{database} belongs to uid 4242.*chown -R 0"):
        launcher.check_data_dir(s)


def test_a_private_data_dir_passes_the_checks(tmp_path):
    s = data_settings(tmp_path)
    launcher.ensure_dirs(s)
    launcher.check_data_dir(s)


# --- the revocation bound -------------------------------------------------


class FakeHubAuth:
    """HubAuth's user_for_token against a dict the test changes (token -> model)."""

    access_scopes = {"access:services!service=pipeline"}

    def __init__(self, tokens: dict) -> None:
        self.tokens = tokens
        self.asked = 0

    def _answer(self, token: str, use_cache: bool) -> dict | None:
        assert use_cache is False, "one cache per service: HubAuth's must be bypassed"
        self.asked += 1
        return self.tokens.get(token)

    async def user_for_token(self, token: str, use_cache: bool = True, sync: bool = True) -> dict | None:
        return self._answer(token, use_cache)

    def check_scopes(self, required, model) -> set:
        return set(required) & set(model["scopes"])


ALICE = {"name": "alice", "kind": "user", "groups": ["sme-credit"],
         "scopes": ["access:services!service=pipeline", "custom:mlopshub:publish!group=sme-credit"]}  # fmt: skip


def test_the_trust_bound_leaves_room_for_a_request_within_two_seconds():
    assert 0 < TRUST_SECONDS <= 1.0


def test_pipeline_refuses_a_revoked_token_once_the_trusted_answer_expires():
    clock, hub = Clock(), FakeHubAuth({"t": ALICE})
    authenticate = hub_authenticator(hub, timer=clock)
    first = asyncio.run(authenticate("t"))
    assert first is not None and first.name == "alice"
    del hub.tokens["t"]  # revoked
    clock.now += TRUST_SECONDS * 0.9
    assert asyncio.run(authenticate("t")) is first and hub.asked == 1
    clock.now += TRUST_SECONDS * 0.2
    assert asyncio.run(authenticate("t")) is None and hub.asked == 2


class AwayHubAuth(FakeHubAuth):
    """A hub that can be away: HubAuth then raises its 500 ("Failed to connect to Hub API")."""

    away = False

    async def user_for_token(self, token: str, use_cache: bool = True, sync: bool = True) -> dict | None:
        if self.away:
            self.asked += 1
            raise web.HTTPError(500, "Failed to connect to Hub API")
        return self._answer(token, use_cache)


def test_while_the_hub_restarts_tokens_it_accepted_lately_still_are_and_others_get_a_503_saying_why():
    clock, hub = Clock(), AwayHubAuth({"t": ALICE, "revoked": ALICE})
    authenticate = hub_authenticator(hub, timer=clock, hub_away_grace=300)
    accepted = asyncio.run(authenticate("t"))
    asyncio.run(authenticate("revoked"))
    del hub.tokens["revoked"]
    clock.now += TRUST_SECONDS * 1.1
    assert asyncio.run(authenticate("revoked")) is None  # refused while the hub still answered
    hub.away = True
    clock.now += 100
    assert asyncio.run(authenticate("t")) is accepted  # a scoring client keeps working through a hub restart
    for token in ("revoked", "never-seen"):
        with pytest.raises(web.HTTPError) as away:
            asyncio.run(authenticate(token))
        assert away.value.status_code == 503 and "hub" in away.value.log_message
    clock.now += 300  # the grace is over: the hub must answer again
    with pytest.raises(web.HTTPError):
        asyncio.run(authenticate("t"))


class FakeHandler:
    def __init__(self, token: str) -> None:
        self.request = SimpleNamespace(headers={"Authorization": f"Bearer {token}"})

    def set_header(self, name: str, value: str) -> None:
        pass


def test_an_endpoint_yes_lasts_no_longer_than_the_answer_it_rests_on():
    runner = SimpleNamespace(store=SimpleNamespace(owner=lambda model: "sme-credit"))
    member = Caller("alice", groups=frozenset({"sme-credit"}), scopes=frozenset(ALICE["scopes"]))
    removed = Caller("alice", scopes=frozenset({"access:services!service=models"}))
    answers = [member, member, removed]
    calls = []

    async def authenticate(token: str) -> Caller | None:
        calls.append(token)
        return answers[len(calls) - 1]

    authorize = endpoint_authorizer(store_owner(runner), authenticate)
    asyncio.run(authorize(FakeHandler("t"), "credit-default", "staging"))
    asyncio.run(authorize(FakeHandler("t"), "credit-default", "staging"))  # the same answer: the same yes
    with pytest.raises(web.HTTPError) as refused:  # a fresh answer without the team: refused at once
        asyncio.run(authorize(FakeHandler("t"), "credit-default", "staging"))
    assert refused.value.status_code == 403 and len(calls) == 3


def test_mlflow_asks_the_hub_again_once_the_trusted_answer_expires(monkeypatch):
    from cachetools import TTLCache

    clock = Clock()

    class SyncHubAuth(FakeHubAuth):
        def user_for_token(self, token, use_cache=True, sync=True):  # type: ignore[override]
            return self._answer(token, use_cache)

    hub = SyncHubAuth({"t": ALICE})
    monkeypatch.setattr(mlflow_auth, "_hub_auth", hub)
    monkeypatch.setattr(mlflow_auth, "_answers", TTLCache(maxsize=10, ttl=TRUST_SECONDS, timer=clock))
    assert mlflow_auth.hub_answer("t")["name"] == "alice"
    del hub.tokens["t"]
    clock.now += TRUST_SECONDS * 0.9
    assert mlflow_auth.hub_answer("t") is not None and hub.asked == 1
    clock.now += TRUST_SECONDS * 0.2
    assert mlflow_auth.hub_answer("t") is None and hub.asked == 2


def test_mlflow_keeps_a_lately_accepted_token_while_the_hub_restarts_and_refuses_others(monkeypatch):
    from cachetools import TTLCache

    clock = Clock()

    class SyncAwayHubAuth(AwayHubAuth):
        def user_for_token(self, token, use_cache=True, sync=True):  # type: ignore[override]
            if self.away:
                raise web.HTTPError(500, "Failed to connect to Hub API")
            return self._answer(token, use_cache)

    hub = SyncAwayHubAuth({"t": ALICE})
    monkeypatch.setattr(mlflow_auth, "_hub_auth", hub)
    monkeypatch.setattr(mlflow_auth, "_answers", TTLCache(maxsize=10, ttl=TRUST_SECONDS, timer=clock))
    monkeypatch.setattr(mlflow_auth, "_accepted", TTLCache(maxsize=10, ttl=300, timer=clock))
    assert mlflow_auth.hub_answer("t")["name"] == "alice"
    hub.away = True
    clock.now += 60
    assert mlflow_auth.hub_answer("t")["name"] == "alice"
    with pytest.raises(web.HTTPError):
        mlflow_auth.hub_answer("never-seen")
    clock.now += 300
    with pytest.raises(web.HTTPError):
        mlflow_auth.hub_answer("t")


# --- the membership service ------------------------------------------------


@pytest.fixture(scope="module")
def watch_catalog() -> catalog.Catalog:
    return catalog.load(REPO / "profiles")


def user(name: str, groups: list[str], **servers: dict) -> dict:
    return {"name": name, "groups": groups, "servers": servers}


def running(teams: list[str] | None = None, started: str = "2026-12-01T10:00:00Z", pending: str | None = None) -> dict:
    state = {"pid": 42, TEAMS_STATE: teams} if teams is not None else {"pod_name": "jupyter-x"}
    return {"started": started, "pending": pending, "ready": pending is None, "state": state}


def test_a_workspace_started_with_a_team_its_user_left_is_stopped(watch_catalog):
    watch = membership.Watch(watch_catalog)
    users = [
        user("alice", ["retail-scoring"], **{"": running(["sme-credit", "retail-scoring"])}),
        user("bob", ["retail-scoring"], **{"": running(["retail-scoring"])}),
    ]
    assert watch.stops(users) == [membership.Stop("alice", "", frozenset({"sme-credit"}))]


def test_starting_and_stopping_servers_are_left_alone(watch_catalog):
    watch = membership.Watch(watch_catalog)
    users = [user("alice", [], a=running(["sme-credit"], pending="spawn"), b=running(["sme-credit"], pending="stop"))]
    assert watch.stops(users) == []


def test_without_teams_in_the_state_the_teams_first_seen_count(watch_catalog):
    # KubeSpawner records no teams: the service remembers those it saw when the server first ran.
    watch = membership.Watch(watch_catalog)
    assert watch.stops([user("alice", ["sme-credit", "model-validators"], **{"": running()})]) == []
    assert watch.stops([user("alice", ["sme-credit"], **{"": running()})]) == []  # a role group is no team
    assert watch.stops([user("alice", [], **{"": running()})]) == [
        membership.Stop("alice", "", frozenset({"sme-credit"}))
    ]
    # A new start is a new server: what it was started with is seen afresh.
    assert watch.stops([user("alice", [], **{"": running(started="2026-12-01T11:00:00Z")})]) == []


def test_a_stop_is_recorded_for_the_admin(tmp_path):
    path = tmp_path / "membership.log"
    membership.record(membership.Stop("alice", "", frozenset({"sme-credit"})), path)
    assert '"user": "alice"' in path.read_text() and '"teams_left": ["sme-credit"]' in path.read_text()
    assert mode_of(path) == 0o600


class FakeSession:
    """requests.Session for Hub: two pages of active users, then records deletes."""

    def __init__(self) -> None:
        self.headers: dict = {}
        self.deleted: list[str] = []
        self.pages = {
            0: {"items": [{"name": "a"}], "_pagination": {"next": {"offset": 1, "limit": 1}}},
            1: {"items": [{"name": "b"}], "_pagination": {"next": None}},
        }

    def get(self, url, params, headers, timeout):
        assert params["state"] == "active" and headers["Accept"] == membership.PAGINATION
        return SimpleNamespace(raise_for_status=lambda: None, json=lambda: self.pages[params["offset"]])

    def delete(self, url, timeout):
        self.deleted.append(url)
        return SimpleNamespace(status_code=202, text="")


def test_the_hub_is_read_page_after_page_and_servers_stopped_by_name():
    session = FakeSession()
    hub = membership.Hub("http://hub/hub/api/", "secret", session)  # type: ignore[arg-type]
    assert [u["name"] for u in hub.active_users()] == ["a", "b"]
    hub.stop("alice", "")
    hub.stop("alice", "gpu run")
    assert session.deleted == [
        "http://hub/hub/api/users/alice/server",
        "http://hub/hub/api/users/alice/servers/gpu%20run",
    ]
    assert session.headers["Authorization"] == "token secret"


def test_the_spawner_keeps_the_teams_it_started_with_in_its_state():
    spawner = LocalWorkspaceSpawner()
    spawner.started_teams = ["sme-credit"]
    state = spawner.get_state()
    assert state[TEAMS_STATE] == ["sme-credit"]
    restored = LocalWorkspaceSpawner()
    restored.load_state(state)
    assert restored.started_teams == ["sme-credit"]
    restored.clear_state()
    assert TEAMS_STATE not in restored.get_state()


def test_a_recorded_pid_is_adopted_only_while_it_is_still_that_users_workspace():
    import subprocess
    import sys
    from types import SimpleNamespace

    def sleeper(env: dict) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, **env})

    workspace = sleeper({"JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVER_NAME": ""})
    stranger = sleeper({})  # what a reboot or a restore may find under the recorded pid
    try:
        for process, expected in ((workspace, None), (stranger, 0)):
            spawner = LocalWorkspaceSpawner()
            spawner.user = SimpleNamespace(name="alice")
            spawner.load_state({"pid": process.pid})
            assert asyncio.run(spawner.poll()) == expected
        assert spawner.pid == 0 and stranger.poll() is None, "the stranger is forgotten, not stopped"
    finally:
        workspace.kill()
        stranger.kill()
