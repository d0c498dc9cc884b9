"""The idle culler stops a workspace nobody uses (a second platform, side by side)."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from platform_under_test import Platform, reachable_dir  # noqa: E402

pytestmark = pytest.mark.integration


def test_culler_stops_an_idle_server(tmp_path_factory, platform):
    quick = Platform(
        reachable_dir(tmp_path_factory), extra_env={"MLOPSHUB_CULL_TIMEOUT": "20", "MLOPSHUB_CULL_EVERY": "5"}
    ).up()
    try:
        assert quick.port != platform.port  # two instances side by side
        quick.add_user("idle", "sme-credit")
        quick.start("idle", "python-cpu")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and quick.api("GET", "users/idle").json()["servers"]:
            time.sleep(2)
        assert quick.api("GET", "users/idle").json()["servers"] == {}
    finally:
        quick.down()
