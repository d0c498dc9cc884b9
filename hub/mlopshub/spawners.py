"""From the catalog to a running workspace: the profile form, enforcement, the local spawner.

The same three steps serve both modes:

1. :func:`profile_form` shows only the profiles the user's groups allow;
2. :func:`apply_profile` (JupyterHub's ``apply_user_options`` hook) resolves
   the requested slug and refuses anything else with 403 (forbidden) or 400
   (unknown), before anything starts;
3. the spawner starts what :func:`apply_profile` resolved:
   :class:`LocalWorkspaceSpawner` here, KubeSpawner on Kubernetes.
"""

from __future__ import annotations

import html
import os
import pwd
import re
import resource
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil
from jupyterhub import orm
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Instance, Unicode, default

from . import access, quotas
from .accounts import ensure_team_folder, ensure_unix_user, unix_name
from .catalog import Catalog, ProfileNotAllowed, SpawnSettings, allowed_profiles, parse_quantity, resolve

WORKSPACE_CONFIG = Path(__file__).resolve().parent / "workspace_config"
#: Key of the spawner's state (``GET /hub/api/users`` with ``admin:server_state``) that lists the teams a running
#: workspace was started with: their Unix groups and remotes stay with it until it stops (see services/membership).
TEAMS_STATE = "mlopshub_teams"
#: Where OAuthenticator keeps the IdP's userinfo claims in a user's auth state (its ``user_auth_state_key``).
USERINFO_KEY = "oauth_user"
EMAIL = re.compile(r"[^\s<>@]{1,64}@[^\s<>@]{1,190}")


def user_group_properties(user: Any) -> dict[str, dict[str, Any]]:
    """The hub user's groups as ``{name: properties}``, read from the hub's database."""
    return {group.name: dict(group.properties or {}) for group in user.groups}


def user_teams(spawner: Any, catalog: Catalog) -> list[str]:
    """The teams (not archived) the spawner's user is a member of now, sorted."""
    return access.teams_of(catalog, user_group_properties(spawner.user))


def entitlements_for(spawner: Any, catalog: Catalog) -> list[str]:
    """Profile slugs the spawner's user may use now (group properties as they are in the hub)."""
    return access.entitled_profiles(catalog, user_group_properties(spawner.user))


def _choice_inputs(profile: Any) -> str:
    parts = []
    defaults = profile.default_choices()
    for name, option in profile.options.items():
        items = "".join(
            f'<option value="{html.escape(slug)}"{" selected" if defaults[name] == slug else ""}>'
            f"{html.escape(choice['display_name'])}</option>"
            for slug, choice in option["choices"].items()
        )
        parts.append(
            f'<label class="mlopshub-option">{html.escape(option["display_name"])} '
            f'<select name="{html.escape(profile.slug)}--{html.escape(name)}">{items}</select></label>'
        )
    return "".join(parts)


def no_team_notice(admin: bool, admins: list[str], hub_url: str) -> str:
    """The spawn page of a user in no team: who can add them, and no Start button (it could only fail: 403)."""
    if admin:
        who = (
            f'You are a hub admin: add yourself to a team in <a href="{html.escape(hub_url)}admin#/groups">Admin, '
            "Groups</a> (the team, Add user, then Apply), or to platform-admins to use every profile."
        )
    else:
        names = f" ({html.escape(', '.join(admins))})" if admins else ""
        who = (
            f"Ask for access to your team: a platform admin{names} adds you to its group, or, with the bank's "
            "sign-on, your team's group in the directory does."
        )
    return (
        '<div class="alert alert-warning" id="mlopshub-no-profiles">You are in no team, so there is no workspace '
        f"you may start. {who}</div><style>#spawn_form .feedback-container {{ display: none; }}</style>"
    )


def hub_admins(user: Any) -> list[str]:
    """The hub's admins, by name (they can add a user to a team)."""
    return sorted(admin.name for admin in user.db.query(orm.User).filter(orm.User.admin.is_(True)))


