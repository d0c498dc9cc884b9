"""Recovery: each part killed with SIGKILL under load, workspaces kept through a hub crash, busy starts.

- recovery: for each part (pipeline, MLflow, hub, proxy, models) and for a model server, the seconds from
  SIGKILL until the supervisor has it healthy again (until the endpoint answers, for the server), and the
  requests that failed meanwhile on a production endpoint under steady load from a consumer system (target 0
  for the pipeline, MLflow, the hub and a model server: the data path does not go through them);
- workspaces: N running workspaces, the hub killed; how many answer through the proxy, unrestarted, once the
  hub is back (target N/N);
- busy starts: `up`/`down` cycles while every core is kept busy by another process; how many started, how
  many left a process behind (target all, none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "security"))

from adversary import (  # noqa: E402
    CREDIT,
    GRANTED_MODEL,
    Person,
    consumer_token,
    data_scientist,
    live_endpoints,
    release_to_production,
)
from fault_injection import Load, kill_part, kill_process  # noqa: E402
from platform_under_test import Platform, reachable_dir  # noqa: E402
from release_flow import FORMATS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("pipeline", "mlflow", "hub", "proxy", "models")


def production_model(platform: Platform) -> str:
    """credit-default in production; the consumer system's token."""
    alice = data_scientist(platform, "alice", CREDIT, seed=1, cs=(1.0,))
    platform.add_user("victor", "model-validators")
    victor = Person("victor", platform.token_for("victor"))
    release_to_production(platform, alice, victor, alice.runs[0], GRANTED_MODEL)
    return consumer_token(platform)


def measure_kill(platform: Platform, consumer: str, part: str) -> dict:
    url = f"{platform.url}/services/models/{GRANTED_MODEL}/production/invocations"
    with Load(url, consumer, FORMATS["dataframe_split"]) as traffic:
        while traffic.served() < 5:
            time.sleep(0.1)
        if part == "model server":
            victor = Person("victor", platform.token_for("victor"))
            (served,) = [e for e in live_endpoints(platform, victor) if e["model"] == GRANTED_MODEL]
            killed = time.monotonic()
            kill_process(served["pid"])
            while not (traffic.answers[-1][0] > killed + 0.2 and traffic.answers[-1][1].startswith("200")):
                time.sleep(0.05)
            seconds = time.monotonic() - killed
        else:
            seconds = kill_part(platform.data_dir, part)
        time.sleep(3)
    return {
        "part": part,
        "recovery_seconds": round(seconds, 1),
        "failed_requests": len(traffic.failures()),
        "served_requests": traffic.served(),
    }


def workspaces_after_hub_crash(platform: Platform, users: int) -> dict:
    names = [f"ws{i:02d}" for i in range(users)]
    for name in names:
        platform.add_user(name, CREDIT)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda name: platform.start(name, "python-cpu"), names))
    tokens = {name: platform.token_for(name) for name in names}
    pids = {name: platform.api("GET", f"users/{name}").json()["servers"][""]["state"]["pid"] for name in names}
    recovery = kill_part(platform.data_dir, "hub")

    def answers(name: str) -> bool:
        same = platform.api("GET", f"users/{name}").json()["servers"][""]["state"]["pid"] == pids[name]
        return same and platform.workspace(name, "api/status", tokens[name]).status_code == 200

    reachable = sum(answers(name) for name in names)
    for name in names:
        platform.stop(name)
    return {"workspaces": users, "reachable_after_hub_crash": reachable, "hub_recovery_seconds": round(recovery, 1)}


def busy_starts(cycles: int) -> dict:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    started, left, seconds = 0, 0, []
    try:
        for _ in range(cycles):
            platform = Platform(reachable_dir(None))
            began = time.monotonic()
            result = platform.cli("up", check=False, timeout=1800)
            if result.returncode == 0:
                started += 1
                seconds.append(round(time.monotonic() - began, 1))
            platform.down()
            left += bool(platform.processes())
    finally:
        for spinner in spinners:
            spinner.kill()
    return {"cycles": cycles, "started": started, "left_processes": left, "start_seconds": seconds}


def run(users: int = 20, cycles: int = 10) -> dict:
    platform = Platform(reachable_dir(None)).up()
    try:
        consumer = production_model(platform)
        kills = [measure_kill(platform, consumer, part) for part in (*PARTS, "model server")]
        workspaces = workspaces_after_hub_crash(platform, users)
    finally:
        platform.down()
    results = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kills": kills,
        "workspaces": workspaces,
        "busy_starts": busy_starts(cycles),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "recovery.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
