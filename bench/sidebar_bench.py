"""The sidebar's first page against the plain tools' answer, measured in the same run.

- data: a DVC project with N tracked files (one .dvc file each). The sidebar's
  first page (`GET /mlopshub-lab/data/datasets?limit=100` on a real Jupyter
  server with the extension) against `dvc data status --json` for the project.
- runs: an experiment with M runs in a real MLflow tracking server. The
  sidebar's first page (`GET /mlopshub-lab/experiments/runs?max_results=50`)
  against `mlflow.search_runs` (the MLflow client's answer, every run).
- not blocked: while each first page loads, `GET /api/status` of the same
  server is timed every 20 ms; the slowest answer is reported.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from platform_under_test import free_port  # noqa: E402

BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
}


def run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True)


def make_project(root: Path, files: int) -> Path:
    project = root / "project"
    (project / "data").mkdir(parents=True)
    run(["git", "init", "-q"], project)
    run([str(BIN / "dvc"), "init", "-q"], project)
    names = []
    for index in range(files):
        name = f"data/part-{index:05d}.csv"
        (project / name).write_text(f"id,value\n{index},{index * 7 % 13}\n")
        names.append(name)
    for start in range(0, files, 2000):  # dvc add takes many targets per call
        run([str(BIN / "dvc"), "add", "-q", *names[start : start + 2000]], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "data"], project)
    return project


def make_runs(store: Path, runs: int) -> str:
    """Write M runs straight into a tracking store (fast), served by a real server afterwards."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.create_experiment("bench", artifact_location=str(store.parent / "artifacts"))
    now = int(time.time() * 1000)
    for index in range(runs):
        created = client.create_run(experiment, start_time=now + index, run_name=f"run-{index}")
        client.log_batch(
            created.info.run_id,
            metrics=[Metric("auc", (index % 100) / 100, now, 0)],
            params=[Param("C", str(index % 7))],
        )
        client.set_terminated(created.info.run_id, end_time=now + index + 1000)
    return experiment


def wait_http(url: str, timeout: float = 60, **kwargs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2, **kwargs).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def slowest_status_while(base: str, headers: dict, call) -> tuple[float, float]:
    """Run ``call`` while timing GET /api/status every 20 ms; return (call seconds, slowest status seconds)."""
    stop = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            requests.get(f"{base}/api/status", headers=headers, timeout=30)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        seconds, _ = timed(call)
    finally:
        stop.set()
        thread.join()
    return seconds, max(latencies, default=0.0)


def run_bench(files: int = 10_000, runs: int = 5_000, repeats: int = 5) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mlopshub-sidebar-bench-"))
    print(f"making a project with {files} tracked files and an experiment with {runs} runs…", flush=True)
    project = make_project(work, files)
    experiment = make_runs(work / "mlflow.db", runs)
    mlflow_port, server_port = free_port(), free_port()
    token = secrets.token_hex(16)
    processes = [
        subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{work / 'mlflow.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    tracking = f"http://127.0.0.1:{mlflow_port}"
    server_env = {**ENV, "MLFLOW_TRACKING_URI": tracking, "MLOPSHUB_TEAMS": "", "MLFLOW_WORKSPACE": ""}
    server_env.pop("MLFLOW_WORKSPACE")
    processes.append(
        subprocess.Popen(
            [
                str(BIN / "jupyter-server"),
                f"--ServerApp.root_dir={work}",
                f"--ServerApp.port={server_port}",
                f"--IdentityProvider.token={token}",
                "--ServerApp.open_browser=False",
                "--allow-root",
            ],
            env=server_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    base = f"http://127.0.0.1:{server_port}"
    headers = {"Authorization": f"token {token}"}
    try:
        wait_http(f"{tracking}/health")
        wait_http(f"{base}/api/status", headers=headers)

        def sidebar_data():
            response = requests.get(
                f"{base}/mlopshub-lab/data/datasets",
                headers=headers,
                timeout=300,
                params={"path": "project", "offset": 0, "limit": 100},
            )
            response.raise_for_status()
            assert response.json()["total"] == files

        def cli_data():
            run([str(BIN / "dvc"), "data", "status", "--json"], project)

        def sidebar_runs():
            response = requests.get(
                f"{base}/mlopshub-lab/experiments/runs",
                headers=headers,
                timeout=300,
                params={"experiment": experiment, "max_results": 50},
            )
            response.raise_for_status()
            assert len(response.json()["runs"]) == 50

        def client_runs():
            import mlflow

            mlflow.set_tracking_uri(tracking)
            assert len(mlflow.search_runs(experiment_ids=[experiment])) == runs

        results = {}
        for name, ours, theirs in (("data", sidebar_data, cli_data), ("runs", sidebar_runs, client_runs)):
            ours()  # warm caches alike
            theirs()
            our_times, their_times, slowest = [], [], []
            for _ in range(repeats):
                seconds, worst = slowest_status_while(base, headers, ours)
                our_times.append(seconds)
                slowest.append(worst)
                their_times.append(timed(theirs)[0])
            results[name] = {
                "sidebar_first_page_median_seconds": round(statistics.median(our_times), 4),
                "baseline_median_seconds": round(statistics.median(their_times), 4),
                "ratio": round(statistics.median(our_times) / statistics.median(their_times), 3),
                "slowest_status_during_load_seconds": round(max(slowest), 4),
            }
            print(name, results[name], flush=True)
        results["data"]["tracked_files"] = files
        results["data"]["baseline"] = "dvc data status --json"
        results["runs"]["runs"] = runs
        results["runs"]["baseline"] = "mlflow.search_runs (MLflow client, every run)"
        return results
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
