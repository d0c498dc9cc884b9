"""Bounded logging: no log line carries a request's data whole.

A request path, header or body is attacker-controlled and may be megabytes
long; written whole it fills ``<data dir>/logs`` and hides what came before.
:class:`BoundedRecords` cuts every unbroken run of text in a log record to
:data:`LIMIT` characters, saying how much it left out. It is installed as a
filter on the hub's log handler (traitlets' ``logging_config``), so it applies
to JupyterHub's own log, tornado's access and general logs and everything else
that reaches that handler. Services that log requests can install it too
(:func:`bound_handlers`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

#: Longest run of non-space characters kept in a log line (a URI is one such run).
LIMIT = 500

_LONG_RUN = re.compile(rf"\S{{{LIMIT + 1},}}")
FILTER_NAME = "mlopshub-bounded"


def bounded(message: str, limit: int = LIMIT) -> str:
    """``message`` with every run of non-space characters longer than ``limit`` cut, saying by how much."""
    if len(message) <= limit:
        return message
    return _LONG_RUN.sub(lambda run: f"{run[0][:limit]} …[{len(run[0]) - limit} more characters]", message)


class BoundedRecords(logging.Filter):
    """A logging filter that bounds each record's message (formatted with its arguments); it drops nothing.

    Arguments are bounded one by one first, so that formatters that read
    them (uvicorn's access log takes the request line from ``args``) still
    find them; a message still too long is then cut whole.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and len(a) > LIMIT for a in record.args):
            record.args = tuple(bounded(a) if isinstance(a, str) else a for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report, not ours
            return True
        if len(message) > LIMIT:
            cut = bounded(message)
            if cut != message:
                record.msg, record.args = cut, None
        return True


def logging_config(handlers: Iterable[str] = ("console",)) -> dict[str, Any]:
    """The part of a ``logging.config.dictConfig`` that puts :class:`BoundedRecords` on ``handlers``.

    traitlets merges it into an application's default logging configuration,
    whose one handler is ``console``.
    """
    return {
        "filters": {FILTER_NAME: {"()": f"{__name__}.BoundedRecords"}},
        "handlers": {name: {"filters": [FILTER_NAME]} for name in handlers},
    }


def bound_handlers(logger: logging.Logger | None = None) -> None:
    """Put :class:`BoundedRecords` on every handler of ``logger`` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, BoundedRecords) for f in handler.filters):
            handler.addFilter(BoundedRecords())


def apply_bounded_logging(c: Any) -> None:
    """Bound the hub's log lines: :func:`logging_config` merged into ``c.JupyterHub.logging_config``.

    What an admin's config already put there stays; only the filter is added to the ``console`` handler.
    """
    current = dict(c.JupyterHub.logging_config) if "logging_config" in c.JupyterHub else {}
    added = logging_config()
    filters = {**current.get("filters", {}), **added["filters"]}
    handlers = dict(current.get("handlers", {}))
    for name, handler in added["handlers"].items():
        merged = dict(handlers.get(name, {}))
        kept = list(merged.get("filters", []))
        merged["filters"] = kept + [f for f in handler["filters"] if f not in kept]
        handlers[name] = merged
    c.JupyterHub.logging_config = {**current, "filters": filters, "handlers": handlers}
