"""One real platform per test session, shared by the integration and browser tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_under_test import Platform, reachable_dir  # noqa: E402


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The platform as `make up` starts it, on a free port in a fresh data dir."""
    running = Platform(reachable_dir(tmp_path_factory)).up()
    yield running
    running.down()
