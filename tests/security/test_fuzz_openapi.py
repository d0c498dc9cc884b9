"""Schemathesis over the pipeline's and the Lab extension's OpenAPI documents, on the running platform: no 5xx.

Requests are generated from each operation's schema (valid and invalid
parameters and bodies, bounded in number so that a run stays under two
minutes) and sent with a team member's token: to the pipeline through the
hub's public address, to the Lab extension of a real workspace through
``/user/<name>/mlopshub-lab/...``. A 5xx is a request the server did not
expect; every malformed input must be a 4xx naming what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
import yaml
from adversary import CREDIT, member_with_workspace
from hypothesis import HealthCheck, Phase

pytestmark = pytest.mark.integration

LAB_OPENAPI = Path(__file__).resolve().parents[2] / "extensions" / "mlopshub-lab" / "mlopshub_lab" / "openapi.yaml"
#: Examples per operation: enough to try each parameter's edges, few enough for < 2 minutes per document.
EXAMPLES = 12


def server_errors(schema, base_url: str, token: str, examples: int = EXAMPLES) -> list[str]:
    """Every operation of ``schema`` called ``examples`` times at ``base_url``; the answers that were 5xx."""
    found: dict[str, str] = {}
    session = requests.Session()
    headers = {"Authorization": f"token {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def call(case) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
            if response.status_code >= 500:
                key = f"{case.method.upper()} {case.operation.path} -> {response.status_code}"
                sent = f"{case.formatted_path} {case.query or ''} {case.body!r:.200}"
                found.setdefault(key, f"{sent}: {response.text[:300]}")

        call()
    return [f"{key}: {example}" for key, example in sorted(found.items())]


def test_the_pipeline_api_answers_no_5xx(platform, alice):
    document = requests.get(f"{platform.url}/services/pipeline/openapi.json", timeout=30)
    assert document.status_code == 200, document.text
    schema = schemathesis.openapi.from_dict(document.json())
    errors = server_errors(schema, f"{platform.url}/services/pipeline", alice.token)
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def fran(platform):
    """A member of sme-credit whose workspace is fuzzed (so no other test's project is touched)."""
    with member_with_workspace(platform, "fran", CREDIT) as member:
        yield member


def test_the_lab_extension_answers_no_5xx(platform, fran):
    name, token = fran
    schema = schemathesis.openapi.from_dict(yaml.safe_load(LAB_OPENAPI.read_text()))
    errors = server_errors(schema, f"{platform.url}/user/{name}", token)
    assert not errors, "\n".join(errors)