def profile_form(catalog: Catalog, entitlements: list[str], gpu_available: bool, no_team: Callable[[], str]) -> str:
    """The spawn form: one radio button per allowed profile, with its option choices (``no_team()`` if none)."""
    profiles = allowed_profiles(catalog, entitlements, gpu_available)
    if not profiles:
        return no_team()
    default = next((p.slug for p in profiles if p.settings.get("default")), profiles[0].slug)
    rows = []
    for profile in profiles:
        checked = " checked" if profile.slug == default else ""
        rows.append(
            f'<div class="mlopshub-profile" data-profile="{html.escape(profile.slug)}">'
            f'<label><input type="radio" name="profile" value="{html.escape(profile.slug)}"{checked}> '
            f"<strong>{html.escape(profile.display_name)}</strong></label>"
            f"<p>{html.escape(profile.description)}</p>{_choice_inputs(profile)}</div>"
        )
    return '<div id="mlopshub-profiles">' + "".join(rows) + "</div>"


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields to user options: ``{"profile": slug, "<option>": choice, ...}``."""
    slug = (formdata.get("profile") or [""])[0]
    options: dict[str, Any] = {"profile": slug}
    prefix = f"{slug}--"
    for key, values in formdata.items():
        if key.startswith(prefix) and values:
            options[key[len(prefix) :]] = values[0]
    return options


def resolve_for(spawner: Any, catalog: Catalog, user_options: dict[str, Any], gpu_available: bool) -> SpawnSettings:
    """Resolve ``user_options`` for the spawner's user, or raise an HTTP error naming the profile."""
    if not isinstance(user_options, dict):
        raise web.HTTPError(400, 'expected a JSON object such as {"profile": "python-cpu"}')
    entitled = entitlements_for(spawner, catalog)
    slug = user_options.get("profile")
    # No team: say so (and whether a team is archived), unless the profile does not exist at all (400 names it).
    if not slug or (not entitled and isinstance(slug, str) and slug in catalog.profiles):
        runnable = allowed_profiles(catalog, entitled, gpu_available)
        if not runnable:
            groups = user_group_properties(spawner.user)
            archived = [t for t in access.teams_of(catalog, groups, archived=True) if access.is_archived(groups[t])]
            why = f" (team {', '.join(archived)} is archived)" if archived else ""
            raise web.HTTPError(
                403, f"user '{spawner.user.name}' is in no team that may start a workspace{why}; ask a platform admin"
            )
        slug = next((p.slug for p in runnable if p.settings.get("default")), runnable[0].slug)
    if not isinstance(slug, str):
        raise web.HTTPError(400, f"profile: expected a profile slug, got {slug!r}")
    choices = {key: value for key, value in user_options.items() if key != "profile"}
    try:
        return resolve(catalog, entitled, slug, choices, gpu_available=gpu_available)
    except ProfileNotAllowed as error:
        status = 400 if slug not in catalog.profiles else 403
        raise web.HTTPError(status, str(error)) from None
    except ValueError as error:
        raise web.HTTPError(400, str(error)) from None


def git_identity(user: str, email: str | None = None) -> dict[str, str]:
    """Environment that makes git in a workspace commit as the hub user, ``<user>@users.mlopshub`` without an email.

    Commits name the hub user (lineage says who changed code and data): the
    ``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` variables for every commit, and
    ``user.name``/``user.email`` in git's configuration (``GIT_CONFIG_COUNT``)
    for tools that read it: JupyterLab's Git panel asks ``git config --list``
    and, finding no identity there, asks "Who is committing?" before each commit.
    """
    email = email or f"{user}@users.mlopshub"
    return {
        "GIT_AUTHOR_NAME": user,
        "GIT_COMMITTER_NAME": user,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "user.name",
        "GIT_CONFIG_VALUE_0": user,
        "GIT_CONFIG_KEY_1": "user.email",
        "GIT_CONFIG_VALUE_1": email,
    }


def email_claim(auth_state: Mapping[str, Any] | None) -> str | None:
    """The ``email`` claim of an OIDC sign-in's userinfo, when the auth state holds a well-formed one."""
    userinfo = (auth_state or {}).get(USERINFO_KEY)
    email = userinfo.get("email") if isinstance(userinfo, Mapping) else None
    return email if isinstance(email, str) and EMAIL.fullmatch(email) else None


def remember_email(spawner: Any, auth_state: Mapping[str, Any] | None) -> None:
    """``Spawner.auth_state_hook``: keep the user's email claim for the workspace's git identity (None: none)."""
    spawner.git_email = email_claim(auth_state)


