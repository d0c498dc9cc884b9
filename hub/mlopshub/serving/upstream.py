"""Kept-alive connections from the service to its model servers (aiohttp connection pools).

Tornado's own HTTP client opens a new connection per request, which cost a
quarter of the throughput of the scoring server behind it
(``bench/pipeline_bench.py``). A kept-alive connection the server has
closed fails fast (``None``), and the proxy sends the request again.

Local model servers listen on Unix sockets, named by ``http+unix://`` URLs
(:func:`unix_url`, the socket's path percent-encoded as the host, as
``requests-unixsocket`` spells them); each socket gets a pool of its own
(:class:`aiohttp.UnixConnector`). Any other URL (a KServe predictor) goes
through one shared TCP pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import aiohttp

#: Seconds one forwarded request may take (MLflow's scoring server has its own, shorter, timeout).
REQUEST_TIMEOUT = 120.0
#: Connections kept open per model server's socket (and over all TCP predictors).
POOL_SIZE = 128
#: Scheme of a URL whose host is a Unix socket's percent-encoded path.
UNIX_SCHEME = "http+unix://"


@dataclass(frozen=True)
class Answer:
    """A model server's answer, read whole."""

    code: int
    reason: str
    content_type: str
    body: bytes


def unix_url(socket_path: str | Path) -> str:
    """The base URL of an HTTP server on the Unix socket ``socket_path``: ``http+unix://%2Frun%2F...``."""
    return UNIX_SCHEME + quote(str(socket_path), safe="")


def split_unix_url(url: str) -> tuple[str | None, str]:
    """``(socket path, http URL to send)`` for a :func:`unix_url` URL; ``(None, url)`` for any other."""
    if not url.startswith(UNIX_SCHEME):
        return None, url
    host, slash, path = url[len(UNIX_SCHEME) :].partition("/")
    return unquote(host), f"http://localhost{slash}{path}"


class Upstream:
    """The pools of kept-alive connections to the model servers (created on first use, on the running loop)."""

    def __init__(self, pool_size: int = POOL_SIZE):
        self.pool_size = pool_size
        #: socket path (None: TCP) -> its session.
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    def session(self, socket_path: str | None = None) -> aiohttp.ClientSession:
        """The session whose connections go to ``socket_path`` (None: over TCP)."""
        session = self._sessions.get(socket_path)
        if session is None or session.closed:
            connector: aiohttp.BaseConnector
            if socket_path is None:
                connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30)
            else:
                connector = aiohttp.UnixConnector(socket_path, limit=self.pool_size, keepalive_timeout=30)
            # No proxies from the environment, no cookies: this talks to local processes only.
            session = aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
            self._sessions[socket_path] = session
        return session

    async def fetch(self, url: str, method: str, headers: dict[str, str], body: bytes | None) -> Answer | None:
        """The server's answer, or None when it could not be reached (try again)."""
        socket_path, target = split_unix_url(url)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, connect=5)
        try:
            async with self.session(socket_path).request(
                method, target, data=body, headers=headers, timeout=timeout, allow_redirects=False
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

    async def forget(self, url: str) -> None:
        """Close the pool of the Unix socket in ``url`` (its server was stopped); nothing for a TCP URL."""
        socket_path, _ = split_unix_url(url)
        if socket_path is not None:
            session = self._sessions.pop(socket_path, None)
            if session is not None:
                await session.close()

    async def close(self) -> None:
        """Close every pool."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
