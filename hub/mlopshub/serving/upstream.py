"""Kept-alive connections from the service to its model servers (an aiohttp connection pool).

Tornado's own HTTP client opens a new connection per request, which cost a
quarter of the throughput of the scoring server behind it
(``bench/pipeline_bench.py``). A kept-alive connection the server has
closed fails fast (``None``), and the proxy sends the request again.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

#: Seconds one forwarded request may take (MLflow's scoring server has its own, shorter, timeout).
REQUEST_TIMEOUT = 120.0
#: Connections kept open to model servers, over all servers.
POOL_SIZE = 128


@dataclass(frozen=True)
class Answer:
    """A model server's answer, read whole."""

    code: int
    reason: str
    content_type: str
    body: bytes


class Upstream:
    """The pool of kept-alive connections to the model servers (created on first use, on the running loop)."""

    def __init__(self, pool_size: int = POOL_SIZE):
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30)
            # No proxies from the environment, no cookies: this talks to local processes only.
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def fetch(self, url: str, method: str, headers: dict[str, str], body: bytes | None) -> Answer | None:
        """The server's answer, or None when it could not be reached (try again)."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, connect=5)
        try:
            async with self.session().request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                payload = await response.read()
                return Answer(
                    response.status,
                    response.reason or "",
                    response.headers.get("Content-Type", "application/json"),
                    payload,
                )
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