def workspace_environment(
    settings: SpawnSettings,
    teams: list[str],
    mlflow_url: str,
    token: str,
    user: str,
    email: str | None = None,
    pipeline_url: str | None = None,
) -> dict[str, str]:
    """Environment every workspace gets, in both modes: MLflow with the user's credentials, the profile's env.

    ``email`` is the user's email claim (with OIDC); git commits carry it. ``pipeline_url`` is the
    pipeline's API (default: beside ``mlflow_url`` under the same ``/services/``).
    """
    env = {
        **git_identity(user, email),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_TOKEN": token,
        "MLOPSHUB_PROFILE": settings.profile,
        "MLOPSHUB_IMAGE": settings.image,
        "MLOPSHUB_TEAMS": ",".join(teams),
        # The release pipeline's API, beside MLflow under the hub's /services/ (the sidebar publishes there).
        "MLOPSHUB_PIPELINE_URL": pipeline_url
        or mlflow_url.rstrip("/").rsplit("/services/", 1)[0] + "/services/pipeline/api",
        "DVC_NO_ANALYTICS": "1",
    }
    if teams:
        env["MLFLOW_WORKSPACE"] = teams[0]
    if settings.mem_limit:
        env["MEM_LIMIT"] = str(parse_quantity(settings.mem_limit))
    if settings.cpu_limit:
        env["CPU_LIMIT"] = str(settings.cpu_limit)
    env.update(settings.environment)
    return env


