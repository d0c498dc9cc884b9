"""What the adversarial suite shares: the people of each role, a trained model, a served one, one wait helper.

Everything runs against the session's real platform (``platform`` in
tests/conftest.py). Attackers act from inside their own workspace kernels
(``Platform.execute``), as a data scientist would; the test process (root)
only sets the stage and reads the outcome.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from release_flow import make_project, train  # noqa: E402
from test_release_pipeline import Pipeline  # noqa: E402  (the pipeline API as one user calls it)

T = TypeVar("T")
CREDIT = "sme-credit"
RETAIL = "retail-scoring"
#: The model the catalog grants the consumer system loan-origination (profiles/teams.yaml).
GRANTED_MODEL = "credit-default"
CONSUMER = "loan-origination"


def until(condition: Callable[[], T], what: str, timeout: float = 120, every: float = 0.5) -> T:
    """Wait for ``condition()`` to be truthy and return it; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what} (last: {value!r})")
        time.sleep(every)


@dataclass
class Person:
    """A hub user (or a consumer system) with the token they call with; ``token=None`` is anonymous."""

    name: str
    token: str | None
    team: str | None = None

    def pipeline(self, platform: Any) -> Pipeline:
        return Pipeline(platform, self.token or "")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


@dataclass
class DataScientist(Person):
    """A team member with a running workspace, a versioned project ``~/credit`` and trained runs."""

    runs: tuple[str, ...] = ()

    def run(self, platform: Any, code: str) -> str:
        """Run ``code`` in a fresh kernel of their workspace; its stdout."""
        return platform.execute(self.name, self.token, code)


def data_scientist(platform: Any, name: str, team: str, seed: int, cs: tuple[float, ...]) -> DataScientist:
    platform.add_user(name, team)
    platform.start(name, "python-cpu")
    token = platform.token_for(name)
    assert "project ready" in platform.execute(name, token, make_project(seed=seed))
    runs = tuple(platform.execute(name, token, train(c)).strip().splitlines()[-1] for c in cs)
    return DataScientist(name, token, team, runs)


@pytest.fixture(scope="session")
def alice(platform) -> DataScientist:
    """A member of sme-credit with a workspace, a pushed project and two trained runs."""
    return data_scientist(platform, "alice", CREDIT, seed=1, cs=(1.0, 0.5))


@pytest.fixture(scope="session")
def bob(platform) -> DataScientist:
    """A member of retail-scoring with a workspace and a pushed project: the usual attacker."""
    return data_scientist(platform, "bob", RETAIL, seed=2, cs=())


@pytest.fixture(scope="session")
def victor(platform) -> Person:
    """A model validator (model risk), no team."""
    platform.add_user("victor", "model-validators")
    return Person("victor", platform.token_for("victor"))


@pytest.fixture(scope="session")
def paula(platform) -> Person:
    """A platform admin (group platform-admins), no team."""
    platform.add_user("paula", "platform-admins")
    return Person("paula", platform.token_for("paula"))


@pytest.fixture(scope="session")
def consumer(platform) -> Person:
    """The consumer system loan-origination, with the service token `mlopshub up` wrote for it."""
    token = (platform.data_dir / "secrets" / "consumers" / f"{CONSUMER}.token").read_text().strip()
    return Person(CONSUMER, token)


@pytest.fixture(scope="session")
def anonymous() -> Person:
    return Person("anonymous", None)


@pytest.fixture(scope="session")
def in_production(platform, alice, victor) -> dict:
    """alice's first run released as credit-default and approved by victor: live in staging and production."""
    pipeline = alice.pipeline(platform)
    release = pipeline.wait(pipeline.publish(alice.runs[0], GRANTED_MODEL)["id"])
    assert release["state"] == "awaiting_approval", (release["reason"], release["gate_results"])
    approved = victor.pipeline(platform).call("POST", f"releases/{release['id']}/approve", {"comment": "ok"})
    assert approved.status_code == 200, approved.text
    release = pipeline.wait(release["id"], {"production", "failed"})
    assert release["state"] == "production", release
    # A second version awaiting approval, so that the staging endpoint is live too (promotion stops staging).
    second = pipeline.wait(pipeline.publish(alice.runs[1], GRANTED_MODEL)["id"])
    assert second["state"] == "awaiting_approval", (second["reason"], second["gate_results"])
    return {**release, "staging_release": second["id"]}


def live_endpoints(platform, reader: Person) -> list[dict]:
    """The pipeline's live endpoints, as ``reader`` (a validator) sees them."""
    response = requests.get(f"{platform.url}/services/pipeline/api/endpoints", headers=reader.headers(), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["endpoints"]
