"""One real platform for the integration tests of a session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_under_test import Platform, reachable_dir  # noqa: E402


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    running = Platform(reachable_dir(tmp_path_factory)).up()
    yield running
    running.down()


@pytest.fixture(scope="session")
def alice(platform):
    """A member of sme-credit."""
    platform.add_user("alice", "sme-credit")
    return "alice"


@pytest.fixture(scope="session")
def bob(platform):
    """A member of retail-scoring."""
    platform.add_user("bob", "retail-scoring")
    return "bob"
