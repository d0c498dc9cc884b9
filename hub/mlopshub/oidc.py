"""Sign-in with the bank's OpenID Connect provider (GenericOAuthenticator).

The groups claim becomes JupyterHub groups (``manage_groups``), kept to the
catalog's teams and role groups so the directory's other groups don't flood
the hub. Members of the admin groups are hub admins. Only members of a known
group may sign in; a user whose IdP sends no groups claim at all is signed in
with no team and told to ask for access. Tokens refresh before each spawn
and every ``auth_refresh_age`` seconds.

The provider's endpoints come from its discovery document
(``<issuer>/.well-known/openid-configuration``), read when they are first
needed, not when the hub starts: the hub starts and serves its login page
while the single sign-on is down. The login page then says that sign-in is
unavailable, a sign-in attempt answers 503 with the same words, and each
attempt (and each view of the login page) asks the provider again, so
sign-in works as soon as it is back. Concurrent attempts share one request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlparse

from jupyterhub.handlers.login import LoginHandler
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Float, Set, Unicode

from . import catalog
from .auth import sign_out_handlers
from .settings import Settings

#: The endpoints a sign-in needs from the discovery document, and the trait each one sets.
ENDPOINTS = {
    "authorization_endpoint": "authorize_url",
    "token_endpoint": "token_url",
    "userinfo_endpoint": "userdata_url",
}
#: Seconds a browser is told to wait before trying again while the provider does not answer.
RETRY_AFTER = 30


class DiscoveryError(RuntimeError):
    """The OIDC discovery document could not be read."""


def discovery_url(issuer: str) -> str:
    """Where ``issuer`` publishes its discovery document."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def endpoints_from(url: str, document: Any) -> dict[str, str]:
    """The sign-in endpoints of the discovery document read from ``url``; DiscoveryError when some are missing."""
    if not isinstance(document, dict):
        raise DiscoveryError(f"the OIDC discovery document at {url} is not a JSON object")
    missing = [key for key in ENDPOINTS if not isinstance(document.get(key), str) or not document[key]]
    if missing:
        raise DiscoveryError(f"the OIDC discovery document at {url} has no {', '.join(missing)}")
    return {key: document[key] for key in ENDPOINTS}


def unavailable(login_service: str) -> web.HTTPError:
    """The answer to a sign-in while the provider's endpoints cannot be read: 503, saying so, with Retry-After."""
    message = f"Sign-in is unavailable for now: {login_service} does not answer. Try again in a few minutes."
    error = web.HTTPError(503, "%s", message)
    error.headers = {"Retry-After": str(RETRY_AFTER)}  # type: ignore[attr-defined]  # JupyterHub sends these
    return error


#: The login page's body while the provider does not answer (a Jinja template JupyterHub renders; the button retries).
UNAVAILABLE_HTML = """
<div class="service-login">
  <p id="mlopshub-sign-in-unavailable" class="alert alert-warning" role="alert">
    Sign-in is unavailable for now: {{ authenticator.login_service }} does not answer.
    Try again in a few minutes.
  </p>
  <a role="button" class="btn btn-jupyter btn-lg" href="{{ authenticator_login_url | safe }}">Sign in with
    {{ authenticator.login_service }}</a>
</div>
"""


class OIDCLoginPageHandler(LoginHandler):
    """``/hub/login``: asks the provider for its endpoints first, so the page can say when sign-in is unavailable."""

    async def get(self) -> None:
        try:
            await self.authenticator.discover_endpoints()
        except DiscoveryError:
            pass  # the page says so (OIDCAuthenticator.get_custom_html); the hub itself works
        await super().get()


class OIDCLoginHandler(OAuthLoginHandler):
    """``/hub/oauth_login``: the redirect to the provider, once its endpoints are known; 503 while it is down."""

    async def get(self) -> None:  # type: ignore[override]
        await self.authenticator.require_endpoints()
        super().get()


class OIDCAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator with the provider's endpoints read when first needed (see the module), groups kept to
    the catalog's and a missing groups claim handled."""

    groups_claim = Unicode("groups", help="The userinfo claim that lists the user's groups.").tag(config=True)
    known_groups = Set(
        Unicode(), help="Groups the hub manages (the catalog's teams and role groups); others are ignored."
    ).tag(config=True)
    oidc_issuer = Unicode(
        "",
        help="""The provider's issuer URL. Its discovery document gives ``authorize_url``, ``token_url`` and
        ``userdata_url`` (those not set explicitly), read at the first sign-in or view of the login page and
        again at each one until it answers. Empty: the three URLs are set explicitly.""",
    ).tag(config=True)
    discovery_timeout = Float(
        5, help="Seconds to wait for the discovery document before saying that sign-in is unavailable."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._discovered = not self.oidc_issuer
        self._discovery_error: str | None = None
        self._attempt: asyncio.Future[None] | None = None

    async def discover_endpoints(self) -> None:
        """Read the provider's endpoints unless known; DiscoveryError when it does not answer.

        Callers that come while a request is under way wait for that one.
        """
        if self._discovered:
            return
        if self._attempt is None:
            self._attempt = asyncio.ensure_future(self._discover())
            self._attempt.add_done_callback(self._attempt_done)
        await asyncio.shield(self._attempt)

    def _attempt_done(self, attempt: asyncio.Future[None]) -> None:
        self._attempt = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved here too: a failure with no one left waiting is not an asyncio warning

    async def _discover(self) -> None:
        url = discovery_url(self.oidc_issuer)
        try:
            endpoints = endpoints_from(url, await self._discovery_document(url))
        except DiscoveryError as error:
            self._discovery_error = str(error)
            self.log.warning("Sign-in is unavailable: %s", error)
            raise
        for key, trait in ENDPOINTS.items():
            if not getattr(self, trait):  # set explicitly: kept
                setattr(self, trait, endpoints[key])
        self._discovered, self._discovery_error = True, None
        self.log.info("OIDC endpoints read from %s", url)

    async def _discovery_document(self, url: str) -> Any:
        try:
            response = await self.httpfetch(
                url,
                label="fetching the OIDC discovery document",
                parse_json=False,
                connect_timeout=self.discovery_timeout,
                request_timeout=self.discovery_timeout,
            )
            return json.loads(response.body)
        except (HTTPClientError, OSError, ValueError) as error:
            raise DiscoveryError(f"cannot read the OIDC discovery document at {url}: {error}") from None

    async def require_endpoints(self) -> None:
        """The provider's endpoints, or the 503 a browser or client is answered while it does not answer."""
        try:
            await self.discover_endpoints()
        except DiscoveryError:
            raise unavailable(self.login_service) from None

    def get_custom_html(self, base_url: str) -> str:
        if self._discovery_error is not None and not self._discovered:
            return UNAVAILABLE_HTML
        return super().get_custom_html(base_url)

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> Any:
        # The callback of a sign-in started before a hub restart: the endpoints may not be known yet.
        await self.require_endpoints()
        return await super().authenticate(handler, data, **kwargs)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        await self.require_endpoints()
        return await super().refresh_user(user, handler, **kwargs)

    def _claimed_groups(self, auth_state: dict[str, Any]) -> list[str] | None:
        user = auth_state.get(self.user_auth_state_key) or {}
        groups = user.get(self.groups_claim)
        return list(groups) if isinstance(groups, list) else None

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        claimed = self._claimed_groups(auth_state)
        if claimed is None:
            return set()
        return {group for group in claimed if group in self.known_groups}

    login_handler = OIDCLoginHandler

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [*sign_out_handlers(), (r"/login", OIDCLoginPageHandler), *super().get_handlers(app)]

    async def check_allowed(self, username: str, auth_model: dict[str, Any]) -> bool:
        if auth_model and self._claimed_groups(auth_model.get("auth_state") or {}) is None:
            self.log.warning("The IdP sent no %r claim for %s: signed in with no team", self.groups_claim, username)
            return True
        return await super().check_allowed(username, auth_model)


def apply_oidc(settings: Settings, cat: catalog.Catalog, c: Any) -> None:
    """Sign-in through the OIDC provider at ``settings.oidc_issuer`` (endpoints read at the first sign-in)."""
    issuer = urlparse(settings.oidc_issuer)
    if issuer.scheme not in ("http", "https") or not issuer.netloc:
        raise ValueError(
            f"MLOPSHUB_OIDC_ISSUER '{settings.oidc_issuer}': expected the provider's issuer URL "
            "(https://sso.bank.example/realms/staff, where /.well-known/openid-configuration is)"
        )
    known = set(cat.teams) | set(cat.role_groups)
    c.JupyterHub.authenticator_class = "mlopshub.oidc.OIDCAuthenticator"
    c.OIDCAuthenticator.client_id = settings.oidc_client_id
    c.OIDCAuthenticator.client_secret = settings.oidc_client_secret
    c.OIDCAuthenticator.oauth_callback_url = f"{settings.public_url}/hub/oauth_callback"
    c.OIDCAuthenticator.oidc_issuer = settings.oidc_issuer
    c.OIDCAuthenticator.scope = ["openid", "profile", "email"]
    c.OIDCAuthenticator.username_claim = settings.oidc_username_claim
    c.OIDCAuthenticator.login_service = "the bank's single sign-on"
    c.OIDCAuthenticator.groups_claim = settings.oidc_groups_claim
    c.OIDCAuthenticator.known_groups = known
    c.OIDCAuthenticator.manage_groups = True
    c.OIDCAuthenticator.allowed_groups = known
    c.OIDCAuthenticator.admin_groups = set(settings.oidc_admin_groups)
    c.OIDCAuthenticator.allow_all = False
    c.OIDCAuthenticator.enable_auth_state = True
    c.OIDCAuthenticator.refresh_pre_spawn = True
    c.OIDCAuthenticator.auth_refresh_age = 300
