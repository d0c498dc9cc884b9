"""Helpers the server-extension tests share (a module of its own: `conftest` is a name every test folder has)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

DVC = [sys.executable, "-m", "dvc"]
#: Identity for the commits tests make themselves (the server's own commits use its fallback identity).
TEST_GIT_ENV = {
    "GIT_AUTHOR_NAME": "setup",
    "GIT_AUTHOR_EMAIL": "setup@test",
    "GIT_COMMITTER_NAME": "setup",
    "GIT_COMMITTER_EMAIL": "setup@test",
}


def sh(args: list[str], cwd: Path) -> str:
    """Run a setup command the way a user in a terminal would; fail the test if it fails."""
    env = {**os.environ, **TEST_GIT_ENV, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{args} failed: {result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
