"""Reliability: each part of a running platform killed with SIGKILL while a consumer system scores against a
production endpoint and a data scientist has a kernel with state. Each part comes back by itself; the
endpoint loses no request while the pipeline, MLflow, the hub or a model server is away; the kernel keeps its
variables through a hub crash and a `mlopshub restart`; no release, run, registered model or audit entry is lost.

The platform is this module's own (the parts are killed), in a fresh data dir. Recovery times are printed
(`-s`); `make bench` measures them (bench/recovery_bench.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests
from fault_injection import Load, children_named, kill_part, kill_process, part_pid, supervisor_state
from platform_under_test import Platform, reachable_dir
from release_flow import FORMATS
from testing_support import until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))

from adversary import (  # noqa: E402
    CREDIT,
    GRANTED_MODEL,
    Person,
    consumer_token,
    data_scientist,
    live_endpoints,
    release_to_production,
)

pytestmark = pytest.mark.integration

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    running = Platform(reachable_dir(tmp_path_factory)).up()
    yield running
    running.down()


@pytest.fixture(scope="module")
def world(platform):
    """credit-default in production (alice published, victor approved), the consumer's token, alice's kernel."""
    alice = data_scientist(platform, "alice", CREDIT, seed=1, cs=(1.0,))
    platform.add_user("victor", "model-validators")
    victor = Person("victor", platform.token_for("victor"))
    release = release_to_production(platform, alice, victor, alice.runs[0], GRANTED_MODEL)
    kernel = platform.open_notebook("alice", alice.token, "credit/state.ipynb", NOTEBOOK, "python3")
    platform.run_in_kernel("alice", alice.token, kernel, "x = 41")
    consumer = consumer_token(platform)
    return {"alice": alice, "victor": victor, "release": release, "kernel": kernel, "consumer": consumer}


def load(platform, world) -> Load:
    url = f"{platform.url}/services/models/{GRANTED_MODEL}/production/invocations"
    return Load(url, world["consumer"], FORMATS["dataframe_split"])


def settle(seconds: float = 3.0) -> None:
    """Let the load run on a little after a recovery, so a late failure is seen too."""
    time.sleep(seconds)


def restarted(hub: int, name: str, old: int) -> list:
    return [process for process in children_named(hub, name) if process.pid != old]


@pytest.mark.parametrize("part", ["pipeline", "mlflow"])
def test_the_endpoint_loses_no_request_while_the_pipeline_or_mlflow_is_killed(platform, world, part):
    with load(platform, world) as traffic:
        until(lambda: traffic.served() > 5, "the endpoint answering before the kill")
        recovery = kill_part(platform.data_dir, part)
        settle()
    print(f"\n{part}: healthy again {recovery:.1f} s after SIGKILL; {traffic.served()} requests served meanwhile")
    assert traffic.failures() == [], traffic.failures()[:5]
    assert {version for _, _, version in traffic.answers} == {world["release"]["version"]}


def test_a_hub_crash_keeps_the_workspace_its_kernel_state_and_the_endpoint(platform, world):
    alice = world["alice"]
    server_pid = platform.api("GET", "users/alice").json()["servers"][""]["state"]["pid"]
    with load(platform, world) as traffic:
        until(lambda: traffic.served() > 5, "the endpoint answering before the kill")
        recovery = kill_part(platform.data_dir, "hub")
        settle()
    print(f"\nhub: healthy again {recovery:.1f} s after SIGKILL; {traffic.served()} requests served meanwhile")
    assert traffic.failures() == [], traffic.failures()[:5]
    # The same server (not a new one), its kernel with its variables.
    assert platform.api("GET", "users/alice").json()["servers"][""]["state"]["pid"] == server_pid
    assert platform.run_in_kernel("alice", alice.token, world["kernel"], "print(x + 1)").strip() == "42"


def test_a_killed_model_server_or_zygote_costs_no_request(platform, world):
    models = part_pid(platform.data_dir, "models")
    (served,) = [e for e in live_endpoints(platform, world["victor"]) if e["model"] == GRANTED_MODEL]
    with load(platform, world) as traffic:
        until(lambda: traffic.served() > 5, "the endpoint answering before the kill")
        kill_process(served["pid"])
        settle()
        zygotes = children_named(models, "mlopshub.serving.zygote")
        assert zygotes, "the models service forks its servers from a zygote"
        kill_process(zygotes[0].pid)
        settle(10)
    assert traffic.failures() == [], traffic.failures()[:5]
    (again,) = [e for e in live_endpoints(platform, world["victor"]) if e["model"] == GRANTED_MODEL]
    assert again["pid"] != served["pid"] and again["version"] == served["version"]


@pytest.mark.parametrize("part", ["proxy", "models"])
def test_the_proxy_and_the_models_service_come_back_with_their_routes(platform, world, part):
    alice = world["alice"]
    with load(platform, world) as traffic:
        until(lambda: traffic.served() > 5, "the endpoint answering before the kill")
        killed = time.monotonic()
        recovery = kill_part(platform.data_dir, part)
        # Answering again: the proxy has its routes back (the hub restores them), the models service its servers.
        until(lambda: traffic.answers[-1][0] > killed and traffic.answers[-1][1].startswith("200"), "answering")
        answering = time.monotonic() - killed
        settle()
    print(f"\n{part}: healthy {recovery:.1f} s, endpoint answering {answering:.1f} s after SIGKILL")
    late = [answer for answer in traffic.failures() if answer[0] > killed + answering]
    assert late == [], late[:5]
    assert platform.run_in_kernel("alice", alice.token, world["kernel"], "print(x)").strip() == "41"


def test_the_hub_starts_the_culler_and_the_membership_service_again(platform, world):
    hub = part_pid(platform.data_dir, "hub")
    for name in ("jupyterhub_idle_culler", "mlopshub.services.membership"):
        (service,) = children_named(hub, name)
        kill_process(service.pid)
        until(lambda n=name, old=service.pid: restarted(hub, n, old), f"{name} started again by the hub")


def test_restart_keeps_workspaces_and_endpoints_and_nothing_is_lost(platform, world):
    alice = world["alice"]
    with load(platform, world) as traffic:
        until(lambda: traffic.served() > 5, "the endpoint answering before the restart")
        started = time.monotonic()
        result = platform.cli("restart", timeout=1800)
        took = time.monotonic() - started
        settle()
    print(f"\nrestart of mlflow, pipeline and hub: {took:.1f} s")
    assert "workspaces kept" in result.stdout
    assert traffic.failures() == [], traffic.failures()[:5]
    assert platform.run_in_kernel("alice", alice.token, world["kernel"], "print(x + 1)").strip() == "42"
    # Nothing lost: the release in production, its registered version, alice's run, an intact audit chain.
    pipeline = alice.pipeline(platform)
    release = pipeline.call("GET", f"releases/{world['release']['id']}").json()
    assert release["state"] == "production"
    mlflow_headers = {"Authorization": f"token {alice.token}", "X-MLFLOW-WORKSPACE": CREDIT}
    run = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/runs/get",
        params={"run_id": alice.runs[0]},
        headers=mlflow_headers,
        timeout=30,
    )
    assert run.status_code == 200, run.text
    registered = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/registered-models/get",
        params={"name": GRANTED_MODEL},
        headers=mlflow_headers,
        timeout=30,
    )
    assert registered.status_code == 200, registered.text
    assert platform.workspace("alice", "api/contents/credit/data/loans.csv.dvc", alice.token).status_code == 200
    audit = platform.cli("audit", "verify", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert supervisor_state(platform.data_dir)["state"] == "ready"
