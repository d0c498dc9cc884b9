"""Sign-in with the bank's OpenID Connect provider (GenericOAuthenticator).

The groups claim becomes JupyterHub groups (``manage_groups``), kept to the
catalog's teams and role groups so the directory's other groups don't flood
the hub. Members of the admin groups are hub admins. Only members of a known
group may sign in; a user whose IdP sends no groups claim at all is signed in
with no team and told to ask for access. Tokens refresh before each spawn
and every ``auth_refresh_age`` seconds.
"""

from __future__ import annotations

from typing import Any

import requests
from oauthenticator.generic import GenericOAuthenticator
from traitlets import Set, Unicode

from . import catalog
from .auth import sign_out_handlers
from .settings import Settings


class DiscoveryError(RuntimeError):
    """The OIDC discovery document could not be read."""


def discover(issuer: str, timeout: float = 10) -> dict[str, Any]:
    """The provider's endpoints from ``<issuer>/.well-known/openid-configuration``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        raise DiscoveryError(f"cannot read the OIDC discovery document at {url}: {error}") from None
    missing = [key for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint") if key not in document]
    if missing:
        raise DiscoveryError(f"the OIDC discovery document at {url} has no {', '.join(missing)}")
    return document


class OIDCAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator with groups kept to the catalog's and a missing groups claim handled."""

    groups_claim = Unicode("groups", help="The userinfo claim that lists the user's groups.").tag(config=True)
    known_groups = Set(
        Unicode(), help="Groups the hub manages (the catalog's teams and role groups); others are ignored."
    ).tag(config=True)

    def _claimed_groups(self, auth_state: dict[str, Any]) -> list[str] | None:
        user = auth_state.get(self.user_auth_state_key) or {}
        groups = user.get(self.groups_claim)
        return list(groups) if isinstance(groups, list) else None

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        claimed = self._claimed_groups(auth_state)
        if claimed is None:
            return set()
        return {group for group in claimed if group in self.known_groups}

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [*sign_out_handlers(), *super().get_handlers(app)]

    async def check_allowed(self, username: str, auth_model: dict[str, Any]) -> bool:
        if auth_model and self._claimed_groups(auth_model.get("auth_state") or {}) is None:
            self.log.warning("The IdP sent no %r claim for %s: signed in with no team", self.groups_claim, username)
            return True
        return await super().check_allowed(username, auth_model)


def apply_oidc(settings: Settings, cat: catalog.Catalog, c: Any) -> None:
    """Sign-in through the OIDC provider at ``settings.oidc_issuer`` (endpoints from its discovery document)."""
    endpoints = discover(settings.oidc_issuer)
    known = set(cat.teams) | set(cat.role_groups)
    c.JupyterHub.authenticator_class = "mlopshub.oidc.OIDCAuthenticator"
    c.OIDCAuthenticator.client_id = settings.oidc_client_id
    c.OIDCAuthenticator.client_secret = settings.oidc_client_secret
    c.OIDCAuthenticator.oauth_callback_url = f"{settings.public_url}/hub/oauth_callback"
    c.OIDCAuthenticator.authorize_url = endpoints["authorization_endpoint"]
    c.OIDCAuthenticator.token_url = endpoints["token_endpoint"]
    c.OIDCAuthenticator.userdata_url = endpoints["userinfo_endpoint"]
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
