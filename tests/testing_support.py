"""Small helpers several test modules share: an event loop in a thread, a wait for an event, KServe's schema checked
strictly."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

#: Artifacts of the projects we interoperate with (the chart's values schema, KServe's CRD schema).
PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
KSERVE_SCHEMA_FILE = PEERS / "kserve" / "inferenceservice-v1beta1.schema.json"


class Loop:
    """An event loop in a thread, so tests call the async API and plain ``requests`` side by side."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def strict(schema: Any) -> Any:
    """The structural schema with unknown fields refused, as `kubectl --validate=strict` does."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def kserve_errors(document: dict) -> list[str]:
    """What KServe's published InferenceService schema (strict) says is wrong with ``document``."""
    import jsonschema

    validator = jsonschema.Draft7Validator(strict(json.loads(KSERVE_SCHEMA_FILE.read_text())))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


T = TypeVar("T")


def until(condition: Callable[[], T], what: str, timeout: float = 120, every: float = 0.5) -> T:
    """Wait for ``condition()`` to be truthy and return it; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what} (last: {value!r})")
        time.sleep(every)
