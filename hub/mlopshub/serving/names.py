"""Names of the Kubernetes objects that serve a model: valid for their kind, stable, one per (model, stage).

A registered model's name (``mlopshub.pipeline.release.MODEL_NAME``: up to 63
letters, digits, ``_``, ``.`` or ``-``) is often not a valid Kubernetes name,
and each kind of object has its own limit:

===============  ===============================  ====================================================
kind             name                             limit
===============  ===============================  ====================================================
InferenceService ``<model>-<stage>``              KServe's ``[a-z]([-a-z0-9]*[a-z0-9])?``, and short
                                                  enough for KServe's host label
                                                  ``<name>-predictor-<namespace>`` (63): 37 characters
                                                  in ``mlopshub-models``
CronJob          ``<model>-batch``                52 (the Jobs it creates add 11 characters to it)
Job              ``<model>-v<version>-<stage>``   63 (its pods carry it in the ``job-name`` label)
===============  ===============================  ====================================================

One rule (:func:`object_name`) makes all of them. A model whose name is
already lower case, starts with a letter and has no ``_``, ``.`` or ``--``
keeps it as is when it fits (``credit-default-production``). Any other name
is lower-cased, its other characters turned into ``-``, prefixed with ``m-``
when it would start with a digit, cut to fit, and followed by ``--`` and a
hash of the exact model name (``m-2024-credit--<hash>-production``). The
``--`` cannot occur in a name kept as is, and the hash tells apart the names
that read the same (``Credit_Default``, ``credit.default``), so no two models
share an object, and a model's names never change.
"""

from __future__ import annotations

import base64
import hashlib
import re

#: Names kept as they are (when they fit): lower case, a letter first, single ``-`` between letters and digits.
VERBATIM = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
#: What an InferenceService's name must match (KServe's validating webhook).
KSERVE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
#: Characters of the hash that makes a changed or shortened name unique (base32: 5 bits each, 65 bits).
HASH_LENGTH = 13
#: A DNS label: the limit of a label value, a Job's name and each part of a host name.
DNS_LABEL_LENGTH = 63
#: A CronJob's name: its Jobs are named ``<cronjob>-<minutes since 1970>``, which must stay within 63.
CRONJOB_NAME_LENGTH = 52
#: What KServe adds to an InferenceService's name in its predictor's host label (``<name>-predictor-<namespace>``).
PREDICTOR_HOST_PARTS = len("-predictor-")


def _digest(model: str) -> str:
    raw = hashlib.sha256(model.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:HASH_LENGTH]


def object_name(model: str, suffix: str, max_length: int) -> str:
    """The name of ``model``'s object ``<model>-<suffix>``, at most ``max_length`` characters (see the module).

    ValueError when ``suffix`` is not lower-case letters and digits joined by
    ``-``, or leaves no room for the model's part.
    """
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", suffix):
        raise ValueError(f"name suffix '{suffix}': expected lower-case letters and digits joined by '-'")
    if not model:
        raise ValueError("model name: empty; a registered model has a name")
    name = f"{model}-{suffix}"
    if VERBATIM.fullmatch(model) and len(name) <= max_length:
        return name
    room = max_length - len(suffix) - HASH_LENGTH - len("---")
    if room < 1:
        raise ValueError(
            f"a name of at most {max_length} characters has no room for model '{model}' before '-{suffix}'"
        )
    base = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}"
    base = base[:room].rstrip("-")
    return f"{base}--{_digest(model)}-{suffix}"


def inference_service_name(model: str, stage: str, namespace: str) -> str:
    """The InferenceService serving ``model`` at ``stage`` in ``namespace``."""
    limit = DNS_LABEL_LENGTH - PREDICTOR_HOST_PARTS - len(namespace)
    try:
        return object_name(model, stage, limit)
    except ValueError:
        raise ValueError(
            f"namespace '{namespace}' ({len(namespace)} characters) leaves {limit} characters for InferenceService "
            f"names in KServe's host label '<name>-predictor-{namespace}' (63 at most); choose a shorter namespace"
        ) from None


def cronjob_name(model: str) -> str:
    """The CronJob scoring ``model`` on its schedule in production."""
    return object_name(model, "batch", CRONJOB_NAME_LENGTH)


def job_name(model: str, version: str, stage: str) -> str:
    """The one-off Job scoring ``model`` version ``version`` at ``stage``."""
    return object_name(model, f"v{version}-{stage}", DNS_LABEL_LENGTH)
