"""Users of the integration tests (the platform fixture is in tests/conftest.py)."""

import pytest


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
