"""The release pipeline against doing it by hand with MLflow (issue 6: release pipeline).

Everything runs on this machine: a real MLflow tracking server (subprocess),
the pipeline service in-process on its own event loop (as
tests/unit/test_pipeline_service_flow.py runs it: ``build_runner``, the
service's tornado app, HubAuth against a small endpoint answering
``GET /hub/api/user`` from a token table), and ``mlflow models serve`` as the
baseline. Four figures, each beside its baseline measured in the same run:

1. publish: seconds from ``POST releases`` until the staging endpoint answers
   an ``/invocations`` through the service (gates included), against
   ``MlflowClient.create_model_version`` plus ``mlflow models serve -m
   models:/name/version --env-manager local --workers 1`` until ``/ping`` and
   one ``/invocations`` answer. Interleaved, median of ``--publishes``; the
   first of each (cold caches, and for ours the team's zygote starting) is
   reported apart.
2. throughput and latency at a fixed concurrency for a fixed time, from a
   separate load process (so it takes no CPU or GIL from the service): ours
   through the service's ``/services/models/{model}/staging/invocations``
   (tornado proxy, HubAuth token check with the service's 60 s cache, the
   endpoint authorisation, then the forked model server over its Unix
   socket), the baseline straight to ``mlflow models serve``; same model, one
   worker each.
3. memory per additional served model: PSS (and RSS, USS) of a team's zygote
   tree with 1 and with 4 model servers, against 1 and 4 ``mlflow models
   serve`` trees; per additional model = (at 4 - at 1) / 3, PSS against PSS.
   Plus what a second team's first model costs (its own zygote).
4. failed requests under steady load on the production endpoint while a
   release is promoted and then rolled back.

``python -m bench --only pipeline`` writes bench/results/pipeline.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

from mlopshub.serving.upstream import Upstream, split_unix_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pipeline_harness import (  # noqa: E402
    LINEAGE,
    TEAM,
    PipelineService,
    free_port,
    stop_group,
    tracking_server,
    wait_for_url,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
OTHER_TEAM = "retail-scoring"
COLUMNS = ["income", "debt", "age", "tenure"]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


# --- the parts under test -----------------------------------------------------------------------------------------


def log_model(tracking_uri: str, folder: Path) -> dict[str, Any]:
    """One team run with lineage and a logged classifier; a local copy of it; the hold-out CSV."""
    import mlflow
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, label = make_classification(
        n_samples=400, n_features=4, n_informative=3, n_redundant=0, n_clusters_per_class=1, random_state=0
    )
    frame = pd.DataFrame(features, columns=COLUMNS).assign(default=label)
    train, holdout = frame.iloc[:300], frame.iloc[300:].reset_index(drop=True)
    x = train.drop(columns="default")
    model = LogisticRegression().fit(x, train["default"])
    holdout_csv = folder / "holdout.csv"
    holdout.to_csv(holdout_csv, index=False)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("loans")
    with mlflow.start_run(experiment_id=experiment, tags=LINEAGE) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"], input_example=x.head(5))
    mlflow.set_tracking_uri(None)
    local = folder / "local-model"
    mlflow.sklearn.save_model(model, local, input_example=x.head(5), pip_requirements=["scikit-learn"])
    body = {"dataframe_split": holdout.drop(columns="default").head(10).to_dict(orient="split")}
    return {"uri": f"runs:/{run.info.run_id}/model", "run_id": run.info.run_id, "model_id": info.model_id,
            "local": local, "holdout_csv": holdout_csv, "body": body}  # fmt: skip


class Service(PipelineService):
    """The pipeline service as the flow test runs it (tests/pipeline_harness.py), HubAuth cached as in production."""

    def __init__(self, data_dir: Path, tracking_uri: str, holdout_csv: Path, observe: Any = None):
        import pandas as pd

        from mlopshub.pipeline.gates import HoldOut

        def load_holdout(team: str, spec: dict) -> HoldOut:
            frame = pd.read_csv(holdout_csv)
            return HoldOut(frame=frame, target=spec["target"], path=spec["path"], version="bench")

        # The service's own cache setting (service.main): a token is checked with the hub once a minute.
        super().__init__(data_dir, tracking_uri, load_holdout, cache_max_age=60, observe=observe)

    def publish(self, uri: str, name: str) -> str:  # type: ignore[override]
        """Publish as the team's data scientist."""
        return super().publish("ann", uri, name)

    def wait_for(self, release_id: str, state: str) -> dict:  # type: ignore[override]
        """Polled often: the publish figure is measured with it."""
        return super().wait_for(release_id, state, timeout=180, poll=0.02)


