"""Spawn time against plain JupyterHub, 50 users at once, and the platform's memory.

- spawn: median seconds from `POST /hub/api/users/{name}/server` to a
  JupyterLab that answers through the proxy, for mlopshub (team check,
  profile resolution, per-user account) and for a plain JupyterHub 5.5 with
  SimpleLocalProcessSpawner started in the same run, same single-user command.
- load: N users of one team POST a spawn at the same moment; how many are
  ready, how many failed, and the wall time until the last is ready.
- memory: resident set size of the hub, the proxy and the MLflow service
  (each with its child processes), measured while idle after the load.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from platform_under_test import Platform, free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VENV_BIN = Path(sys.executable).parent


def wait_lab(url: str, name: str, token: str, timeout: float = 300) -> None:
    """Until JupyterLab of ``name`` answers through the proxy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(
                f"{url}/user/{name}/api/status", headers={"Authorization": f"token {token}"}, timeout=10
            )
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{name}'s JupyterLab did not answer in {timeout}s")


def user_token(url: str, admin_token: str, name: str) -> str:
    """A token of ``name`` (the admin token may manage servers, not look inside them)."""
    response = requests.post(
        f"{url}/hub/api/users/{name}/tokens",
        headers={"Authorization": f"token {admin_token}"},
        json={"note": "bench", "expires_in": 7200},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["token"]


def timed_spawn(url: str, admin_token: str, name: str, body: dict) -> float:
    headers = {"Authorization": f"token {admin_token}"}
    token = user_token(url, admin_token, name)
    started = time.perf_counter()
    response = requests.post(f"{url}/hub/api/users/{name}/server", headers=headers, json=body, timeout=300)
    response.raise_for_status()
    wait_lab(url, name, token)
    elapsed = time.perf_counter() - started
    requests.delete(f"{url}/hub/api/users/{name}/server", headers=headers, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not requests.get(f"{url}/hub/api/users/{name}", headers=headers, timeout=10).json().get("servers"):
            break
        time.sleep(0.2)
    return elapsed


PLAIN_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{data}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{data}/cookie-secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{data}/homes/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.default_url = "/lab"
c.Spawner.args = {args!r}
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:users", "admin:servers", "tokens"],
                            "services": ["bench"]}}]
"""


class PlainHub:
    """A plain JupyterHub with SimpleLocalProcessSpawner: the baseline."""

    def __init__(self) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="plainhub-"))
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        (self.data / "homes").mkdir()
        config = self.data / "jupyterhub_config.py"
        config.write_text(
            PLAIN_CONFIG.format(
                port=self.port,
                hub_port=free_port(),
                proxy_port=free_port(),
                data=self.data,
                token=self.token,
                chp=str(ROOT / "node_modules" / ".bin" / "configurable-http-proxy"),
                singleuser=str(VENV_BIN / "jupyterhub-singleuser"),
                args=["--allow-root"] if os.geteuid() == 0 else [],
            )
        )
        self.log = open(self.data / "hub.log", "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=self.data,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/hub/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise TimeoutError("plain JupyterHub did not start")

    def add_user(self, name: str) -> None:
        requests.post(
            f"{self.url}/hub/api/users/{name}", headers={"Authorization": f"token {self.token}"}, json={}, timeout=30
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def rss_tree(pid: int) -> int:
    """Resident bytes of a process and its descendants."""
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def platform_memory(platform: Platform) -> dict[str, float]:
    hub_pid = int((platform.data_dir / "run" / "hub.pid").read_text())
    hub = psutil.Process(hub_pid)
    mlflow = [p for p in hub.children() if "mlflow" in " ".join(p.cmdline())]
    proxy_pid = int((platform.data_dir / "run" / "proxy.pid").read_text())
    mib = 1024 * 1024
    return {
        "hub_mib": round(hub.memory_info().rss / mib, 1),
        "proxy_mib": round(rss_tree(proxy_pid) / mib, 1),
        "mlflow_mib": round(sum(rss_tree(p.pid) for p in mlflow) / mib, 1),
    }


def load(platform: Platform, users: int) -> dict[str, float | int]:
    names = [f"load{i:02d}" for i in range(users)]
    for name in names:
        platform.api("POST", f"users/{name}", json={})
    # A team of its own, made at runtime with no quota: what is measured is the platform under load, not a quota
    # (sme-credit's 20 servers would refuse the last 30 with 429).
    platform.api("POST", "groups/bench-load", json={"users": names})
    properties = {"mlopshub.team": True, "display_name": "Load test", "profiles": ["python-cpu"]}
    platform.api("PUT", "groups/bench-load/properties", json=properties)
    ready: dict[str, float] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()

    tokens = {name: user_token(platform.url, platform.admin_token, name) for name in names}

    def one(name: str) -> None:
        try:
            response = platform.spawn(name, "python-cpu")
            if response.status_code not in (201, 202):
                failures[name] = response.text
                return
            wait_lab(platform.url, name, tokens[name], timeout=900)
            ready[name] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            failures[name] = str(error)

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = {
        "users": users,
        "ready": len(ready),
        "failed": len(failures),
        "wall_seconds": round(max(ready.values(), default=0.0), 1),
        "median_ready_seconds": round(statistics.median(ready.values()), 1) if ready else None,
        "failures": dict(list(failures.items())[:5]),
    }
    return result


def run(spawns: int = 5, users: int = 50) -> dict:
    """Measure and write bench/results/platform.json."""
    RESULTS.mkdir(exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="mlopshub-bench-", dir="/tmp"))
    data.chmod(0o755)
    platform = Platform(data).up()
    plain = PlainHub()
    try:
        platform.api("POST", "users/bench", json={})
        platform.api("POST", "groups/sme-credit/users", json={"users": ["bench"]})
        plain.add_user("bench")
        # Interleave the two so that machine noise hits both alike; the first spawn warms caches.
        timed_spawn(platform.url, platform.admin_token, "bench", {"profile": "python-cpu"})
        timed_spawn(plain.url, plain.token, "bench", {})
        ours, theirs = [], []
        for _ in range(spawns):
            ours.append(timed_spawn(platform.url, platform.admin_token, "bench", {"profile": "python-cpu"}))
            theirs.append(timed_spawn(plain.url, plain.token, "bench", {}))
        plain.stop()
        spawn = {
            "runs": spawns,
            "mlopshub_median_seconds": round(statistics.median(ours), 3),
            "plain_jupyterhub_median_seconds": round(statistics.median(theirs), 3),
            "ratio": round(statistics.median(ours) / statistics.median(theirs), 3),
            "mlopshub_seconds": [round(x, 3) for x in ours],
            "plain_jupyterhub_seconds": [round(x, 3) for x in theirs],
        }
        print("spawn:", json.dumps(spawn))
        loaded = load(platform, users)
        print("load:", json.dumps(loaded))
        time.sleep(5)
        memory = platform_memory(platform)
        print("memory:", json.dumps(memory))
    finally:
        if plain.process.poll() is None:
            plain.stop()
        platform.down()
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "spawn": spawn,
        "load": loaded,
        "memory": memory,
    }
    (RESULTS / "platform.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


__all__ = ["run"]
