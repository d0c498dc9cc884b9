"""Who is calling the pipeline, and what their hub token lets them do.

The service trusts only hub tokens: :func:`hub_authenticator` asks the hub
about each token with :class:`jupyterhub.services.auth.HubAuth` (cached for
its ``cache_max_age``) and requires the service's access scope. Scope checks
use JupyterHub's own ``check_scopes``, so filters such as
``custom:mlopshub:publish!group=sme-credit`` mean what they mean in the hub.

The authenticator is a plain callable, ``token -> Caller | None``, handed to
the app: tests give it a HubAuth pointed at a small token endpoint instead of
a hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field

from jupyterhub.services.auth import HubAuth, check_scopes

PUBLISH = "custom:mlopshub:publish"
APPROVE = "custom:mlopshub:approve"
READ_RELEASES = "custom:mlopshub:read-releases"


@dataclass(frozen=True)
class Caller:
    """A hub user or service, with the scopes of the token they called with."""

    name: str
    kind: str = "user"
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = field(default_factory=frozenset)

    def has(self, scope: str) -> bool:
        """Whether the token carries ``scope`` (a broader, unfiltered grant counts)."""
        return bool(check_scopes({scope}, set(self.scopes)))

    def publish_teams(self, teams: Iterable[str]) -> frozenset[str]:
        """Of ``teams``, those whose models this caller may publish (``custom:mlopshub:publish!group=<team>``)."""
        return frozenset(team for team in teams if self.has(f"{PUBLISH}!group={team}"))

    def may_read(self, team: str) -> bool:
        """Whether the caller may read the releases of ``team``: model risk reads all, members their team's."""
        return self.has(READ_RELEASES) or self.has(f"{PUBLISH}!group={team}")


#: ``authenticate(token)``: the caller, or None when the token is not accepted.
Authenticate = Callable[[str], Awaitable[Caller | None]]


def caller_from_model(model: dict) -> Caller:
    """A :class:`Caller` from the hub's answer to ``GET /hub/api/user``."""
    return Caller(
        name=str(model["name"]),
        kind=str(model.get("kind", "user")),
        groups=frozenset(model.get("groups") or ()),
        scopes=frozenset(model.get("scopes") or ()),
    )


def hub_authenticator(hub_auth: HubAuth, access_scopes: Collection[str] | None = None) -> Authenticate:
    """An :data:`Authenticate` that asks the hub (``HubAuth.user_for_token``).

    A token must carry one of ``access_scopes`` (by default HubAuth's own,
    ``access:services!service=<this service>``); others are not accepted.
    """
    required = set(access_scopes if access_scopes is not None else hub_auth.access_scopes)

    async def authenticate(token: str) -> Caller | None:
        model = await hub_auth.user_for_token(token, sync=False)
        if not model:
            return None
        if required and not hub_auth.check_scopes(required, model):
            return None
        return caller_from_model(model)

    return authenticate
