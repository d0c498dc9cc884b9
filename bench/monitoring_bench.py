"""Production monitoring's costs, each beside a baseline measured in the same run (issue 15).

1. **Capture on the request path.** One staging endpoint through the pipeline service as
   bench/pipeline_bench.py runs it (hub token check, authorisation, the proxy, a forked model server), under
   the same load from a separate process: capture off (requests counted in the Prometheus metrics only),
   capture on (every request also queued and written to the team's store by the writer thread), and
   ``mlflow models serve`` of the same version, interleaved (off, on, mlflow, off, on, mlflow). Targets:
   capture on gives at least 1.0x the throughput of ``mlflow models serve`` with a p99 at most 1.2x, and costs
   at most 5% of throughput against capture off.
2. **Drift over a million captured rows.** 10,000 captured requests of 100 rows x 50 features written to a real
   team store (outside the timing), then :meth:`mlopshub.monitoring.monitor.Monitor.drift`, the code the
   pipeline runs: read from SQLite, decode, accumulate, test, keep the result. Target: under 30 s. Then the
   endpoint's throughput while the same check runs in another process at the pipeline's drift priority, SCHED_IDLE (the
   pipeline and the models service are separate processes), against the throughput just before.

``python -m bench --only monitoring`` writes bench/results/monitoring.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mlopshub.monitoring import stats
from mlopshub.monitoring.capture import Capture
from mlopshub.monitoring.endpoints import observer
from mlopshub.monitoring.monitor import Monitor, Served
from mlopshub.monitoring.store import MonitoringStore, store_path
from mlopshub.serving.proxy import Answered

from .drift_bench import population, records
from .pipeline_bench import (
    ROOT,
    Service,
    answer_once,
    combined,
    interleaved,
    log_model,
    measured,
    mlflow_serve,
    run_load,
    tracking_server,
    wait_for_url,
)

RESULTS = Path(__file__).resolve().parent / "results"
TEAM = "bench"
DRIFT_TARGET_SECONDS = 30.0


class Toggle:
    """The endpoints' monitoring hook, with the capture switched on and off between load runs."""

    def __init__(self, capture: Capture):
        self.on = observer(capture, lambda model: TEAM)
        self.off = observer(None, lambda model: TEAM)
        self.capturing = False

    def __call__(self, answered: Answered) -> None:
        (self.on if self.capturing else self.off)(answered)


def bench_capture(seconds: float, concurrency: int, folder: Path) -> dict[str, Any]:
    with tracking_server(folder) as tracking_uri:
        model = log_model(tracking_uri, folder)
        capture = Capture(folder / "monitoring")
        toggle = Toggle(capture)
        service = Service(folder / "pipeline", tracking_uri, model["holdout_csv"], observe=toggle)
        try:
            release_id = service.publish(model["uri"], "bench-capture")
            release = service.wait_for(release_id, "awaiting_approval")
            url = service.endpoint("bench-capture", "staging")
            answer_once(url, model["body"], token="ann")

            def ours(capturing: bool) -> dict:
                toggle.capturing = capturing
                return measured(url, model["body"], seconds, concurrency, token="ann")

            with mlflow_serve(f"models:/bench-capture/{release['version']}", tracking_uri, folder / "serve.log") as (
                process,
                base,
            ):
                wait_for_url(f"{base}/ping", timeout=120, process=process)
                runs = interleaved({
                    "off": lambda: ours(False),
                    "on": lambda: ours(True),
                    "mlflow": lambda: measured(f"{base}/invocations", model["body"], seconds, concurrency),
                })  # fmt: skip
            toggle.capturing = False
            capture.flush(30)
            written = capture.store(TEAM).counts("bench-capture", "staging")
            # While a drift check runs in another process, as the pipeline runs it beside the models service.
            toggle.capturing = True
            store_file = make_store(folder / "drift", 1_000_000, 100, 50)
            before = run_load(url, model["body"], seconds, concurrency, "ann")
            checker = drift_process(store_file)
            during = run_load(url, model["body"], seconds, concurrency, "ann")
            checked = json.loads(checker.communicate(timeout=600)[0].strip().splitlines()[-1])
        finally:
            service.close()
            capture.close()

    off, on, baseline = combined(runs["off"]), combined(runs["on"]), combined(runs["mlflow"])
    return {
        "capture_off": off,
        "capture_on": on,
        "mlflow_models_serve": baseline,
        "on_vs_off_throughput": round(on["requests_per_second"] / off["requests_per_second"], 3),
        "on_vs_mlflow_throughput": round(on["requests_per_second"] / baseline["requests_per_second"], 3),
        "on_vs_mlflow_p99": round(on["p99_ms"] / baseline["p99_ms"], 3),
        "captured": written["captured"],
        "dropped": written["dropped"],
        "runs": runs,
        "rows_per_request": len(model["body"]["dataframe_split"]["data"]),
        "drift_check": checked,
        "throughput_before_drift": before,
        "throughput_during_drift": during,
        "during_vs_before_throughput": round(during["requests_per_second"] / before["requests_per_second"], 3),
        "during_vs_before_p99": round(during["p99_ms"] / before["p99_ms"], 3),
    }


