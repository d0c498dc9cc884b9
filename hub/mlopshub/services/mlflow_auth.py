"""MLflow's ``authorization_function``: hub tokens in, team workspaces out.

Runs inside the MLflow tracking server (``--app-name basic-auth``). Each
request must carry the user's hub token (``Authorization: Bearer <token>`` or
``token <token>``, or the ``mlopshub-mlflow-token`` cookie). A browser opening
an MLflow page without one signs in through the hub's OAuth like at any hub
service (:func:`sign_in_redirect`, :func:`oauth_callback`), which sets that
cookie; scripts without a token get 401.
The token is checked against the hub with :class:`jupyterhub.services.auth.HubOAuth`
(which also checks the ``access:services!service=mlflow`` scope). The user is
then created in MLflow's auth store if missing, and their catalog teams become
role assignments in the team workspaces, so MLflow's own permission checks do
the isolation: a member of one team can neither read nor write another's.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from cachetools import TTLCache
from flask import Response, redirect, request
from jupyterhub.services.auth import HubOAuth
from tornado.web import HTTPError
from werkzeug.datastructures import Authorization

from mlopshub.settings import HUB_AWAY_GRACE, TRUST_SECONDS

log = logging.getLogger("mlopshub.mlflow")

TOKEN_COOKIE = "mlopshub-mlflow-token"
#: The OAuth state of a sign-in under way: the callback must bring back the same value (CSRF).
STATE_COOKIE = "mlopshub-mlflow-oauth-state"
#: JupyterHub's default redirect URI of a service, under the service's prefix.
CALLBACK = "oauth_callback"
MEMBER_ROLE = "team-member"
#: What a team member may do in the team's workspace: create (USE on the
#: workspace slot) and read, write and delete what the team made (EDIT).
MEMBER_GRANTS = (
    ("workspace", "*", "USE"),
    ("experiment", "*", "MANAGE"),
    ("registered_model", "*", "MANAGE"),
)
#: Tokens and users remembered at most (the oldest go first).
MAX_ENTRIES = 10_000

_hub_auth: HubOAuth | None = None
_teams: frozenset[str] | None = None
#: Token -> the hub's answer (None: not accepted), trusted for TRUST_SECONDS, the revocation bound.
_answers: TTLCache[str, dict[str, Any] | None] = TTLCache(maxsize=MAX_ENTRIES, ttl=TRUST_SECONDS)
#: Token -> the hub's last yes, used only while the hub cannot answer (see :func:`hub_answer`).
_accepted: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=MAX_ENTRIES, ttl=HUB_AWAY_GRACE)
#: User -> their groups, when a token's answer does not carry them (asked with the service's own token).
_groups: TTLCache[str, list[str]] = TTLCache(maxsize=MAX_ENTRIES, ttl=TRUST_SECONDS)
#: User -> the teams last written to MLflow's auth store; a change is written at once, and the store is
#: checked again when the entry expires.
_synced: TTLCache[str, frozenset[str]] = TTLCache(maxsize=MAX_ENTRIES, ttl=TRUST_SECONDS)
_MISSING = object()
#: Where MLflow finds the tokens of the teams' scoring Jobs (Kubernetes: the Secret
#: mlopshub-models-mlflow-tokens mounted by helm-values/platform/mlflow.yaml): one file per team, named after
#: it, holding the token its Jobs carry (the Secret models-<team>-mlflow in the models namespace).
MODEL_TOKENS_ENV = "MLOPSHUB_MODEL_TOKENS_DIR"
#: The MLflow user a team's Jobs act as; it has the team's member role, in the team's workspace only.
MODEL_USER_PREFIX = "models-"
#: TTLCache is not thread-safe and MLflow answers requests in threads.
_cache_lock = threading.Lock()
_lock = threading.Lock()


def hub_auth() -> HubOAuth:
    """The service's HubOAuth client (env set by the hub for a managed service, or by the chart)."""
    global _hub_auth
    if _hub_auth is None:
        # hub_answer keeps each answer for TRUST_SECONDS itself: HubAuth's cache is written, never read.
        _hub_auth = HubOAuth(
            cache_max_age=1,
            oauth_client_id=os.environ.get("JUPYTERHUB_CLIENT_ID")
            or f"service-{os.environ.get('JUPYTERHUB_SERVICE_NAME', 'mlflow')}",
        )
    return _hub_auth


