"""`mlopshub up` starts every part in order under one supervisor, names a part that cannot come up, and leaves
no process behind after a failed start, a busy start, or a crash of the hub followed by `down`.

Each test runs a platform of its own (not the session's), in a fresh data dir. Processes are found by the data
dir in their command line or environment (Platform.processes), and by the pid files in ``<data dir>/run/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_under_test import Platform, reachable_dir
from testing_support import until

pytestmark = pytest.mark.integration

PART_PID_FILES = ("supervisor.pid", "hub.pid", "proxy.pid", "mlflow.pid", "pipeline.pid", "models.pid")
#: Keeps one core busy until killed.
SPIN = "while True: pass"


def pid_files(platform: Platform) -> list[str]:
    return sorted(name for name in PART_PID_FILES if (platform.data_dir / "run" / name).exists())


def left_behind(platform: Platform) -> list[str]:
    return [f"{process.pid}: {' '.join(process.cmdline())[:120]}" for process in platform.processes()]


@pytest.fixture
def fresh(tmp_path_factory) -> Iterator[Platform]:
    platform = Platform(reachable_dir(tmp_path_factory))
    yield platform
    platform.down()


def test_a_part_that_cannot_come_up_is_named_with_its_log_and_nothing_is_left(fresh):
    # MLflow's tracking database is not a database: its migrations fail before anything listens.
    (fresh.data_dir / "mlflow").mkdir(mode=0o700)
    (fresh.data_dir / "mlflow" / "mlflow.sqlite").write_bytes(b"this is not a SQLite database\n" * 100)
    result = fresh.cli("up", check=False, timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    log = fresh.data_dir / "logs" / "mlflow.log"
    assert "mlflow did not come up: database migrations failed" in result.stderr
    assert f"Last lines of {log}" in result.stderr
    assert "file is not a database" in result.stderr  # SQLite's own words, from the log's tail
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)
    assert left_behind(fresh) == []
    assert pid_files(fresh) == []


@pytest.fixture
def busy() -> Iterator[None]:
    """Every core kept busy by another process while the test runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(os.cpu_count() or 2)]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


#: `up`/`down` cycles with every core busy: the first on a fresh data dir (MLflow's migrations), the rest on the
#: data it left, as a machine restarted again and again would. `make bench` times ten cycles on fresh data dirs.
BUSY_CYCLES = 10


def test_ten_up_down_cycles_on_a_busy_machine_all_start_every_part_and_leave_nothing(fresh, busy):
    for cycle in range(1, BUSY_CYCLES + 1):
        result = fresh.cli("up", check=False, timeout=1200)
        assert result.returncode == 0, f"cycle {cycle}: `mlopshub up` failed:\n{result.stdout}\n{result.stderr}"
        parts = fresh.status()["parts"]
        assert {name: (part["alive"], part["healthy"]) for name, part in parts.items()} == {
            "mlflow": (True, True),
            "models": (True, True),
            "pipeline": (True, True),
            "proxy": (True, True),
            "hub": (True, True),
        }, f"cycle {cycle}"
        fresh.cli("down")
        assert left_behind(fresh) == [], f"cycle {cycle}"
        assert pid_files(fresh) == [], f"cycle {cycle}"


def test_a_killed_hub_comes_back_and_down_then_stops_everything(fresh):
    fresh.up()
    hub = int((fresh.data_dir / "run" / "hub.pid").read_text())
    os.kill(hub, signal.SIGKILL)

    def hub_back() -> bool:
        part = fresh.status().get("parts", {}).get("hub", {})
        return part.get("pid") not in (None, hub) and part.get("healthy") and part.get("restarts") == 1

    until(hub_back, "the hub restarted by the supervisor and healthy", timeout=600)
    assert fresh.api("GET", "services").status_code == 200
    # And killed again: `down` right after stops everything, whatever the restart was doing.
    os.kill(int((fresh.data_dir / "run" / "hub.pid").read_text()), signal.SIGKILL)
    fresh.cli("down")
    assert left_behind(fresh) == []
    assert pid_files(fresh) == []


def test_up_after_the_supervisor_was_killed_cleans_its_leftovers_instead_of_refusing_the_port(fresh):
    fresh.up()
    supervisor = int((fresh.data_dir / "run" / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    until(lambda: not Path(f"/proc/{supervisor}").exists() or _zombie(supervisor), "the supervisor gone")
    result = fresh.cli("up", timeout=1200)
    assert "stopped what an earlier run left" in result.stdout
    assert fresh.status()["running"] is True
    fresh.cli("down")
    assert left_behind(fresh) == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
