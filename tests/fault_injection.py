"""Faults for the reliability tests and the recovery benchmark: kill a part of a running platform with SIGKILL,
keep steady load on an endpoint meanwhile, and time how long until the supervisor has it healthy again.

Shared by tests/integration/test_faults.py (what must hold) and bench/recovery_bench.py (the figures).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests


def supervisor_state(data_dir: Path) -> dict[str, Any]:
    """What the supervisor last wrote (``<run>/supervisor.json``)."""
    try:
        return dict(json.loads((data_dir / "run" / "supervisor.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def part_pid(data_dir: Path, part: str) -> int:
    return int((data_dir / "run" / f"{part}.pid").read_text())


def kill_part(data_dir: Path, part: str, timeout: float = 600) -> float:
    """SIGKILL ``part`` (the process the supervisor started); seconds until the supervisor has a new one healthy."""
    pid = part_pid(data_dir, part)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return wait_healthy_again(data_dir, part, pid, killed, timeout)


def wait_healthy_again(data_dir: Path, part: str, old_pid: int, since: float, timeout: float = 600) -> float:
    """Seconds from ``since`` until ``part`` runs with a pid other than ``old_pid`` and is healthy."""
    while time.monotonic() - since < timeout:
        state = supervisor_state(data_dir).get("parts", {}).get(part, {})
        if state.get("pid") not in (None, old_pid) and state.get("state") == "healthy":
            return time.monotonic() - since
        time.sleep(0.1)
    raise AssertionError(f"{part} was not healthy again within {timeout:.0f} s: {supervisor_state(data_dir)}")


def kill_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def children_named(pid: int, text: str) -> list[psutil.Process]:
    """Processes below ``pid`` whose command line holds ``text``."""
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if text in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


@dataclass
class Load:
    """Steady requests to one endpoint from a thread, every answer kept: (time, status or error, version)."""

    url: str
    token: str
    body: dict[str, Any]
    answers: list[tuple[float, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def _send(self) -> None:
        headers = {"Authorization": f"token {self.token}"}
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(self.url, json=self.body, headers=headers, timeout=60)
                    outcome = str(response.status_code)
                    version = response.headers.get("X-Mlopshub-Model-Version", "")
                    if response.status_code != 200:
                        outcome += f" {response.text[:200]}"
                except requests.RequestException as error:
                    outcome, version = f"error {type(error).__name__}: {str(error)[:200]}", ""
                self.answers.append((time.monotonic(), outcome, version))
                time.sleep(0.02)

    def failures(self) -> list[tuple[float, str, str]]:
        return [answer for answer in self.answers if not answer[1].startswith("200")]

    def served(self) -> int:
        return len(self.answers) - len(self.failures())