def service_prefix() -> str:
    """Where the proxy routes MLflow (``/services/mlflow/``): the cookies' path."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/mlflow/")


def _cached(cache: TTLCache, key: str) -> Any:
    with _cache_lock:
        return cache.get(key, _MISSING)


def _remember(cache: TTLCache, key: str, value: Any) -> None:
    with _cache_lock:
        cache[key] = value


def hub_answer(token: str) -> dict[str, Any] | None:
    """The hub's model of ``token``'s owner (with the token's scopes), or None; asked at most once per TRUST_SECONDS.

    While the hub cannot answer (HubAuth's 5xx: it is restarting), a token it accepted within
    :data:`~mlopshub.settings.HUB_AWAY_GRACE` keeps its last answer (nobody can revoke it then);
    others get the hub's error.
    """
    answer = _cached(_answers, token)
    if answer is _MISSING:
        try:
            answer = hub_auth().user_for_token(token, use_cache=False, sync=True)
        except HTTPError as error:
            known = _cached(_accepted, token)
            if error.status_code < 500 or known is _MISSING:
                raise
            return known
        _remember(_answers, token, answer)
        if answer:
            _remember(_accepted, token, answer)
        else:
            with _cache_lock:
                _accepted.pop(token, None)
    return answer


def _catalog() -> Any:
    from mlopshub import catalog

    global _loaded_catalog
    if _loaded_catalog is None:
        _loaded_catalog = catalog.load(Path(os.environ["MLOPSHUB_CATALOG"]))
    return _loaded_catalog


_loaded_catalog: Any = None


def catalog_teams() -> frozenset[str]:
    """Team names from the catalog the hub was started with."""
    global _teams
    if _teams is None:
        _teams = frozenset(_catalog().teams)
    return _teams


#: The hub's teams (groups marked ``mlopshub.team``, archived ones included: their runs stay readable), asked
#: of the hub at most once per TRUST_SECONDS; the last answer is kept while the hub cannot answer.
_hub_teams: TTLCache[str, frozenset[str]] = TTLCache(maxsize=1, ttl=TRUST_SECONDS)
_last_hub_teams: frozenset[str] = frozenset()


def hub_groups() -> dict[str, dict[str, Any]]:
    """Every hub group's properties (``GET /groups``, page after page), asked with the service's own token."""
    auth = hub_auth()
    groups: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        response = requests.get(
            f"{auth.api_url}/groups",
            params={"offset": offset, "limit": 200},
            headers={"Authorization": f"token {auth.api_token}", "Accept": "application/jupyterhub-pagination+json"},
            timeout=10,
        )
        response.raise_for_status()
        page = response.json()
        groups.update({group["name"]: dict(group.get("properties") or {}) for group in page["items"]})
        following = (page.get("_pagination") or {}).get("next")
        if not following:
            return groups
        offset = int(following["offset"])


def team_names() -> frozenset[str]:
    """The teams now: the catalog's and those made at runtime (the Teams page), read from the hub's groups."""
    global _last_hub_teams
    cached = _cached(_hub_teams, "teams")
    if cached is not _MISSING:
        return cached
    from mlopshub import access

    try:
        teams = frozenset(access.teams_of(_catalog(), hub_groups(), archived=True)) | catalog_teams()
    except (requests.RequestException, KeyError, ValueError) as error:
        log.warning("could not read the hub's teams (%s); using the last known", error)
        return _last_hub_teams | catalog_teams()
    _last_hub_teams = teams
    _remember(_hub_teams, "teams", teams)
    return teams


def _token_from_header() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def _token_from_request() -> str | None:
    return _token_from_header() or request.cookies.get(TOKEN_COOKIE) or None


def _browser_page() -> bool:
    """A browser opening a page: a GET that asks for HTML by name (scripts and the UI's own calls don't)."""
    return request.method == "GET" and any(kind == "text/html" and q > 0 for kind, q in request.accept_mimetypes)


def _secure() -> bool:
    """Whether the browser came over https (the proxy says so in X-Forwarded-Proto)."""
    return request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip() == "https"


def _cookie_options() -> dict[str, Any]:
    return {"path": service_prefix(), "httponly": True, "secure": _secure(), "samesite": "Lax"}


def sign_in_redirect() -> Response:
    """Send a browser without a valid token to the hub's OAuth authorize page (back at :func:`oauth_callback`)."""
    auth = hub_auth()
    here = request.path + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
    state = auth.generate_state(next_url=here)
    response = redirect(f"{auth.login_url}&state={quote(state, safe='')}", code=302)
    response.set_cookie(STATE_COOKIE, state, max_age=auth.oauth_state_max_age, **_cookie_options())
    return response


def oauth_callback() -> Response:
    """The hub's redirect back: check the state against this browser's cookie, trade the code for a token, keep
    the token in the MLflow UI cookie, and go back to the page first asked for."""
    auth = hub_auth()
    state, code = request.args.get("state", ""), request.args.get("code", "")
    expected = request.cookies.get(STATE_COOKIE, "")
    if not (state and code and expected and secrets.compare_digest(state, expected)):
        return Response(
            f"This sign-in did not start in this browser (OAuth state mismatch): open {service_prefix()} again\n",
            status=400,
            mimetype="text/plain",
        )
    next_url = auth.get_next_url(state)
    auth.clear_oauth_state(state)
    if not next_url.startswith(service_prefix()):
        next_url = service_prefix()
    try:
        token = auth.token_for_code(code, sync=True)
    except Exception as error:  # an expired or reused code: the hub refuses it
        log.warning("OAuth code refused by the hub: %s", error)
        return Response(
            f"The hub refused this sign-in (the code expired or was used): open {service_prefix()} again\n",
            status=400,
            mimetype="text/plain",
        )
    response = redirect(next_url, code=302)
    # The only cookie of this response: MLflow's security-headers middleware keeps one Set-Cookie per response.
    # The state cookie expires by itself (the state it names is cleared here, the code is good only once).
    response.set_cookie(TOKEN_COOKIE, token, **_cookie_options())
    return response


def model_token_team(token: str, folder: Path | None) -> str | None:
    """The team whose scoring Jobs carry ``token`` (the file ``<team>`` in ``folder`` holds it), or None.

    Dot files (the ``..data`` links of a mounted Secret) and empty files are never matched.
    """
    if folder is None or not folder.is_dir():
        return None
    offered = token.encode()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        expected = path.read_bytes().strip()
        if expected and secrets.compare_digest(offered, expected):
            return path.name
    return None


def model_tokens_dir() -> Path | None:
    """The folder of the teams' Job tokens (:data:`MODEL_TOKENS_ENV`), None when not configured."""
    folder = os.environ.get(MODEL_TOKENS_ENV)
    return Path(folder) if folder else None


def _team_account(team: str) -> Authorization:
    """A team's scoring Jobs, as MLflow user ``models-<team>`` with the team's role and no other."""
    username = f"{MODEL_USER_PREFIX}{team}"
    with _lock:
        if _cached(_synced, username) != frozenset({team}):
            ensure_user(username)
            sync_teams(username, frozenset({team}))
            _remember(_synced, username, frozenset({team}))
    return Authorization("basic", {"username": username, "password": ""})


def _is_callback() -> bool:
    return request.path == f"{service_prefix()}{CALLBACK}"


def _unauthorized(message: str) -> Response:
    return Response(
        message + "\n", status=401, mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="mlopshub"'}
    )


def _groups_of(model: dict) -> list[str]:
    if "groups" in model:
        return list(model["groups"])
    # The token may not carry read:users:groups; ask with the service's own token.
    groups = _cached(_groups, model["name"])
    if groups is _MISSING:
        auth = hub_auth()
        response = requests.get(
            f"{auth.api_url}/users/{quote(model['name'])}",
            headers={"Authorization": f"token {auth.api_token}"},
            timeout=10,
        )
        response.raise_for_status()
        groups = list(response.json().get("groups", []))
        _remember(_groups, model["name"], groups)
    return groups


def ensure_user(username: str) -> None:
    """Create ``username`` in MLflow's auth store once; a parallel request may win the race."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    if store.has_user(username):
        return
    try:
        # A random password nobody knows: users only ever come in with hub tokens.
        store.create_user(username, secrets.token_urlsafe(32))
    except MlflowException:
        if not store.has_user(username):
            raise


def ensure_team_workspace(team: str) -> int:
    """The team's workspace and its member role exist; return the role's id."""
    from mlflow.entities.workspace import Workspace
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store
    from mlflow.server.workspace_helpers import _get_workspace_store

    workspaces = _get_workspace_store()
    try:
        workspaces.get_workspace(team)
    except MlflowException:
        try:
            workspaces.create_workspace(Workspace(name=team, description=f"Experiments and models of team {team}"))
        except MlflowException:
            workspaces.get_workspace(team)  # created by a parallel request
    try:
        role = store.get_role_by_name(team, MEMBER_ROLE)
    except MlflowException:
        try:
            role = store.create_role(MEMBER_ROLE, team, description=f"Members of team {team} (synced from the hub)")
            for resource_type, pattern, permission in MEMBER_GRANTS:
                store.add_role_permission(role.id, resource_type, pattern, permission)
        except MlflowException:
            role = store.get_role_by_name(team, MEMBER_ROLE)
    return role.id


def sync_teams(username: str, teams: frozenset[str]) -> None:
    """Make ``username``'s team-member roles match ``teams`` exactly."""
    from mlflow.server.auth import store

    user_id = store.get_user(username).id
    current = {role.workspace: role for role in store.list_user_roles(user_id) if role.name == MEMBER_ROLE}
    for team in teams - set(current):
        try:
            store.assign_role_to_user(user_id, ensure_team_workspace(team))
        except Exception:  # assigned by a parallel request
            log.debug("role for %s in %s already assigned", username, team)
    for team in set(current) - teams:
        store.unassign_role_from_user(user_id, current[team].id)
        log.info("removed %s from MLflow workspace %s (no longer in the team)", username, team)


def _admin_basic_auth() -> Authorization | Response | None:
    """MLflow's own basic auth, for the auth store's admin only (the release pipeline); None for other requests.

    Hub users never come in this way: their MLflow passwords are random and
    unknown, and any other user name is refused here rather than checked.
    """
    credentials = request.authorization
    if credentials is None or credentials.type != "basic":
        return None
    from mlflow.server.auth import auth_config, authenticate_request_basic_auth

    if credentials.username != auth_config.admin_username:
        return _unauthorized("Use a hub token (Authorization: Bearer <token>); passwords are for the pipeline only")
    return authenticate_request_basic_auth()


def authenticate() -> Authorization | Response:
    """The ``authorization_function``: a hub user with the mlflow scope, synced to their teams.

    The release pipeline, which works in every team's workspace, signs in as
    the MLflow admin with basic auth (see :func:`_admin_basic_auth`). A team's
    scoring Jobs carry the team's token (:func:`model_token_team`) and act as
    ``models-<team>``, a member of that team only. The OAuth callback is
    answered here too: MLflow runs this function before any route.
    """
    admin = _admin_basic_auth()
    if admin is not None:
        return admin
    if _is_callback():
        return oauth_callback()
    token = _token_from_request()
    if token is None:
        if _browser_page():
            return sign_in_redirect()
        return _unauthorized("A hub token is required: Authorization: Bearer <token>")
    team = model_token_team(token, model_tokens_dir())
    if team is not None and team in team_names():
        return _team_account(team)
    auth = hub_auth()
    model = hub_answer(token)
    if not model or model.get("kind", "user") != "user":
        if _browser_page() and _token_from_header() is None:
            return sign_in_redirect()  # the UI cookie expired or was revoked: sign in again
        return _unauthorized("The hub does not accept this token")
    if not auth.check_scopes(auth.access_scopes, model):
        return Response(f"This token may not use MLflow (needs {', '.join(sorted(auth.access_scopes))})\n", status=403)
    username = model["name"]
    if username.startswith(MODEL_USER_PREFIX) and username.removeprefix(MODEL_USER_PREFIX) in team_names():
        return Response(f"The MLflow user {username} is a team's scoring Jobs, not a hub user\n", status=403)
    teams = frozenset(_groups_of(model)) & team_names()
    with _lock:
        if _cached(_synced, username) != teams:
            ensure_user(username)
            sync_teams(username, teams)
            _remember(_synced, username, teams)
    return Authorization("basic", {"username": username, "password": ""})


def add_root_health(flask_app: Any) -> None:
    """Answer ``/health`` at the root too when MLflow runs under a static prefix.

    MLflow serves its health check under ``--static-prefix`` only
    (``/services/mlflow/health``), while the community MLflow chart's liveness
    and readiness probes ask ``/health``, a path its values cannot change:
    without this the pod never becomes Ready and is restarted forever. Like
    MLflow's own, the check needs no token (MLflow's auth skips ``/health``).
    """
    from mlflow.server.handlers import STATIC_PREFIX_ENV_VAR

    prefix = os.environ.get(STATIC_PREFIX_ENV_VAR, "").rstrip("/")
    if prefix and "mlopshub_root_health" not in flask_app.view_functions:
        flask_app.add_url_rule("/health", "mlopshub_root_health", lambda: ("OK", 200))


def create_app(app=None):  # type: ignore[no-untyped-def]
    """MLflow app factory (``mlflow server --app-name mlopshub``): basic-auth plus the team workspaces.

    MLflow resolves a request's workspace before it authenticates, so every
    team's workspace and member role must exist before the first request.
    """
    from mlflow.server import app as tracking_app
    from mlflow.server.auth import create_app as create_auth_app

    add_root_health(app or tracking_app)
    app = create_auth_app(app or tracking_app)
    for team in sorted(catalog_teams()):
        ensure_team_workspace(team)
    return app