def _is_workspace_of(pid: int, user: str, server: str) -> bool:
    """Whether ``pid`` runs the single-user server of ``user``'s ``server`` (JupyterHub sets both variables)."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return False
    return env.get("JUPYTERHUB_USER") == user and env.get("JUPYTERHUB_SERVER_NAME", "") == server


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (none if it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _preexec(
    uid: int | None, gid: int | None, groups: list[int], home: str, mem_limit: int | None
) -> Callable[[], None]:
    """Runs in the child before exec: drop to the user (with their team groups), cap memory, start in the home.

    The user's first team is the primary group and the umask is 002: what
    they push to the team's DVC remote (folders made on first use) stays
    writable by the next member. The home itself is 0700, so nothing in it
    is opened to the team.
    """

    def preexec() -> None:
        if mem_limit:
            # RLIMIT_DATA caps each process's heap (malloc and anonymous maps);
            # the only memory limit a non-root, cgroup-less machine enforces.
            resource.setrlimit(resource.RLIMIT_DATA, (mem_limit, mem_limit))
        if uid is not None and gid is not None:
            os.setgid(groups[0] if groups else gid)
            os.setgroups([gid, *groups])
            os.setuid(uid)
            os.umask(0o002)
        os.chdir(home)

    return preexec


class PlatformState:
    """What the platform keeps about a running server in its spawner's state, for both spawners (this one and
    :class:`mlopshub.kubernetes.CatalogKubeSpawner`): the teams it started with (their Unix groups or volumes stay
    with it until it stops: services/membership) and its quota charge (:mod:`mlopshub.quotas`), over a hub restart.
    """

    #: The teams the running server was started with.
    started_teams: list[str] = []
    #: What this server counts against its team's quotas, set before it starts.
    mlopshub_charge: quotas.Charge | None = None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        if self.started_teams:
            state[TEAMS_STATE] = list(self.started_teams)
        if self.mlopshub_charge is not None:
            state[quotas.CHARGE_STATE] = self.mlopshub_charge.to_state()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        self.started_teams = list(state.get(TEAMS_STATE, []))
        self.mlopshub_charge = quotas.Charge.from_state(state.get(quotas.CHARGE_STATE))

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self.started_teams = []
        self.mlopshub_charge = None


class LocalWorkspaceSpawner(PlatformState, LocalProcessSpawner):
    """Starts a resolved profile as a local JupyterLab process.

    Running as root, each hub user runs as their own Unix account
    (``jupyter-<name>``) with a home only they can read. Running as a normal
    user, every workspace runs as that user (homes are still separate folders).
    """

    catalog = Instance(Catalog, help="The catalog profiles resolve against (set by mlopshub.configure).").tag(
        config=True
    )
    gpu_available = Bool(False, help="Whether GPU profiles may start on this machine.").tag(config=True)
    homes_dir = Unicode(help="Folder that holds one home per user, e.g. <data dir>/homes.").tag(config=True)
    remotes_dir = Unicode(
        help="Folder that holds each team's default DVC remote (<folder>/<team>), shared by the team's members only."
    ).tag(config=True)
    mlflow_url = Unicode(help="The MLflow service URL workspaces use, e.g. http://127.0.0.1:8000/services/mlflow.").tag(
        config=True
    )
    run_as_unix_users = Bool(
        os.geteuid() == 0,
        help="Run each workspace as its own Unix account (default: when the hub runs as root).",
    ).tag(config=True)

    resolved: SpawnSettings | None = None
    #: The user's email claim (OIDC), set by :func:`remember_email` before the start; commits carry it.
    git_email: str | None = None

    @default("auth_state_hook")
    def _auth_state_hook_default(self) -> Callable[[Any, Mapping[str, Any] | None], None]:
        return remember_email

    @property
    def home(self) -> Path:
        return Path(self.homes_dir) / self.user.name

    def _options_form_default(self) -> Callable[[Any], str]:
        return lambda spawner: profile_form(
            spawner.catalog,
            entitlements_for(spawner, spawner.catalog),
            spawner.gpu_available,
            lambda: no_team_notice(spawner.user.admin, hub_admins(spawner.user), spawner.hub.base_url),
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:  # type: ignore[override]
        """Read the profile form; the choice is checked by ``apply_user_options``."""
        return options_from_form(formdata)

    def _prepare_home(self) -> tuple[int | None, int | None, list[int]]:
        """The home (mode 0700) and, as root, the Unix account and its team groups."""
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        teams = self.started_teams  # the teams recorded in the state are exactly those whose groups it gets
        if not self.run_as_unix_users:
            home.chmod(0o700)
            for team in teams:
                self._team_remote(team).mkdir(parents=True, exist_ok=True)
            return None, None, []
        account = ensure_unix_user(unix_name(self.user.name), home)
        os.chown(home, account.pw_uid, account.pw_gid)
        home.chmod(0o700)
        group_ids = [ensure_team_folder(self._team_remote(team), team) for team in teams]
        return account.pw_uid, account.pw_gid, group_ids

    def _teams(self) -> list[str]:
        return user_teams(self, self.catalog)

    def _team_remote(self, team: str) -> Path:
        return Path(self.remotes_dir) / team

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        teams = self._teams()
        if self.resolved is not None:
            env.update(
                workspace_environment(
                    self.resolved, teams, self.mlflow_url, self.api_token, self.user.name, self.git_email
                )
            )
        if teams:
            env["MLOPSHUB_DVC_REMOTE"] = str(self._team_remote(teams[0]))
        # The platform's JupyterLab settings: no news or update checks reaching the internet.
        env["JUPYTER_CONFIG_PATH"] = str(WORKSPACE_CONFIG)
        # R reaches MLflow and DVC through this environment's Python; the R helper lives beside it.
        env["RETICULATE_PYTHON"] = sys.executable
        env["R_LIBS"] = str(Path(sys.prefix) / "lib" / "R")
        # The environment's tools (dvc, git, jupyter) come first in a terminal and from R's system2().
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = unix_name(self.user.name) if self.run_as_unix_users else pwd.getpwuid(os.getuid()).pw_name
        env["HOME"] = str(self.home)
        env["SHELL"] = "/bin/bash"
        return env

    def get_args(self) -> list[str]:
        args = super().get_args()
        if self.resolved is not None:
            for kernel in self.resolved.kernels:
                args.append(f"--KernelSpecManager.allowed_kernelspecs={kernel}")
            args.append(f"--MappingKernelManager.default_kernel_name={self.resolved.default_kernel}")
        if not self.run_as_unix_users and os.geteuid() == 0:
            args.append("--allow-root")
        return args

    async def start(self) -> tuple[str, int]:
        """Resolve (again, in case options came without the hook), prepare the home, start."""
        if self.resolved is None:
            raise web.HTTPError(500, "no profile was resolved for this spawn")
        self.started_teams = self._teams()
        uid, gid, groups = self._prepare_home()
        mem_limit = parse_quantity(self.resolved.mem_limit) if self.resolved.mem_limit else None
        self._preexec_fn = _preexec(uid, gid, groups, str(self.home), mem_limit)
        self.notebook_dir = str(self.home)
        return await super().start()

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        return self._preexec_fn

    async def poll(self) -> int | None:
        """As LocalProcessSpawner's; and a server found again by its pid (after a hub restart) must still be this
        user's workspace. After a reboot or a restore the recorded pid may name another process, which must be
        neither adopted nor, later, stopped as if it were the workspace."""
        status = await super().poll()
        if status is None and self.proc is None and not _is_workspace_of(self.pid, self.user.name, self.name):
            self.log.warning("%s: pid %s is no longer its workspace; the server is gone", self._log_name, self.pid)
            self.clear_state()
            return 0
        return status

    async def stop(self, now: bool = False) -> None:
        """Stop the server, then whatever it started that outlived it.

        Kernels run in sessions of their own (jupyter_client starts them so), so
        a kernel that ignores its shutdown request survives the server; it is
        found among the server's descendants, noted before the server stops.
        """
        descendants = _descendants(self.pid) if self.pid else []
        await super().stop(now=now)
        leftover = [process for process in descendants if process.is_running()]
        for process in leftover:
            self.log.warning(
                "%s: stopping %s (pid %s) left behind by the workspace", self._log_name, process.name(), process.pid
            )
            process.terminate()
        _, alive = psutil.wait_procs(leftover, timeout=5)
        for process in alive:
            process.kill()


def _team_profiles(catalog: Catalog) -> Callable[[str, Mapping[str, Any]], list[str]]:
    return lambda team, properties: access.entitled_profiles(catalog, {team: properties})


def _charge_of_running(spawner: Any, catalog: Catalog) -> quotas.Charge | None:
    """The charge of a server that holds none (started before quotas, or its spawner lost it): its profile's
    limits from its ``user_options``, charged to the first of its user's teams that gives the profile."""
    options = dict(getattr(spawner, "user_options", None) or {})
    slug = options.pop("profile", None)
    if slug not in catalog.profiles:
        return None
    try:
        settings = resolve(catalog, list(catalog.profiles), slug, options, gpu_available=True)
    except (ProfileNotAllowed, ValueError):
        return None
    groups = user_group_properties(spawner.user)
    profiles_of = _team_profiles(catalog)
    team = next((t for t in access.teams_of(catalog, groups) if slug in profiles_of(t, groups[t])), "")
    return quotas.charge_of(spawner.user.name, spawner.name, team, settings)


