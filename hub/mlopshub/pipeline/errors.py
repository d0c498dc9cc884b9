"""The pipeline's errors, each with the HTTP status the pipeline service answers with.

Messages are shown to people (in the sidebar and API answers), so each names
the thing, what is wrong, and what to do about it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors below; ``http_status`` is what the REST API answers with."""

    http_status = 500


class InvalidRequest(PipelineError, ValueError):
    """A publish (or approve/reject) request with a missing or ill-typed field: answered 422 naming the field."""

    http_status = 422

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NotAllowed(PipelineError, PermissionError):
    """The caller may not do this (four-eyes, another team's model): answered 403."""

    http_status = 403


class ReleaseNotFound(PipelineError, LookupError):
    """No release with this id: answered 404."""

    http_status = 404

    def __init__(self, release_id: str):
        self.release_id = release_id
        super().__init__(f"no release '{release_id}'; list releases with GET /services/pipeline/api/releases")


class InvalidTransition(PipelineError):
    """The release is not in a state where this step may happen: answered 409 with its current state."""

    http_status = 409

    def __init__(self, release_id: str, state: str, action: str, allowed: tuple[str, ...] | list[str]):
        self.release_id = release_id
        self.state = state
        self.action = action
        self.allowed = tuple(allowed)
        needed = " or ".join(f"'{s}'" for s in self.allowed)
        super().__init__(f"release '{release_id}' is '{state}'; {action} needs it to be {needed}")


class Conflict(PipelineError):
    """Another release is in the way (one in flight for the model, nothing to roll back to): answered 409."""

    http_status = 409
