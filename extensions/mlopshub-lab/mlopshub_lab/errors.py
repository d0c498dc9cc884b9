"""The errors a REST handler turns into a JSON answer, one class per HTTP status.

The operations (``data``, ``experiments``, ``models``, ``paths``) raise these and know nothing
of tornado's request cycle; the base handler writes ``{"message": ...}`` with the
status (and ``field`` when the error is about one). They subclass tornado's
``HTTPError`` so that an uncaught one still ends in the right status.
"""

from __future__ import annotations

from tornado.web import HTTPError


class ApiError(HTTPError):
    """An error whose message a person reads in the sidebar: it names the thing and the fix."""

    status = 500

    def __init__(self, message: str, status: int | None = None, field: str | None = None) -> None:
        # The message goes in ``args`` with a "%s" format: tornado logs ``log_message % args``,
        # and DVC's or git's own text may contain a "%".
        super().__init__(status or self.status, "%s", message)
        self.message = message
        #: The request field the error is about, when there is one (answered as ``field``).
        self.field = field

    def __str__(self) -> str:
        return self.message


class BadRequest(ApiError):
    """A parameter is missing or wrong (400)."""

    status = 400


class NotFound(ApiError):
    """The folder, dataset, version, run or experiment does not exist (404)."""

    status = 404


class InvalidField(ApiError):
    """A field of a request body is missing or wrong (422, naming the field, as the release pipeline does)."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class Busy(ApiError):
    """Another long operation is running in the same project (409)."""

    status = 409


class CommandFailed(ApiError):
    """git or DVC failed; the message carries their own text (500)."""

    status = 500


class MlflowUnavailable(ApiError):
    """MLflow is unreachable, not configured or answered with a server error (502)."""

    status = 502


class PipelineUnavailable(ApiError):
    """The release pipeline (or the hub) is unreachable, not configured or failed (502)."""

    status = 502
