"""Shared test settings: where the repo and its sample catalog are."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "profiles"


@pytest.fixture
def repo() -> Path:
    return REPO
