"""The one way this extension runs git and DVC: argument lists, in a worker thread.

Never ``shell=True``: paths come from the user. Callers put ``--`` before paths.
The event loop never waits on a command; a command never waits on a terminal
(no stdin, no credential prompt).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

#: DVC from the server's own environment, whatever PATH says.
DVC: list[str] = [sys.executable, "-m", "dvc"]
GIT: list[str] = ["git"]

#: Seconds; quick reads (status, log) use this, push and pull pass longer.
DEFAULT_TIMEOUT = 120.0

#: Every command gets these: no usage analytics from DVC, no git prompt that would hang a thread.
BASE_ENV = {"DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}

# DVC ends every error with an invitation to its support chat; a user of the sidebar can't act on it.
_DVC_BOILERPLATE = "Having any troubles?"


class CommandResult(NamedTuple):
    """Exit code and text output of a command (unpacks as ``code, stdout, stderr``)."""

    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The command's own explanation of what went wrong: stderr, else stdout, without DVC's boilerplate."""
        text = self.stderr.strip() or self.stdout.strip()
        lines = [line for line in text.splitlines() if line.strip() and _DVC_BOILERPLATE not in line]
        return "\n".join(lines)


async def execute(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> CommandResult:
    """Run ``argv`` in ``cwd`` off the event loop and return its exit code, stdout and stderr.

    ``env`` adds to the server's environment. A command that does not exist
    answers code 127, one that runs past ``timeout`` seconds is killed and
    answers 124, as a shell would, so callers handle one kind of failure.
    """
    full_env = {**os.environ, **BASE_ENV, **(env or {})}
    args = [str(arg) for arg in argv]

    def run() -> CommandResult:
        try:
            completed = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                input=input.encode("utf-8", "surrogateescape") if input is not None else None,
                stdin=subprocess.DEVNULL if input is None else None,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            return CommandResult(127, "", f"{args[0]}: command not found; is it installed in this workspace?")
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"`{' '.join(args[:3])} ...` took longer than {timeout:g} s and was stopped")
        # surrogateescape: git prints paths and file contents as bytes; keep them round-trippable.
        return CommandResult(
            completed.returncode,
            completed.stdout.decode("utf-8", "surrogateescape"),
            completed.stderr.decode("utf-8", "surrogateescape"),
        )

    return await asyncio.to_thread(run)
