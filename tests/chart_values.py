"""Values files checked as Helm checks them before it renders: merged over the chart's defaults, then its schema.

Helm coalesces the chart's ``values.yaml`` with each ``-f`` file in order (maps
merge key by key, lists and scalars are replaced, a ``null`` removes the key)
and validates the result against the chart's ``values.schema.json`` (or, for
Zero to JupyterHub, ``values.schema.yaml``). The charts' schemas and defaults
are peer artifacts in ``../shared/peers/<chart>/``; a clone without them skips
the tests that need them, naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mlopshub.chart import merge_values

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
VALUES_DIR = REPO / "helm-values"


@dataclass(frozen=True)
class Chart:
    """An upstream chart: where its schema and defaults are, and where they came from (for skip reasons)."""

    name: str
    schema: Path
    defaults: Path
    source: str

    def missing(self) -> str | None:
        """Why this chart's values cannot be checked here (None: they can)."""
        for path in (self.schema, self.defaults):
            if not path.exists():
                return f"{path} not found (peer artifact: {self.source}; see ../shared/peers/README.md)"
        return None

    def validator(self) -> jsonschema.Draft7Validator:
        text = self.schema.read_text()
        schema = json.loads(text) if self.schema.suffix == ".json" else yaml.safe_load(text)
        jsonschema.Draft7Validator.check_schema(schema)
        return jsonschema.Draft7Validator(schema)

    def values(self, *files: Path | Mapping[str, Any]) -> dict[str, Any]:
        """The chart's defaults with ``files`` (paths or mappings) merged over them, in order."""
        merged = load_yaml(self.defaults)
        for item in files:
            merged = helm_merge(merged, load_yaml(item) if isinstance(item, Path) else item)
        return merged

    def errors(self, *files: Path | Mapping[str, Any]) -> list[str]:
        """Every schema violation of the merged values, as ``<key path>: <message>``."""
        return schema_errors(self.validator(), self.values(*files))


Z2JH = Chart(
    "jupyterhub",
    PEERS / "z2jh" / "values.schema.yaml",
    PEERS / "z2jh" / "values.yaml",
    "jupyterhub/zero-to-jupyterhub-k8s jupyterhub/values.schema.yaml, commit 48ea50e3",
)
MLFLOW = Chart(
    "mlflow",
    PEERS / "mlflow-chart" / "values.schema.json",
    PEERS / "mlflow-chart" / "values.yaml",
    "community-charts/helm-charts charts/mlflow 1.11.5, commit ae700fff",
)
CNPG_CLUSTER = Chart(
    "cluster",
    PEERS / "cnpg-cluster-chart" / "values.schema.json",
    PEERS / "cnpg-cluster-chart" / "values.yaml",
    "cloudnative-pg/charts charts/cluster 0.8.1, commit b21ad2da",
)


def helm_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` as Helm coalesces values: the product's own merge (``mlopshub.chart``), which
    ``mlopshub profiles render`` uses, so the tests check values the way the product reads them."""
    return merge_values(base, override)


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def schema_errors(validator: jsonschema.Draft7Validator, values: Mapping[str, Any]) -> list[str]:
    """Every violation as ``<key path>: <message>``, naming the unknown keys when there are any."""
    messages = []
    for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(map(str, error.absolute_path)) or "(top)"
        messages.append(f"{where}: {error.message}")
    return messages