def answer_once(url: str, body: dict, token: str | None = None, timeout: float = 120) -> None:
    """Until one POST to ``url`` answers 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.post(url, json=body, headers=headers, timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.02)


@contextlib.contextmanager
def mlflow_serve(model_uri: str, tracking_uri: str, log: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``mlflow models serve -m MODEL --env-manager local --workers 1 -p PORT``; yields it and its address."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
               "local", "--workers", "1", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    # It runs ``uvicorn`` by name: the virtual environment's bin must be on PATH, as when it is activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    with open(log, "ab") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output, start_new_session=True)
    try:
        yield process, f"http://127.0.0.1:{port}"
    except (RuntimeError, TimeoutError) as error:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{error}; the log of mlflow models serve ends:\n{tail}") from error
    finally:
        stop_group(process)


# --- 1. publish -> staging answering --------------------------------------------------------------------------------


def publish_ours(service: Service, model: dict, name: str) -> float:
    started = time.monotonic()
    release_id = service.publish(model["uri"], name)
    service.wait_for(release_id, "awaiting_approval")
    answer_once(service.endpoint(name, "staging"), model["body"], token="ann")
    seconds = time.monotonic() - started
    service.api("POST", f"releases/{release_id}/reject", "val", {"reason": "benchmark run"})  # frees its server
    return seconds


def publish_by_hand(tracking_uri: str, model: dict, name: str, folder: Path) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    started = time.monotonic()
    client.create_registered_model(name)
    # MLflow 3 keeps a logged model outside the run's artifacts: the source is the logged model.
    source = f"models:/{model['model_id']}"
    version = client.create_model_version(name, source, run_id=model["run_id"], model_id=model["model_id"])
    with mlflow_serve(f"models:/{name}/{version.version}", tracking_uri, folder / f"{name}.log") as (process, url):
        wait_for_url(f"{url}/ping", timeout=120, process=process)
        answer_once(f"{url}/invocations", model["body"])
        return time.monotonic() - started


def bench_publish(service: Service, tracking_uri: str, model: dict, folder: Path, repeats: int) -> dict:
    ours, by_hand = [], []
    for index in range(repeats + 1):  # the first of each warms caches (and starts our team's zygote)
        ours.append(round(publish_ours(service, model, f"bench-{index}"), 3))
        by_hand.append(round(publish_by_hand(tracking_uri, model, f"byhand-{index}", folder), 3))
        print(f"publish {index}: ours {ours[-1]} s, by hand {by_hand[-1]} s", flush=True)
    result = {
        "repeats": repeats,
        "ours_first_seconds": ours[0],
        "by_hand_first_seconds": by_hand[0],
        "ours_seconds": ours[1:],
        "by_hand_seconds": by_hand[1:],
        "ours_median_seconds": median(ours[1:]),
        "by_hand_median_seconds": median(by_hand[1:]),
    }
    result["ratio"] = round(result["ours_median_seconds"] / result["by_hand_median_seconds"], 3)
    return result


# --- 2. throughput and latency --------------------------------------------------------------------------------------


def load(url: str, body: dict, seconds: float, concurrency: int, token: str | None = None) -> dict:
    """``concurrency`` keep-alive connections POSTing ``body`` to ``url`` back to back for ``seconds``.

    A minimal HTTP/1.1 client on asyncio streams, run in a process of its own
    (:func:`load_process`): ``requests`` in threads spent as much CPU as the
    server under test, and on two cores the client's cost would decide the figure.
    An ``http+unix://`` URL (a model server's own socket) is reached over that socket.
    """
    return asyncio.run(_load(url, body, seconds, concurrency, token))


async def _load(url: str, body: dict, seconds: float, concurrency: int, token: str | None) -> dict:
    socket_path, url = split_unix_url(url)
    parsed = urlsplit(url)
    payload = json.dumps(body).encode()
    head = [f"POST {parsed.path} HTTP/1.1", f"Host: {parsed.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}"]  # fmt: skip
    if token:
        head.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    latencies: list[float] = []
    failures: list[str] = []
    versions: dict[str, int] = {}
    start = time.monotonic()
    stop = start + seconds

    async def send() -> None:
        reader = writer = None
        while time.monotonic() < stop:
            try:
                if writer is None:
                    if socket_path is not None:
                        reader, writer = await asyncio.open_unix_connection(socket_path)
                    else:
                        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
                sent = time.perf_counter()
                writer.write(request)
                status_line, _, header_text = (await reader.readuntil(b"\r\n\r\n")).decode().partition("\r\n")
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in header_text.split("\r\n") if line)
                )
                answer = await reader.readexactly(int(headers.get("content-length", "0")))
                took = time.perf_counter() - sent
                status = int(status_line.split()[1])
                if status == 200:
                    latencies.append(took)
                    version = headers.get("x-mlopshub-model-version", "")
                    versions[version] = versions.get(version, 0) + 1
                else:
                    failures.append(f"{status} {answer[:120].decode(errors='replace')}")
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                failures.append(type(error).__name__)
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(send() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "ok": len(latencies),
        "failed": len(failures),
        "failures": sorted(set(failures))[:10],
        "versions": versions,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)
        if latencies
        else None,
    }


def load_process(url: str, body: dict, seconds: float, concurrency: int, token: str | None = None) -> subprocess.Popen:
    """:func:`load` in a separate Python process: its threads take no GIL from the service under test."""
    code = (
        "import json, sys; from bench.pipeline_bench import load; "
        "args = json.loads(sys.argv[1]); print(json.dumps(load(**args)))"
    )
    args = json.dumps({"url": url, "body": body, "seconds": seconds, "concurrency": concurrency, "token": token})
    return subprocess.Popen([sys.executable, "-c", code, args], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def run_load(url: str, body: dict, seconds: float, concurrency: int, token: str | None = None) -> dict:
    process = load_process(url, body, seconds, concurrency, token)
    output, _ = process.communicate(timeout=seconds + 120)
    return dict(json.loads(output))


async def _bare_proxy(endpoints: Any) -> tuple[Any, int]:
    """The proxy handler alone (no token check, no authorisation) on the service's loop: for the breakdown."""
    from tornado import web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from mlopshub.serving import endpoint_routes

    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(web.Application(endpoint_routes("/services/models/", endpoints, authorize=None)))
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])


