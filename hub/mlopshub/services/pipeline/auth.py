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

import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from cachetools import TTLCache
from jupyterhub.services.auth import HubAuth, check_scopes
from tornado import web

from mlopshub.serving.proxy import Authorize, bounded
from mlopshub.settings import HUB_AWAY_GRACE, TRUST_SECONDS

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
        """Of ``teams``, those whose models this caller may publish: a member of the team's group, with a token
        that carries ``custom:mlopshub:publish`` (every user holds it; a token may be made with less, or
        with ``custom:mlopshub:publish!group=<team>`` for one team). See :mod:`mlopshub.access`."""
        return frozenset(team for team in teams if team in self.groups and self.has(f"{PUBLISH}!group={team}"))

    def may_read(self, team: str) -> bool:
        """Whether the caller may read the releases of ``team``: model risk reads all, members their team's."""
        return self.has(READ_RELEASES) or bool(self.publish_teams([team]))


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


async def groups_of(hub_auth: HubAuth, user: str) -> list[str]:
    """``user``'s groups, asked of the hub with the service's own token (``read:users:groups``)."""
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    url = f"{hub_auth.api_url.rstrip('/')}/users/{quote(user, safe='')}"
    try:
        response = await AsyncHTTPClient().fetch(
            url, headers={"Authorization": f"token {hub_auth.api_token}"}, request_timeout=10
        )
    except HTTPClientError as error:
        if error.code < 500:
            return []
        raise web.HTTPError(503, "the hub cannot tell this user's teams now (it is restarting); try again") from None
    except OSError:
        raise web.HTTPError(503, "the hub cannot tell this user's teams now (it is restarting); try again") from None
    return list(json.loads(response.body).get("groups") or [])


#: Tokens whose answers are kept at most (the oldest go first).
MAX_TOKENS = 10_000


def hub_authenticator(
    hub_auth: HubAuth,
    access_scopes: Collection[str] | None = None,
    *,
    trust_seconds: float = TRUST_SECONDS,
    hub_away_grace: float = HUB_AWAY_GRACE,
    timer: Callable[[], float] = time.monotonic,
) -> Authenticate:
    """An :data:`Authenticate` that asks the hub (``HubAuth.user_for_token``), at most once per ``trust_seconds``.

    A token must carry one of ``access_scopes`` (by default HubAuth's own,
    ``access:services!service=<this service>``); others are not accepted. The
    answer, a :class:`Caller` or None, is the same object for a token until
    it expires, so callers may key their own decisions on it. HubAuth's own
    cache is bypassed: one cache, one bound.

    When the hub cannot answer (HubAuth's 5xx: it is down or restarting), a
    token it accepted within ``hub_away_grace`` seconds is still accepted, as
    it was; any other gets a 503 that says the hub is away.
    """
    required = set(access_scopes if access_scopes is not None else hub_auth.access_scopes)
    answers: TTLCache[str, Caller | None] = TTLCache(maxsize=MAX_TOKENS, ttl=trust_seconds, timer=timer)
    accepted: TTLCache[str, Caller] = TTLCache(maxsize=MAX_TOKENS, ttl=hub_away_grace, timer=timer)

    async def authenticate(token: str) -> Caller | None:
        try:
            return answers[token]
        except KeyError:
            pass
        try:
            model = await hub_auth.user_for_token(token, use_cache=False, sync=False)
        except web.HTTPError as error:
            if error.status_code < 500:
                raise
            known = accepted.get(token)
            if known is None:
                raise web.HTTPError(503, "the hub cannot check this token now (it is restarting); try again") from None
            return known
        caller = None
        if model and (not required or hub_auth.check_scopes(required, model)):
            if model.get("kind", "user") == "user" and "groups" not in model:
                # A token made without read:users:groups: the user's teams are asked with the service's token.
                model = {**model, "groups": await groups_of(hub_auth, str(model["name"]))}
            caller = caller_from_model(model)
            accepted[token] = caller
        else:
            accepted.pop(token, None)
        answers[token] = caller
        return caller

    return authenticate


# --- requests: the token of a request, and who may call a model endpoint ---

AUTH_HEADER = ("token", "bearer")


def token_of(handler: web.RequestHandler) -> str | None:
    """The hub token of a request: ``Authorization: token <t>`` or ``Bearer <t>`` (never a cookie or URL)."""
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() in AUTH_HEADER and value.strip() else None


async def authenticated(handler: web.RequestHandler, authenticate: Authenticate) -> Caller:
    """The caller of ``handler``'s request; 401 without an accepted hub token."""
    token = token_of(handler)
    caller = await authenticate(token) if token else None
    if caller is None:
        handler.set_header("WWW-Authenticate", 'Bearer realm="mlopshub"')
        if token:
            # A token was sent: say why it is not enough, not that one is missing.
            parts = handler.request.path.split("/")
            service = f"the service '{parts[2]}'" if len(parts) > 2 and parts[1] == "services" else "this service"
            raise web.HTTPError(
                401,
                f"the hub token is not accepted here: it is unknown, revoked or expired, or grants no access to "
                f"{service}",
            )
        raise web.HTTPError(401, "a hub token is required: Authorization: Bearer <token> (from the hub's token page)")
    return caller


MODELS_ACCESS = "access:services!service=models"
#: Endpoint decisions kept at most (the oldest go first).
MAX_DECISIONS = 10_000


def endpoint_authorizer(
    owner: Callable[[str], str],
    authenticate: Authenticate,
    consumers: Mapping[str, Collection[str]] | None = None,
    *,
    timer: Callable[[], float] = time.monotonic,
) -> Authorize:
    """Who may call a model endpoint: model risk and the model's team (both stages), consumer systems (production).

    ``owner(model)`` is the model's team ("" when unknown: then a signed-in caller gets the 404 of a missing
    endpoint). A consumer system
    is a hub service whose token carries ``access:services!service=models``
    and which the catalog grants the model (``consumers``: service name ->
    model names). A user of another team is refused even with that scope
    (every user has it, for their own team's models).
    """
    granted = {name: frozenset(models) for name, models in (consumers or {}).items()}
    # (token, model, stage) -> the Caller a yes was given to. A scoring client sends many requests with one token;
    # ``authenticate`` returns the same Caller for a token while it trusts the hub's answer (TRUST_SECONDS), so a
    # yes is reused only while the answer it rests on is: it never outlives a revocation by more than that.
    allowed: TTLCache[tuple[str, str, str], Caller] = TTLCache(maxsize=MAX_DECISIONS, ttl=TRUST_SECONDS, timer=timer)

    async def authorize(handler: web.RequestHandler, model: str, stage: str) -> None:
        caller = await authenticated(handler, authenticate)
        key = (token_of(handler) or "", model, stage)
        if allowed.get(key) is caller:
            return
        team = owner(model)
        if not team:
            # Nothing of that name was ever served: say so, as for any endpoint that is not there.
            missing = f"model {bounded(model)!r} has no {stage} endpoint; publish it or check the release"
            raise web.HTTPError(404, missing)
        if caller.may_read(team) or (
            stage == "production"
            and caller.kind == "service"
            and caller.has(MODELS_ACCESS)
            and model in granted.get(caller.name, ())
        ):
            allowed[key] = caller
            return
        raise web.HTTPError(403, f"{caller.name} may not call the {stage} endpoint of {model}")

    return authorize