def running_charges(spawner: Any, catalog: Catalog) -> list[quotas.Charge]:
    """The charges of every active server the hub holds, but ``spawner``'s own."""
    app = (getattr(spawner.user, "settings", None) or {}).get("app")
    if app is None:  # an offline render (mlopshub profiles render): nothing runs
        return []
    charges = []
    for user in list(app.users.values()):
        for other in list(user.spawners.values()):
            if other is spawner or not other.active:
                continue
            charge = getattr(other, "mlopshub_charge", None)
            if charge is None:
                charge = _charge_of_running(other, catalog)
                other.mlopshub_charge = charge
            if charge is not None:
                charges.append(charge)
    return charges


def charge_spawn(spawner: Any, catalog: Catalog, settings: SpawnSettings) -> quotas.Charge:
    """Charge the spawn to a team with room (:func:`mlopshub.quotas.choose_team`), or refuse it: 429 naming the
    quota, the team's use and who uses it. Synchronous: counting and charging happen with no await between."""
    groups = user_group_properties(spawner.user)
    teams = {name: groups[name] for name in access.teams_of(catalog, groups)}
    try:
        charge = quotas.choose_team(
            spawner.user.name, spawner.name, settings, teams, running_charges(spawner, catalog), _team_profiles(catalog)
        )
    except quotas.QuotaExceeded as error:
        raise web.HTTPError(429, str(error)) from None
    spawner.mlopshub_charge = charge
    return charge


def make_apply_profile(catalog: Catalog, gpu_available: bool) -> Callable[[Any, dict[str, Any]], None]:
    """JupyterHub's ``Spawner.apply_user_options`` hook: resolve, then charge to a team's quotas, or refuse,
    before anything starts."""

    def apply_profile(spawner: Any, user_options: dict[str, Any]) -> None:
        spawner.resolved = resolve_for(spawner, catalog, user_options or {}, gpu_available)
        charge = charge_spawn(spawner, catalog, spawner.resolved)
        spawner.log.info(
            "%s: profile %s with %s, charged to %s",
            spawner._log_name,
            spawner.resolved.profile,
            spawner.resolved.choices,
            f"team {charge.team}" if charge.team else "no team",
        )

    return apply_profile


def default_cmd() -> list[str]:
    """The single-user command from the hub's own environment."""
    return [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
