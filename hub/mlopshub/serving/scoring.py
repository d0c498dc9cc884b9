"""One model server process: MLflow's scoring protocol, run by uvicorn on a socket its parent opened.

``python -m mlopshub.serving.scoring --fd <n> --model-path <dir> [--digest sha256:<hex>]``

Why not ``mlflow models serve``: that command is a Python process that
imports MLflow, downloads the model, then starts ``uvicorn ...scoring_server.app:app``
in a second Python process that imports it all again. Here the parent (the
pipeline service) has already downloaded the model, so one process does the
same work: it loads the model with MLflow's loader and answers MLflow's
scoring protocol (``/invocations``, ``/ping``, ``/health``, ``/version``).
The figures are in ``mlopshub.serving.server``. This command is the
``spawn`` start method; by default model servers are forked from a warm
parent instead (:mod:`mlopshub.serving.zygote`), which then calls
:func:`serve` directly.

What answers is :func:`scoring_app`: MLflow's own scoring function
(``mlflow.pyfunc.scoring_server.invocations``: the content types, the
``dataframe_split``/``dataframe_records``/``instances``/``inputs`` and CSV
parsing, the signature's enforcement, the prediction, the JSON answer and
MLflow's error bodies), its request timeout
(``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, 504) and its ``/ping`` and
``/version`` answers, as a plain ASGI app instead of MLflow's FastAPI one
(``scoring_server.init``). That app hands every request to the default
thread pool (up to six threads on two cores, fighting over the GIL) behind
a ``BaseHTTPMiddleware``; here one scoring thread takes the requests in
turn, so a server does the same work with less CPU, and the event loop stays
free to answer ``/ping`` during a long prediction. Measured on this machine
(one server of a small scikit-learn model, 10 rows per request, 8
concurrent callers, CPU time of the server process per request): MLflow's
app 6.5-7.5 ms, this one 4.3-4.8 ms, for 1.3-1.5x the requests per second
(``python -m bench --only pipeline`` measures it against
``mlflow models serve``, see docs/benchmarks.md).

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

A body nested deeper than Python's JSON parser recurses (``[[[[...]]]]``,
50,000 levels) would make MLflow's parser fail with a 500; the app answers
those 400 before parsing (:func:`json_depth`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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


#: Threads that run predictions in one model server: requests are scored one after another (see the module
#: docstring); more threads only contend for the GIL.
SCORING_THREADS = 1
#: MLflow's answer to a request that ran out of time (``scoring_server.init``'s timeout middleware).
TIMED_OUT = "Request processing time exceeded limit"


async def _reply(send: Send, status: int, body: str | bytes, content_type: str = "application/json") -> None:
    payload = body.encode() if isinstance(body, str) else body
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def scoring_app(model: Any, request_timeout: float | None = None, limit: int = MAX_JSON_DEPTH) -> App:
    """MLflow's scoring protocol for the loaded pyfunc ``model``, as an ASGI app (see the module docstring).

    ``request_timeout``: seconds a request may take from its arrival, waiting
    included (None: ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, MLflow's 60);
    ``limit``: deepest JSON nesting accepted (:data:`MAX_JSON_DEPTH`).
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT, MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, INTERNAL_ERROR
    from mlflow.pyfunc.scoring_server import invocations
    from mlflow.version import VERSION

    schema = model.metadata.get_input_schema()
    timeout = request_timeout or MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
    os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"  # as MLflow's app says to the model's code
    scoring = ThreadPoolExecutor(SCORING_THREADS, thread_name_prefix="scoring")  # threads start on first use

    async def score(body: bytes, content_type: str | None) -> tuple[int, str, str]:
        if not content_type:
            message = (
                "the request has no Content-Type; send application/json, text/csv or application/vnd.apache.parquet"
            )
            return 415, "text/plain", message
        if content_type.split(";")[0].strip().lower() != "application/json":
            depth = 0  # CSV and Parquet do not nest; a bracket in a CSV cell is data
        elif len(body) < 1 << 20:
            depth = json_depth(body, limit)
        else:
            depth = await asyncio.to_thread(json_depth, body, limit)
        if depth > limit:
            message = (
                f"the request body nests arrays or objects {depth} levels deep; at most {limit} are accepted "
                "(MLflow's inputs need a few: send a dataframe_split, dataframe_records, instances or inputs)"
            )
            return 400, "application/json", MlflowException(message, BAD_REQUEST).serialize_as_json()
        loop = asyncio.get_running_loop()
        try:
            answer = await asyncio.wait_for(
                loop.run_in_executor(scoring, invocations, body, content_type, model, schema), timeout
            )
        except TimeoutError:
            return 504, "application/json", TIMED_OUT
        except MlflowException as error:
            return error.get_http_status_code(), "application/json", error.serialize_as_json()
        except Exception as error:  # the model's own code failed outside MLflow's handling
            logging.getLogger("mlopshub.serving").exception("scoring failed")
            failed = MlflowException(f"the model failed: {type(error).__name__}", INTERNAL_ERROR)
            return 500, "application/json", failed.serialize_as_json()
        return answer.status, answer.mimetype, answer.response

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/ping", "/health", "/version"):
            if method != "GET":
                await _reply(send, 405, '{"detail":"Method Not Allowed"}')
            else:
                await _reply(send, 200, VERSION if path == "/version" else "\n")
            return
        if path != "/invocations":
            await _reply(send, 404, '{"detail":"Not Found"}')
            return
        if method != "POST":
            await _reply(send, 405, '{"detail":"Method Not Allowed"}')
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        content_type = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"content-type"), None
        )
        status, mimetype, answer = await score(b"".join(chunks), content_type)
        await _reply(send, status, answer, mimetype)

    return app


def serve(fd: int, model_path: str, request_timeout: int | None = None, digest: str | None = None) -> None:
    """Load the model at ``model_path`` and answer MLflow's scoring protocol on the socket ``fd``.

    With ``digest``, the folder is checked first; :class:`~mlopshub.serving.integrity.IntegrityError`
    on a mismatch, and nothing is loaded.
    """
    if digest:
        verify_tree(model_path, digest)
    import uvicorn
    from mlflow.pyfunc import scoring_server

    listening = socket.socket(fileno=fd)  # family and type are read from the descriptor
    model = scoring_server.load_model_with_mlflow_config(model_path)
    config = uvicorn.Config(
        scoring_app(model, request_timeout),
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
