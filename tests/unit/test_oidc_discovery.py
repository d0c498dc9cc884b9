"""The hub's sign-in reads the provider's endpoints when first needed, and again until the provider answers.

The provider is oidc-provider-mock (a real OpenID Connect provider) in a thread, started on the port the hub was
configured with only after the hub asked it once.
"""

import asyncio
import socket

import pytest
from oidc_provider_mock import run_server_in_thread
from tornado import web

from mlopshub.oidc import DiscoveryError, OIDCAuthenticator, endpoints_from


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sign_in_is_unavailable_while_the_provider_is_down_and_works_once_it_is_back():
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    auth = OIDCAuthenticator(
        oidc_issuer=issuer, client_id="hub", client_secret="s", login_service="the bank's single sign-on"
    )

    async def scenario() -> web.HTTPError:
        with pytest.raises(DiscoveryError, match=f"{issuer}/.well-known/openid-configuration"):
            await auth.discover_endpoints()
        with pytest.raises(web.HTTPError) as refused:
            await auth.require_endpoints()
        assert "Sign-in is unavailable" in auth.get_custom_html("/hub/")
        assert auth.authorize_url == ""
        with run_server_in_thread(port=port):
            await auth.require_endpoints()
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers == {"Retry-After": "30"}
    assert refused.log_message % refused.args == (
        "Sign-in is unavailable for now: the bank's single sign-on does not answer. Try again in a few minutes."
    )
    assert auth.authorize_url == f"{issuer}/oauth2/authorize"
    assert auth.token_url == f"{issuer}/oauth2/token"
    assert auth.userdata_url == f"{issuer}/userinfo"
    assert auth.get_custom_html("/hub/") == "", "the login page is the plain sign-in button again"


def test_sign_ins_while_the_provider_hangs_share_one_request_and_give_up_after_the_timeout():
    # A provider that accepts connections and never answers (a black-holed address behind a load balancer).
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        issuer = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        auth = OIDCAuthenticator(oidc_issuer=issuer, client_id="hub", discovery_timeout=1)

        async def five_at_once() -> list:
            return await asyncio.gather(*(auth.discover_endpoints() for _ in range(5)), return_exceptions=True)

        outcomes = asyncio.run(asyncio.wait_for(five_at_once(), 10))
        assert all(isinstance(outcome, DiscoveryError) for outcome in outcomes), outcomes
        hanging.setblocking(False)
        connections = []
        while True:
            try:
                connections.append(hanging.accept()[0])
            except BlockingIOError:
                break
        for connection in connections:
            connection.close()
    assert len(connections) == 1, "one request to the provider for five sign-ins"


def test_a_discovery_document_without_the_sign_in_endpoints_is_named():
    url = "https://sso.bank.test/.well-known/openid-configuration"
    with pytest.raises(DiscoveryError, match=f"{url} has no token_endpoint, userinfo_endpoint"):
        endpoints_from(url, {"authorization_endpoint": "https://sso.bank.test/auth"})
    with pytest.raises(DiscoveryError, match="not a JSON object"):
        endpoints_from(url, ["authorization_endpoint"])
