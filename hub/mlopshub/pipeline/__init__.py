"""The release pipeline's core: releases, their gates and the audit log, with no server in it.

* :mod:`.release`: the release state machine kept in SQLite, publish-request validation,
  the restart rule;
* :mod:`.gates`: the checks a model version must pass before staging;
* :mod:`.audit`: the append-only, hash-chained audit log;
* :mod:`.errors`: the errors, each with the HTTP status the service answers with.

The pipeline service (``mlopshub.services``) does the work (MLflow registry,
endpoints) and records each step here.
"""

from .audit import AuditEntry, AuditLog
from .errors import Conflict, InvalidRequest, InvalidTransition, NotAllowed, PipelineError, ReleaseNotFound
from .release import PublishRequest, Recovery, Release, ReleaseStore, State, validate_publish

__all__ = [
    "AuditEntry",
    "AuditLog",
    "Conflict",
    "InvalidRequest",
    "InvalidTransition",
    "NotAllowed",
    "PipelineError",
    "PublishRequest",
    "Recovery",
    "Release",
    "ReleaseNotFound",
    "ReleaseStore",
    "State",
    "validate_publish",
]
