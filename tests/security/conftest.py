"""Fixtures of the adversarial suite: a real platform of its own, the people of each role, a served model.

Attackers act from inside their own workspace kernels (``Platform.execute``),
as a data scientist would; the test process (root) only sets the stage and
reads the outcome. Constants and helpers are in
adversary.py (a module of its own: pytest loads every conftest.py under the
same name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite is a package (see __init__.py); its modules import their helpers as `adversary`, as the fault suite
# and the recovery bench do.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversary import (  # noqa: E402
    CONSUMER,
    CREDIT,
    GRANTED_MODEL,
    RETAIL,
    DataScientist,
    Person,
    consumer_token,
    data_scientist,
    release_to_production,
)
from platform_under_test import Platform, reachable_dir  # noqa: E402


@pytest.fixture(scope="package")
def platform(tmp_path_factory):
    """A platform of the suite's own (not the integration tests'): attacks change what they touch (model copies,
    servers, memberships), and its users and models must not meet theirs."""
    running = Platform(reachable_dir(tmp_path_factory)).up()
    yield running
    running.down()


@pytest.fixture(scope="package")
def alice(platform) -> DataScientist:
    """A member of sme-credit with a workspace, a pushed project and two trained runs."""
    return data_scientist(platform, "alice", CREDIT, seed=1, cs=(1.0, 0.5))


@pytest.fixture(scope="package")
def bob(platform) -> DataScientist:
    """A member of retail-scoring with a workspace and a pushed project: the usual attacker."""
    return data_scientist(platform, "bob", RETAIL, seed=2, cs=())


@pytest.fixture(scope="package")
def victor(platform) -> Person:
    """A model validator (model risk), no team."""
    platform.add_user("victor", "model-validators")
    return Person("victor", platform.token_for("victor"))


@pytest.fixture(scope="package")
def paula(platform) -> Person:
    """A platform admin (group platform-admins), no team."""
    platform.add_user("paula", "platform-admins")
    return Person("paula", platform.token_for("paula"))


@pytest.fixture(scope="package")
def consumer(platform) -> Person:
    """The consumer system loan-origination, with the service token `mlopshub up` wrote for it."""
    return Person(CONSUMER, consumer_token(platform))


@pytest.fixture(scope="package")
def anonymous() -> Person:
    return Person("anonymous", None)


@pytest.fixture(scope="package")
def in_production(platform, alice, victor) -> dict:
    """alice's first run released as credit-default and approved by victor: live in staging and production."""
    release = release_to_production(platform, alice, victor, alice.runs[0], GRANTED_MODEL)
    pipeline = alice.pipeline(platform)
    # A second version awaiting approval, so that the staging endpoint is live too (promotion stops staging).
    second = pipeline.wait(pipeline.publish(alice.runs[1], GRANTED_MODEL)["id"])
    assert second["state"] == "awaiting_approval", (second["reason"], second["gate_results"])
    return {**release, "staging_release": second["id"]}