def measured(url: str, body: dict, seconds: float, concurrency: int, token: str | None = None) -> dict:
    run_load(url, body, 3, concurrency, token)  # warm up: connections, token cache
    return run_load(url, body, seconds, concurrency, token)


def interleaved(paths: dict[str, Callable[[], dict]], rounds: int = 2) -> dict[str, list[dict]]:
    """Each path's load run, the paths taking turns ``rounds`` times, so that a machine getting slower or
    faster during the measurement weighs on every path alike; the runs by path."""
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, run in paths.items():
            runs[name].append(run())
            print(f"{name}:", json.dumps(runs[name][-1]), flush=True)
    return runs


def combined(runs: list[dict]) -> dict:
    """Load runs of one path as one figure: mean throughput, median percentiles, requests and failures summed."""
    return {
        "runs": len(runs),
        "seconds": round(sum(run["seconds"] for run in runs), 2),
        "concurrency": runs[0]["concurrency"],
        "ok": sum(run["ok"] for run in runs),
        "failed": sum(run["failed"] for run in runs),
        "requests_per_second": round(statistics.fmean(run["requests_per_second"] for run in runs), 1),
        "p50_ms": round(statistics.median(run["p50_ms"] for run in runs), 2),
        "p99_ms": round(statistics.median(run["p99_ms"] for run in runs), 2),
    }


