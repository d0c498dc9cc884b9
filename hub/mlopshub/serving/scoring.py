"""One model server process: MLflow's own scoring app, run by uvicorn on a socket its parent opened.

``python -m mlopshub.serving.scoring --fd <n> --model-path <dir> [--digest sha256:<hex>]``

Why not ``mlflow models serve``: that command is a Python process that
imports MLflow, downloads the model, then starts ``uvicorn ...scoring_server.app:app``
in a second Python process that imports it all again. Here the parent (the
pipeline service) has already downloaded the model, so one process does the
same work: it loads the model with MLflow's loader, builds MLflow's scoring
app (``mlflow.pyfunc.scoring_server.init``, the same ``/invocations``,
``/ping``, ``/health``, ``/version``) and serves it. The figures are in
``mlopshub.serving.server``. This command is the ``spawn`` start method; by
default model servers are forked from a warm parent instead
(:mod:`mlopshub.serving.zygote`), which then calls :func:`serve` directly.

The listening socket (a Unix socket in a folder only the service can
enter, see :mod:`mlopshub.serving.server`) is opened by the parent and
inherited (``--fd``): the process needs no access to its path, the address
is known before the child starts, and stays the same when a dead child is
replaced, so connections queue in the socket's backlog while the new one
loads instead of being refused.

With a digest (``--digest``, or ``digest=`` to :func:`serve`), the process
checks the model folder against it (:func:`mlopshub.serving.integrity.verify_tree`)
before it loads anything, and exits on a mismatch: what is served is what
was registered, at every start and restart.

MLflow's app answers 500 to JSON nested deeper than Python's parser
recurses (``[[[[...]]]]``, 50,000 levels); :func:`refuse_deep_json` answers
those 400 before MLflow parses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from itertools import accumulate
from typing import Any

from .integrity import IntegrityError, verify_tree

#: Seconds between checks that the parent is still alive.
PARENT_CHECK = 1.0
#: Exit code of a model server that refused its model folder (digest mismatch).
REFUSED = 3
#: Deepest nesting of arrays and objects a request body may have (MLflow's inputs need a few levels; a tensor
#: of rank n needs n+2).
MAX_JSON_DEPTH = 128

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def exit_with_parent(parent: int) -> None:
    """Exit when the parent dies: a model server must never outlive the service that supervises it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep arrays and objects nest in the JSON text ``body`` (0 when it cannot exceed ``limit``).

    Brackets inside strings do not count. Counting the brackets first keeps
    ordinary requests to two ``bytes.count`` calls; only a body with more
    than ``limit`` of them is walked.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def refuse_deep_json(app: App, limit: int = MAX_JSON_DEPTH) -> App:
    """``app`` behind a check that answers 400 to a POST body nesting deeper than ``limit``.

    The body is read whole (MLflow's app reads it whole too) and handed on unchanged.
    """

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        depth = json_depth(body, limit) if len(body) < 1 << 20 else await asyncio.to_thread(json_depth, body, limit)
        if depth > limit:
            message = (
                f"the request body nests arrays or objects {depth} levels deep; at most {limit} are accepted "
                "(MLflow's inputs need a few: send a dataframe_split, dataframe_records, instances or inputs)"
            )
            payload = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return checked


def serve(fd: int, model_path: str, request_timeout: int | None = None, digest: str | None = None) -> None:
    """Load the model at ``model_path`` and answer MLflow's scoring protocol on the socket ``fd``.

    With ``digest``, the folder is checked first; :class:`~mlopshub.serving.integrity.IntegrityError`
    on a mismatch, and nothing is loaded.
    """
    if digest:
        verify_tree(model_path, digest)
    if request_timeout:
        os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(request_timeout)
    import uvicorn
    from mlflow.pyfunc import scoring_server

    listening = socket.socket(fileno=fd)  # family and type are read from the descriptor
    model = scoring_server.load_model_with_mlflow_config(model_path)
    app = refuse_deep_json(scoring_server.init(model))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # Graceful stop: requests in flight get this long to finish after SIGTERM.
        timeout_graceful_shutdown=30,
        lifespan="off",
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[listening]))


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m mlopshub.serving.scoring", description=__doc__.split("\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="inherited listening (Unix) socket")
    parser.add_argument("--model-path", required=True, help="local folder of an MLflow model (with MLmodel)")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit when this process is gone")
    parser.add_argument("--request-timeout", type=int, default=None, help="seconds per request (MLflow's default)")
    parser.add_argument("--digest", default=None, help="refuse to serve unless the model folder has this digest")
    args = parser.parse_args(argv)
    exit_with_parent(args.parent)
    try:
        serve(args.fd, args.model_path, args.request_timeout, args.digest)
    except IntegrityError as error:
        print(f"refused: {error}", file=sys.stderr, flush=True)
        sys.exit(REFUSED)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
