"""Run ``mlflow server`` with its web server in place of the CLI process.

``mlflow server`` prepares the stores, then starts uvicorn as a child and
waits for it: two Python processes with MLflow imported, about 310 MB each
here. With job execution off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``),
the parent does nothing after the start, so this entry point has the CLI
exec uvicorn instead of spawning it: one process, the same server, half the
memory. Arguments are those of ``mlflow server``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

#: MLflow's uvicorn log configuration with mlopshub's bounded-records filter on both handlers: a request
#: line is attacker-controlled and is cut in the log (mlopshub.logs), not written whole.
LOG_CONFIG = Path(__file__).resolve().with_name("uvicorn_log_config.json")


def _exec_in_place(cmd: Sequence[str], *, extra_env: Mapping[str, str] | None = None, **_: Any) -> NoReturn:
    argv = list(cmd)
    if "--log-config" in argv:
        argv[argv.index("--log-config") + 1] = str(LOG_CONFIG)
    os.execvpe(argv[0], argv, {**os.environ, **(extra_env or {})})


def main() -> None:
    """``python -m mlopshub.services.mlflow_server <mlflow server arguments>``."""
    from mlflow.cli import cli

    from mlopshub import mlflow_private

    if os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "").lower() != "false":
        sys.exit(
            "mlopshub's MLflow service runs without MLflow's job runner: set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"
        )
    mlflow_private.replace_server_start(_exec_in_place)
    cli.main(args=["server", *sys.argv[1:]], prog_name="mlflow server")


if __name__ == "__main__":
    main()
