"""MLflow's ``authorization_function``: hub tokens in, team workspaces out.

Runs inside the MLflow tracking server (``--app-name basic-auth``). Each
request must carry the user's hub token (``Authorization: Bearer <token>`` or
``token <token>``, or the ``mlopshub-mlflow-token`` cookie the UI login sets).
The token is checked against the hub with :class:`jupyterhub.services.auth.HubAuth`
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
import time
from pathlib import Path
from urllib.parse import quote

import requests
from flask import Response, request
from jupyterhub.services.auth import HubAuth
from werkzeug.datastructures import Authorization

log = logging.getLogger("mlopshub.mlflow")

TOKEN_COOKIE = "mlopshub-mlflow-token"
MEMBER_ROLE = "team-member"
#: What a team member may do in the team's workspace: create (USE on the
#: workspace slot) and read, write and delete what the team made (EDIT).
MEMBER_GRANTS = (
    ("workspace", "*", "USE"),
    ("experiment", "*", "MANAGE"),
    ("registered_model", "*", "MANAGE"),
)
#: How long a user's team assignments stay trusted before they are synced again.
SYNC_SECONDS = 30.0

_hub_auth: HubAuth | None = None
_teams: frozenset[str] | None = None
_synced: dict[str, tuple[float, frozenset[str]]] = {}
_lock = threading.Lock()


def hub_auth() -> HubAuth:
    """The service's HubAuth client (env set by the hub for a managed service)."""
    global _hub_auth
    if _hub_auth is None:
        _hub_auth = HubAuth(cache_max_age=int(SYNC_SECONDS))
    return _hub_auth


def catalog_teams() -> frozenset[str]:
    """Team names from the catalog the hub was started with."""
    global _teams
    if _teams is None:
        from mlopshub import catalog

        _teams = frozenset(catalog.load(Path(os.environ["MLOPSHUB_CATALOG"])).teams)
    return _teams


def _token_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE) or None


def _unauthorized(message: str) -> Response:
    return Response(
        message + "\n", status=401, mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="mlopshub"'}
    )


def _groups_of(model: dict) -> list[str]:
    if "groups" in model:
        return list(model["groups"])
    # The token may not carry read:users:groups; ask with the service's own token.
    auth = hub_auth()
    response = requests.get(
        f"{auth.api_url}/users/{quote(model['name'])}", headers={"Authorization": f"token {auth.api_token}"}, timeout=10
    )
    response.raise_for_status()
    return list(response.json().get("groups", []))


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
    the MLflow admin with basic auth (see :func:`_admin_basic_auth`).
    """
    admin = _admin_basic_auth()
    if admin is not None:
        return admin
    token = _token_from_request()
    if token is None:
        return _unauthorized("A hub token is required: Authorization: Bearer <token>")
    auth = hub_auth()
    model = auth.user_for_token(token, sync=True)
    if not model or model.get("kind", "user") != "user":
        return _unauthorized("The hub does not accept this token")
    if not auth.check_scopes(auth.access_scopes, model):
        return Response(f"This token may not use MLflow (needs {', '.join(sorted(auth.access_scopes))})\n", status=403)
    username = model["name"]
    now = time.monotonic()
    with _lock:
        synced_at, synced_teams = _synced.get(username, (0.0, frozenset()))
        if now - synced_at > SYNC_SECONDS:
            teams = frozenset(_groups_of(model)) & catalog_teams()
            ensure_user(username)
            if teams != synced_teams or synced_at == 0.0:
                sync_teams(username, teams)
            _synced[username] = (now, teams)
    return Authorization("basic", {"username": username, "password": ""})


def create_app(app=None):  # type: ignore[no-untyped-def]
    """MLflow app factory (``mlflow server --app-name mlopshub``): basic-auth plus the team workspaces.

    MLflow resolves a request's workspace before it authenticates, so every
    team's workspace and member role must exist before the first request.
    """
    from mlflow.server import app as tracking_app
    from mlflow.server.auth import create_app as create_auth_app

    app = create_auth_app(app or tracking_app)
    for team in sorted(catalog_teams()):
        ensure_team_workspace(team)
    return app
