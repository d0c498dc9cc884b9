"""What the adversarial suite shares: the people of each role and how they act (fixtures are in conftest.py).

Everything runs against the session's real platform (``platform`` in
tests/conftest.py). Attackers act from inside their own workspace kernels
(``Platform.execute``), as a data scientist would; the test process (root)
only sets the stage and reads the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from release_flow import Pipeline, make_project, train
from testing_support import until  # noqa: F401  (the one wait helper, for the suite)

CREDIT = "sme-credit"
RETAIL = "retail-scoring"
#: The model the catalog grants the consumer system loan-origination (profiles/teams.yaml).
GRANTED_MODEL = "credit-default"
CONSUMER = "loan-origination"


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


def live_endpoints(platform, reader: Person) -> list[dict]:
    """The pipeline's live endpoints, as ``reader`` (a validator) sees them."""
    response = requests.get(f"{platform.url}/services/pipeline/api/endpoints", headers=reader.headers(), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["endpoints"]


@contextmanager
def member_with_workspace(platform: Any, name: str, team: str) -> Iterator[tuple[str, str]]:
    """``name`` in ``team`` with a running workspace (and the team's remote its start makes): (name, token)."""
    platform.add_user(name, team)
    platform.start(name, "python-cpu")
    try:
        yield name, platform.token_for(name)
    finally:
        platform.stop(name)


def release_to_production(platform: Any, publisher: DataScientist, validator: Person, run_id: str, model: str) -> dict:
    """``run_id`` published as ``model`` by ``publisher``, approved by ``validator``: the release in production."""
    pipeline = publisher.pipeline(platform)
    release = pipeline.wait(pipeline.publish(run_id, model)["id"])
    assert release["state"] == "awaiting_approval", (release["reason"], release["gate_results"])
    approved = validator.pipeline(platform).call("POST", f"releases/{release['id']}/approve", {"comment": "ok"})
    assert approved.status_code == 200, approved.text
    release = pipeline.wait(release["id"], {"production", "failed"})
    assert release["state"] == "production", release
    return release


def consumer_token(platform: Any) -> str:
    """The hub token `mlopshub up` wrote for the consumer system granted GRANTED_MODEL."""
    return (platform.data_dir / "secrets" / "consumers" / f"{CONSUMER}.token").read_text().strip()