def bench_throughput(
    service: Service, tracking_uri: str, model: dict, folder: Path, seconds: float, concurrency: int
) -> dict:
    release_id = service.publish(model["uri"], "bench-load")
    release = service.wait_for(release_id, "awaiting_approval")
    url = service.endpoint("bench-load", "staging")
    answer_once(url, model["body"], token="ann")
    with mlflow_serve(f"models:/bench-load/{release['version']}", tracking_uri, folder / "serve-load.log") as (
        process,
        base,
    ):
        wait_for_url(f"{base}/ping", timeout=120, process=process)
        runs = interleaved({
            "throughput ours": lambda: measured(url, model["body"], seconds, concurrency, token="ann"),
            "throughput mlflow": lambda: measured(f"{base}/invocations", model["body"], seconds, concurrency),
        })  # fmt: skip
    ours, baseline = combined(runs["throughput ours"]), combined(runs["throughput mlflow"])
    # Where our time goes: the forked model server alone, then behind the proxy handler without the token check.
    server = service.runner.endpoints.get("bench-load", "staging").server
    direct = measured(f"{server.url}/invocations", model["body"], seconds, concurrency)
    bare, port = service.call(_bare_proxy(service.runner.endpoints))
    try:
        bare_url = f"http://127.0.0.1:{port}/services/models/bench-load/staging/invocations"
        proxy_only = measured(bare_url, model["body"], seconds, concurrency)
    finally:
        service.loop.call_soon_threadsafe(bare.stop)
    print("throughput breakdown:", json.dumps({"direct": direct, "proxy_only": proxy_only}), flush=True)
    service.api("POST", f"releases/{release_id}/reject", "val", {"reason": "benchmark run"})

    def ratios(ours: dict) -> dict:
        return {
            "throughput_ratio": round(ours["requests_per_second"] / baseline["requests_per_second"], 3),
            "p50_ratio": round(ours["p50_ms"] / baseline["p50_ms"], 3),
            "p99_ratio": round(ours["p99_ms"] / baseline["p99_ms"], 3),
        }

    return {
        "ours": ours,
        "baseline": baseline,
        **ratios(ours),
        "breakdown": {
            "forked_server_direct": direct | ratios(direct),
            "proxy_without_auth": proxy_only | ratios(proxy_only),
        },
        "rows_per_request": len(model["body"]["dataframe_split"]["data"]),
    }


# --- 3. memory per additional model ---------------------------------------------------------------------------------


def tree_memory(pids: list[int]) -> dict:
    """RSS, PSS and USS in MB summed over ``pids`` and all their descendants."""
    processes: dict[int, psutil.Process] = {}
    for pid in pids:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            processes[process.pid] = process
    totals = {"rss": 0, "pss": 0, "uss": 0}
    for process in processes.values():
        info = process.memory_full_info()
        for key in totals:
            totals[key] += getattr(info, key)
    return {f"{key}_mb": round(value / 2**20, 1) for key, value in totals.items()} | {"processes": len(processes)}


def per_additional(one: dict, four: dict) -> dict:
    return {key: round((four[key] - one[key]) / 3, 1) for key in ("rss_mb", "pss_mb", "uss_mb")}


def warm_requests(url: str, body: dict, count: int = 20) -> None:
    """``count`` requests to ``url`` (a model server's own ``http+unix://`` URL too), each answering 200."""

    payload, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}

    async def send() -> None:
        upstream = Upstream()
        try:
            for _ in range(count):
                answer = await upstream.fetch(url, "POST", headers, payload)
                if answer is None or answer.code != 200:
                    raise RuntimeError(f"{url} did not answer 200: {answer}")
        finally:
            await upstream.close()

    asyncio.run(send())