def make_store(folder: Path, rows: int, per_request: int, features: int) -> Path:
    """A team store holding ``rows`` captured rows of ``features`` (the first 5 shifted) and its baseline."""
    columns = [f"f{i:02d}" for i in range(features)]
    means, stds = population(features, seed=1)
    rng = np.random.default_rng(2)
    training = rng.normal(means, stds, size=(100_000, features))
    import pandas as pd

    summary = stats.baseline(pd.DataFrame(training, columns=columns))
    store = MonitoringStore(store_path(folder, TEAM))
    store.save_baseline("scored", "1", "r1", {**summary, "data": {"data/train.csv": "0" * 32}})
    shift = np.zeros(features)
    shift[:5] = 1.0
    now = time.time()
    number = 0
    for batch in records(rows, per_request, columns, means, stds, shift, seed=3):
        store.add_captures([
            (f"q{number + i}", "scored", "1", "production", now - 60, 2.0, 200, per_request, inputs, outputs, "online")
            for i, (inputs, outputs) in enumerate(batch)
        ])  # fmt: skip
        number += len(batch)
    return store.path


def check_drift(path: Path) -> dict[str, Any]:
    """What the pipeline does for one drift check over the last day, timed, in this process."""
    monitor = Monitor(path.parent)
    served = Served("scored", TEAM, "production", "1", 0.0, None)
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.monotonic()
    result = monitor.drift(served, "day", time.time() - 86400, time.time(), {})
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "rows": result["rows"],
        "features": len(result["features"]),
        "drifted": sorted(item["name"] for item in result["features"] if item["drifted"]),
        "rss_growth_mib": round((process.memory_info().rss - before) / 2**20, 1),
        "target_seconds": DRIFT_TARGET_SECONDS,
    }


def drift_process(path: Path) -> subprocess.Popen:
    """:func:`check_drift` in a process of its own at the pipeline's drift priority (``lower_priority``)."""
    code = (
        "import json, sys; from pathlib import Path; from mlopshub.monitoring.monitor import lower_priority; "
        "priority = lower_priority(); from bench.monitoring_bench import check_drift; "
        "print(json.dumps({**check_drift(Path(sys.argv[1])), 'priority': priority}))"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def run(seconds: float = 15.0, concurrency: int = 8) -> dict[str, Any]:
    """Measure both; write bench/results/monitoring.json; return what was written."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mlopshub-monitoring-bench-") as temporary:
        folder = Path(temporary)
        figures = bench_capture(seconds, concurrency, folder)
        # The drift check alone, on a quiet machine (the load above has stopped).
        alone = check_drift(store_path(folder / "drift", TEAM))
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "command": "python -m bench --only monitoring",
        "capture": {k: v for k, v in figures.items() if not k.startswith(("drift", "throughput_", "during_"))},
        "drift": {
            "alone": alone,
            "beside_load": figures["drift_check"],
            "endpoint_before": figures["throughput_before_drift"],
            "endpoint_during": figures["throughput_during_drift"],
            "during_vs_before_throughput": figures["during_vs_before_throughput"],
            "during_vs_before_p99": figures["during_vs_before_p99"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "monitoring.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
