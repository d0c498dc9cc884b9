"""One model server process: MLflow's own scoring app, run by uvicorn on a socket its parent opened.

``python -m mlopshub.serving.scoring --fd <n> --model-path <dir>``

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

The listening socket is opened by the parent and inherited (``--fd``): the
address is known before the child starts (no free-port race), and stays the
same when a dead child is replaced, so connections queue in the socket's
backlog while the new one loads instead of being refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
import time

#: Seconds between checks that the parent is still alive.
PARENT_CHECK = 1.0


def exit_with_parent(parent: int) -> None:
    """Exit when the parent dies: a model server must never outlive the service that supervises it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(fd: int, model_path: str, request_timeout: int | None = None) -> None:
    """Load the model at ``model_path`` and answer MLflow's scoring protocol on the socket ``fd``."""
    if request_timeout:
        os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(request_timeout)
    import uvicorn
    from mlflow.pyfunc import scoring_server

    listening = socket.socket(fileno=fd)  # family and type are read from the descriptor
    model = scoring_server.load_model_with_mlflow_config(model_path)
    app = scoring_server.init(model)
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
    parser.add_argument("--fd", type=int, required=True, help="inherited listening TCP socket")
    parser.add_argument("--model-path", required=True, help="local folder of an MLflow model (with MLmodel)")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit when this process is gone")
    parser.add_argument("--request-timeout", type=int, default=None, help="seconds per request (MLflow's default)")
    args = parser.parse_args(argv)
    exit_with_parent(args.parent)
    try:
        serve(args.fd, args.model_path, args.request_timeout)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