def bench_memory_ours(model: dict, folder: Path) -> dict:
    from mlopshub.serving import Endpoints

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(300)

    endpoints = Endpoints(log_dir=folder / "memory-logs")
    try:
        servers = []
        for index in range(4):
            endpoint = call(endpoints.deploy(f"mem-{index}", "production", "1", model["local"], team=TEAM))
            warm_requests(f"{endpoint.server.url}/invocations", model["body"])
            servers.append(endpoint.server)
            if index == 0:
                time.sleep(1)
                one = tree_memory([endpoints.zygotes.of(TEAM).pid])
        time.sleep(1)
        four = tree_memory([endpoints.zygotes.of(TEAM).pid])
        children = [psutil.Process(server.pid).memory_full_info() for server in servers]
        other = call(endpoints.deploy("mem-other", "production", "1", model["local"], team=OTHER_TEAM))
        warm_requests(f"{other.server.url}/invocations", model["body"])
        time.sleep(1)
        other_team = tree_memory([endpoints.zygotes.of(OTHER_TEAM).pid])
        zygote = psutil.Process(endpoints.zygotes.of(TEAM).pid).memory_full_info()
    finally:
        call(endpoints.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    mb = 2**20
    return {
        "team_tree_with_1_model": one,
        "team_tree_with_4_models": four,
        "per_additional_model": per_additional(one, four),
        "child_mean_mb": {
            key: round(statistics.mean(getattr(i, key) for i in children) / mb, 1) for key in ("rss", "pss", "uss")
        },
        "zygote_mb": {key: round(getattr(zygote, key) / mb, 1) for key in ("rss", "pss", "uss")},
        "other_team_first_model": other_team,
    }


def bench_memory_baseline(model: dict, tracking_uri: str, folder: Path) -> dict:
    with contextlib.ExitStack() as stack:
        served = []
        for index in range(4):
            process, url = stack.enter_context(
                mlflow_serve(str(model["local"]), tracking_uri, folder / f"serve-memory-{index}.log")
            )
            served.append((process, url))
        for process, url in served:
            wait_for_url(f"{url}/ping", timeout=180, process=process)
            warm_requests(f"{url}/invocations", model["body"])
        time.sleep(1)
        one = tree_memory([served[0][0].pid])
        four = tree_memory([process.pid for process, _ in served])
    return {"one_serve_tree": one, "four_serve_trees": four, "per_additional_model": per_additional(one, four)}


def bench_memory(model: dict, tracking_uri: str, folder: Path) -> dict:
    ours = bench_memory_ours(model, folder)
    print("memory ours:", json.dumps(ours), flush=True)
    baseline = bench_memory_baseline(model, tracking_uri, folder)
    print("memory mlflow models serve:", json.dumps(baseline), flush=True)
    return {
        "ours": ours,
        "baseline": baseline,
        "pss_ratio": round(ours["per_additional_model"]["pss_mb"] / baseline["per_additional_model"]["pss_mb"], 3),
        "ours_pss_vs_baseline_rss": round(
            ours["per_additional_model"]["pss_mb"] / baseline["per_additional_model"]["rss_mb"], 3
        ),
    }


# --- 4. failed requests during a promotion and a rollback ----------------------------------------------------------


def bench_switches(service: Service, model: dict, concurrency: int) -> dict:
    name = "bench-switch"
    first = service.publish(model["uri"], name)
    service.wait_for(first, "awaiting_approval")
    service.api("POST", f"releases/{first}/approve", "val", {"comment": "benchmark"}).raise_for_status()
    service.wait_for(first, "production")
    second = service.publish(model["uri"], name)
    service.wait_for(second, "awaiting_approval")
    url = service.endpoint(name, "production")
    answer_once(url, model["body"], token="val")
    seconds = 16.0
    sender = load_process(url, model["body"], seconds, concurrency, token="val")
    started = time.monotonic()
    time.sleep(4)
    service.api("POST", f"releases/{second}/approve", "val", {"comment": "benchmark"}).raise_for_status()
    service.wait_for(second, "production")
    promoted = time.monotonic() - started
    time.sleep(4)
    rolled = service.api("POST", f"models/{name}/rollback", "val", {"reason": "benchmark"})
    rolled.raise_for_status()
    rolled_back = time.monotonic() - started
    output, _ = sender.communicate(timeout=seconds + 120)
    result = json.loads(output)
    return {
        "load": result,
        "promotion_done_at_seconds": round(promoted, 2),
        "rollback_done_at_seconds": round(rolled_back, 2),
        "within_load": rolled_back < result["seconds"],
        "failed_requests": result["failed"],
    }


# --- the whole run --------------------------------------------------------------------------------------------------


def run(publishes: int = 5, seconds: float = 20.0, concurrency: int = 8) -> dict:
    """Measure the four figures; write bench/results/pipeline.json; return what was written."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mlopshub-pipeline-bench-") as temporary:
        folder = Path(temporary)
        with tracking_server(folder) as tracking_uri:
            model = log_model(tracking_uri, folder)
            service = Service(folder / "pipeline", tracking_uri, model["holdout_csv"])
            try:
                publish = bench_publish(service, tracking_uri, model, folder, publishes)
                print("publish:", json.dumps(publish), flush=True)
                throughput = bench_throughput(service, tracking_uri, model, folder, seconds, concurrency)
                switches = bench_switches(service, model, concurrency)
                print("switches:", json.dumps(switches), flush=True)
            finally:
                service.close()
            memory = bench_memory(model, tracking_uri, folder)
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "command": "python -m bench --only pipeline",
        "publish": publish,
        "throughput": throughput,
        "memory": memory,
        "switches": switches,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
