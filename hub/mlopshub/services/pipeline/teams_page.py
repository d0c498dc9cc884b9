"""The Teams page for platform admins: ``/services/pipeline/teams/``, signed in through the hub's OAuth.

A browser has no hub token to send, so the page signs in like any hub
service page: :class:`jupyterhub.services.auth.HubOAuthenticated` sends it
through ``/hub/api/oauth2/authorize`` (no "authorize this service?" question:
``oauth_no_confirm``), and the callback keeps the token in a signed, HttpOnly
cookie scoped to ``/services/pipeline/``. The page's script calls the same
operations as ``/api/teams`` under ``teams/api/``, with that cookie; JupyterHub's
HubOAuth checks the ``_xsrf`` token on every request that changes something,
and each call needs ``custom:mlopshub:manage-teams`` (the service's OAuth
client may carry that scope: ``mlopshub.configure``). The token API itself
never reads a cookie.
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from mlopshub.settings import TRUST_SECONDS

from .auth import caller_from_model
from .team_admin import MANAGE_TEAMS, TeamAdmin, team_routes

STATIC = Path(__file__).resolve().parent / "static"


def page_hub_auth() -> HubOAuth:
    """The service's HubOAuth client, from the environment the hub (or the supervisor) gives it; a cookie's
    token is asked of the hub again after TRUST_SECONDS (the revocation bound)."""
    return HubOAuth.instance(cache_max_age=TRUST_SECONDS)


def cookie_secret() -> bytes:
    """Signs the OAuth state and token cookies: ``JUPYTERHUB_COOKIE_SECRET`` (hex) when set, else one per process
    (a restart of the pipeline then only sends the browser through the hub's OAuth again, without a question)."""
    value = os.environ.get("JUPYTERHUB_COOKIE_SECRET", "")
    return bytes.fromhex(value) if value else secrets.token_bytes(32)


class CookieCaller(HubOAuthenticated):
    """The caller of a page request: the hub user of the service's OAuth cookie, with the token's scopes.

    ``hub_auth`` is the process's :func:`page_hub_auth` (``HubOAuth.instance()``), as for the OAuth callback.
    """

    def check_xsrf_cookie(self) -> None:
        """Defined here so that HubOAuth puts its XSRF check on the page's handlers (and only there)."""

    async def prepare(self) -> None:
        model = self.current_user
        if not model:
            raise web.HTTPError(401, "sign in through the hub first: open /services/pipeline/teams/")
        self.caller = caller_from_model(model)
        self.require(MANAGE_TEAMS, "manage teams")  # type: ignore[attr-defined]


def _cookie(handler_class: type) -> type:
    return type(f"Page{handler_class.__name__}", (CookieCaller, handler_class), {})


SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Teams - mlopshub</title>
<link rel="stylesheet" href="/hub/static/css/style.min.css">
<link rel="stylesheet" href="{prefix}static/teams.css">
</head>
<body>
<nav class="navbar navbar-expand border-bottom mb-3 px-3">
  <a class="navbar-brand" href="/hub/home">mlopshub</a>
  <ul class="navbar-nav me-auto">
    <li class="nav-item"><a class="nav-link" href="/hub/home">Home</a></li>
    <li class="nav-item"><a class="nav-link active" aria-current="page" href="{prefix}teams/">Teams</a></li>
    <li class="nav-item"><a class="nav-link" href="/hub/admin">Admin</a></li>
  </ul>
  <span class="navbar-text">{user}</span>
</nav>
<main class="container-fluid">
<div id="mlopshub-teams" data-api="{prefix}teams/api/" data-user="{user}"></div>
</main>
<script src="{prefix}static/teams.js"></script>
</body>
</html>
"""


class TeamsPage(HubOAuthenticated, web.RequestHandler):
    """The page itself (its data comes from ``teams/api/``)."""

    def initialize(self, prefix: str) -> None:
        self.prefix = prefix

    @web.authenticated
    def get(self) -> None:
        caller = caller_from_model(self.current_user)
        if not caller.has(MANAGE_TEAMS):
            raise web.HTTPError(403, f"{caller.name} is not a platform admin (needs {MANAGE_TEAMS})")
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie (JupyterHub's, session-bound) the page's script sends back
        self.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        self.finish(SHELL.format(prefix=html.escape(self.prefix), user=html.escape(caller.name)))


def page_routes(prefix: str, args: dict[str, Any], admin: TeamAdmin) -> list[Any]:
    """The page, its static files, its cookie API and the OAuth callback, under ``prefix``."""
    page_hub_auth()  # the HubOAuth the handlers share, made before the first request
    base = prefix.rstrip("/")
    routes: list[Any] = [
        (rf"{base}/teams/?", TeamsPage, {"prefix": f"{base}/"}),
        (rf"{base}/oauth_callback", HubOAuthCallbackHandler),
        (rf"{base}/static/(teams\.js|teams\.css)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
    for pattern, handler, kwargs in team_routes(f"{base}/teams/api", args, admin):
        routes.append((pattern, _cookie(handler), kwargs))
    return routes
