"""configurable-http-proxy run by the platform (one machine), not by the hub.

The supervisor runs the proxy as a part of its own (:func:`command`), so a hub that crashes or restarts
takes neither the proxy nor its routes with it: workspaces and model endpoints keep answering while the
hub is away. The hub talks to the proxy through :class:`SupervisedProxy`, which does not start it and,
because JupyterHub checks the routes of a proxy it did not start only when it starts itself, puts them back
when the proxy was restarted (its route table then lacks the hub's own route).
"""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Integer

from .settings import checkout_root

#: Seconds between checks that the proxy still has its routes.
CHECK_ROUTES_EVERY = 2


def executable() -> str:
    """configurable-http-proxy from the repo's node_modules (``make up`` installs it), else from PATH."""
    checkout = checkout_root()
    local = checkout / "node_modules" / ".bin" / "configurable-http-proxy" if checkout else None
    return str(local) if local and local.exists() else "configurable-http-proxy"


def command(ip: str, port: int, api_port: int, hub_port: int) -> list[str]:
    """The proxy's command line, as JupyterHub would have built it (``ConfigurableHTTPProxy.start``)."""
    return [
        executable(),
        "--ip",
        ip,
        "--port",
        str(port),
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        str(api_port),
        "--error-target",
        f"http://127.0.0.1:{hub_port}/hub/error",
        "--log-level",
        "info",
    ]


class SupervisedProxy(ConfigurableHTTPProxy):
    """The hub's view of a proxy that the supervisor runs (see the module's docstring)."""

    should_start = Bool(False, config=True, help="The supervisor starts the proxy, not the hub.")
    check_routes_interval = Integer(
        CHECK_ROUTES_EVERY, config=True, help="Seconds between checks that the proxy still has the hub's route."
    )

    _routes_check: PeriodicCallback | None = None

    async def check_routes(self, user_dict: Any, service_dict: Any, routes: dict | None = None) -> None:
        await super().check_routes(user_dict, service_dict, routes)
        # The hub checks the routes once it knows its users and services (at its start): watch from then on.
        if self._routes_check is None:
            self._routes_check = PeriodicCallback(self.restore_if_lost, 1e3 * self.check_routes_interval)
            self._routes_check.start()

    async def restore_if_lost(self) -> None:
        """Put every route back when the proxy has lost them (it was restarted with an empty table)."""
        try:
            routes = await self.get_all_routes()
        except Exception as error:  # the proxy is restarting: the next check will see
            self.log.warning("cannot read the proxy's routes: %s", error)
            return
        if self.app.hub.routespec in routes:
            return
        self.log.warning("the proxy has lost its routes (it was restarted): adding them back")
        await self.check_routes(self.app.users, self.app._service_map, routes)
