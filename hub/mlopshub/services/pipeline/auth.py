"""Who is calling the pipeline, and what their hub token lets them do.

The service trusts only hub tokens: :func:`hub_authenticator` asks the hub
about each token with :class:`jupyterhub.services.auth.HubAuth` and keeps the
answer for :data:`mlopshub.settings.TRUST_SECONDS` (the revocation bound), and
requires the service's access scope. Scope checks
use JupyterHub's own ``check_scopes``, so filters such as
``custom:mlopshub:publish!group=sme-credit`` mean what they mean in the hub.

The authenticator is a plain callable, ``token -> Caller | None``, handed to
the app: tests give it a HubAuth pointed at a small token endpoint instead of
a hub.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field

from cachetools import TTLCache
from jupyterhub.services.auth import HubAuth, check_scopes

from mlopshub.settings import TRUST_SECONDS

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


#: Tokens whose answers are kept at most (the oldest go first).
MAX_TOKENS = 10_000


def hub_authenticator(
    hub_auth: HubAuth,
    access_scopes: Collection[str] | None = None,
    *,
    trust_seconds: float = TRUST_SECONDS,
    timer: Callable[[], float] = time.monotonic,
) -> Authenticate:
    """An :data:`Authenticate` that asks the hub (``HubAuth.user_for_token``), at most once per ``trust_seconds``.

    A token must carry one of ``access_scopes`` (by default HubAuth's own,
    ``access:services!service=<this service>``); others are not accepted. The
    answer, a :class:`Caller` or None, is the same object for a token until
    it expires, so callers may key their own decisions on it. HubAuth's own
    cache is bypassed: one cache, one bound.
    """
    required = set(access_scopes if access_scopes is not None else hub_auth.access_scopes)
    answers: TTLCache[str, Caller | None] = TTLCache(maxsize=MAX_TOKENS, ttl=trust_seconds, timer=timer)

    async def authenticate(token: str) -> Caller | None:
        try:
            return answers[token]
        except KeyError:
            pass
        model = await hub_auth.user_for_token(token, use_cache=False, sync=False)
        caller = None
        if model and (not required or hub_auth.check_scopes(required, model)):
            caller = caller_from_model(model)
        answers[token] = caller
        return caller

    return authenticate
