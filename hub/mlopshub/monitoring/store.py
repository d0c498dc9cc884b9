"""A team's monitoring store: ``<pipeline dir>/monitoring/<team>.sqlite``, one SQLite file per team.

What is in it, and who writes it:

* ``captures``: one row per captured request of an endpoint (or batch run) of the team's models, with its
  request id, model, version, stage, time, latency, status, and the request's rows and the model's answers as
  JSON; excluded columns are never written. The models service writes them (:mod:`.capture`).
* ``outcomes``: the true outcome a consumer system posted for a captured request (the models service).
* ``dropped``: captures the models service could not queue, per model and stage (it never blocks a request).
* ``settings``: per model, the share of requests captured, how many days captures are kept and the columns
  left out (the pipeline, from the team; the models service reads them every few seconds).
* ``baselines``: per model version, the distributions of its training data and hold-out predictions, taken
  at release (the pipeline).
* ``drift``: every drift check's result (the pipeline), so that the PSI of each feature can be shown over time.

One file per team keeps each team's captured data apart on disk as the API keeps it apart: the pipeline
opens a team's file only for a caller who may read that team's models. The folder is the platform's own
(0700): no workspace can read or write it. Two processes write (the models service and the pipeline): each
write is one short ``BEGIN IMMEDIATE`` transaction in WAL mode, so readers never wait for writers.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlopshub.sqlite_schema import Schema, SqliteFile

#: Seconds a writer waits for the other process's transaction.
BUSY_TIMEOUT = 30.0
#: The capture settings of a model nobody has set: everything, kept 90 days, no column left out.
DEFAULT_SAMPLE_RATE = 1.0
DEFAULT_RETENTION_DAYS = 90
#: Bounds of the settings (a year's worth of days times ten is surely a typo).
MAX_RETENTION_DAYS = 3650
MAX_EXCLUDED_COLUMNS = 200


def read_json(text: str | bytes) -> Any:
    """JSON text as Python, or None when it is not JSON: a request body, or what :func:`write_json` wrote.

    orjson reads it (decoding is most of the capture writer's and of a drift check's time); what orjson
    refuses and Python's parser reads (``NaN``, ``Infinity``: MLflow's scoring server accepts them) is read
    by the latter.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def write_json(value: Any) -> str | None:
    """``value`` as strict JSON text, a float that is not a number (NaN) as ``null``; None when it cannot be.

    ``value`` is what :func:`read_json` read from a caller: orjson writes it, and Python's writer what orjson
    refuses (an integer past 64 bits, nesting past orjson's 254 levels).
    """
    try:
        return orjson.dumps(value, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(_finite(value), default=str, allow_nan=False)
    except (ValueError, RecursionError):
        return None


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


SCHEMA = Schema(
    "monitoring store",
    (
        (
            """CREATE TABLE captures (
                id INTEGER PRIMARY KEY,
                request_id TEXT NOT NULL UNIQUE,
                model TEXT NOT NULL,
                version TEXT NOT NULL,
                stage TEXT NOT NULL,
                at REAL NOT NULL,
                latency_ms REAL NOT NULL,
                status INTEGER NOT NULL,
                rows INTEGER NOT NULL,
                inputs TEXT,
                outputs TEXT,
                source TEXT NOT NULL DEFAULT 'online'
            )""",
            "CREATE INDEX captures_by_model ON captures (model, stage, at)",
            """CREATE TABLE outcomes (
                request_id TEXT PRIMARY KEY REFERENCES captures (request_id) ON DELETE CASCADE,
                model TEXT NOT NULL,
                value TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE TABLE dropped (model TEXT NOT NULL, stage TEXT NOT NULL, count INTEGER NOT NULL, "
            "PRIMARY KEY (model, stage))",
            "CREATE TABLE settings (model TEXT PRIMARY KEY, sample_rate REAL NOT NULL, "
            "retention_days INTEGER NOT NULL, exclude_columns TEXT NOT NULL, changed_by TEXT, changed_at REAL)",
            "CREATE TABLE baselines (model TEXT NOT NULL, version TEXT NOT NULL, release_id TEXT, "
            "created REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (model, version))",
            """CREATE TABLE drift (
                id INTEGER PRIMARY KEY,
                model TEXT NOT NULL,
                version TEXT NOT NULL,
                stage TEXT NOT NULL,
                window TEXT NOT NULL,
                at REAL NOT NULL,
                drifted INTEGER NOT NULL,
                result TEXT NOT NULL
            )""",
            "CREATE INDEX drift_by_model ON drift (model, stage, at)",
        ),
    ),
)


class SettingsError(ValueError):
    """Capture settings that are not valid: ``field`` names the one at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Settings:
    """How a model's traffic is captured."""

    sample_rate: float = DEFAULT_SAMPLE_RATE
    retention_days: int = DEFAULT_RETENTION_DAYS
    exclude_columns: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exclude_columns": list(self.exclude_columns)}

    @classmethod
    def parse(cls, body: Mapping[str, Any], current: Settings | None = None) -> Settings:
        """Settings from a request body (fields left out keep ``current``'s), or :class:`SettingsError`."""
        base = current or cls()
        unknown = sorted(set(body) - {"sample_rate", "retention_days", "exclude_columns"})
        if unknown:
            raise SettingsError(unknown[0], f"unknown setting {unknown[0][:100]!r}: sample_rate, retention_days "
                                "and exclude_columns can be set")  # fmt: skip
        rate = body.get("sample_rate", base.sample_rate)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 <= rate <= 1:
            raise SettingsError(
                "sample_rate", "sample_rate must be a number from 0 (capture nothing) to 1 (everything)"
            )
        days = body.get("retention_days", base.retention_days)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
            raise SettingsError(
                "retention_days", f"retention_days must be a whole number of days from 1 to {MAX_RETENTION_DAYS}"
            )
        columns = body.get("exclude_columns", list(base.exclude_columns))
        if not isinstance(columns, list) or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in columns):
            raise SettingsError("exclude_columns", "exclude_columns must be a list of column names (1-200 characters)")
        if len(columns) > MAX_EXCLUDED_COLUMNS:
            raise SettingsError("exclude_columns", f"at most {MAX_EXCLUDED_COLUMNS} columns can be excluded")
        return cls(float(rate), days, tuple(dict.fromkeys(columns)))


class OutcomeError(ValueError):
    """Outcomes refused: ``field`` names the item at fault (``outcomes[2].request_id``), ``status`` the HTTP answer."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field = field
        self.status = status


def store_path(folder: str | Path, team: str) -> Path:
    """Where ``team``'s store is (team names are the catalog's: ``[a-z0-9-]``, checked by the caller)."""
    return Path(folder) / f"{team}.sqlite"


class MonitoringStore:
    """One team's monitoring store. Every method opens its own connection: any thread may call any of them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Foreign keys on: an outcome goes with its capture when retention deletes it.
        self._file = SqliteFile(self.path, SCHEMA.what, busy_timeout=BUSY_TIMEOUT, foreign_keys=True)
        self._file.migrate(SCHEMA)

    # --- the file ---

    def _connect(self) -> sqlite3.Connection:
        return self._file.connect()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.transaction()

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.reading()

    # --- the models service's writes ---

    def add_captures(
        self, rows: Sequence[tuple[Any, ...]], dropped: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        """Write captures, each ``(request_id, model, version, stage, at, latency_ms, status, rows, inputs, outputs,
        source)``, and add ``dropped`` counts, in one transaction."""
        with self._transaction() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO captures (request_id, model, version, stage, at, latency_ms, status, rows, "
                "inputs, outputs, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for (model, stage), count in (dropped or {}).items():
                connection.execute(
                    "INSERT INTO dropped (model, stage, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (model, stage) DO UPDATE SET count = count + excluded.count",
                    (model, stage, count),
                )

    def sweep(self, now: float | None = None) -> int:
        """Delete the captures older than their model's retention (outcomes go with them); how many went."""
        now = time.time() if now is None else now
        settings = self.all_settings()
        removed = 0
        with self._transaction() as connection:
            models = [row[0] for row in connection.execute("SELECT DISTINCT model FROM captures")]
            for model in models:
                days = settings.get(model, Settings()).retention_days
                removed += connection.execute(
                    "DELETE FROM captures WHERE model = ? AND at < ?", (model, now - days * 86400)
                ).rowcount
        return removed

    def add_outcomes(self, model: str, items: Sequence[Mapping[str, Any]], now: float | None = None) -> int:
        """Store the outcomes of ``model``'s captured requests, all or none: :class:`OutcomeError` names the first bad
        item (unknown request id, another model's request, one already given, a value that does not fit its request).
        """
        now = time.time() if now is None else now
        with self._transaction() as connection:
            seen: set[str] = set()
            rows = []
            for index, item in enumerate(items):
                where = f"outcomes[{index}]"
                request_id = item.get("request_id") if isinstance(item, Mapping) else None
                if not isinstance(request_id, str) or not request_id or len(request_id) > 100:
                    raise OutcomeError(f"{where}.request_id", f"{where}.request_id must be the request id an "
                                       "endpoint answered in X-Mlopshub-Request-Id")  # fmt: skip
                if request_id in seen:
                    raise OutcomeError(f"{where}.request_id", f"{where}: request {request_id} is given twice", 409)
                seen.add(request_id)
                found = connection.execute(
                    "SELECT model, rows FROM captures WHERE request_id = ?", (request_id,)
                ).fetchone()
                if found is None or found[0] != model:
                    raise OutcomeError(
                        f"{where}.request_id",
                        f"{where}: no captured request {request_id} of {model} (unknown, not sampled, past its "
                        "retention, or another model's)",
                        404,
                    )
                if connection.execute("SELECT 1 FROM outcomes WHERE request_id = ?", (request_id,)).fetchone():
                    raise OutcomeError(
                        f"{where}.request_id", f"{where}: request {request_id} already has an outcome", 409
                    )
                rows.append((request_id, model, json.dumps(_outcome_values(item, found[1], where)), now))
            connection.executemany("INSERT INTO outcomes (request_id, model, value, at) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    # --- settings and baselines (the pipeline's writes) ---

    def all_settings(self) -> dict[str, Settings]:
        with self._reading() as connection:
            rows = connection.execute("SELECT model, sample_rate, retention_days, exclude_columns FROM settings")
            return {row[0]: Settings(row[1], row[2], tuple(json.loads(row[3]))) for row in rows}

    def settings(self, model: str) -> Settings:
        return self.all_settings().get(model, Settings())

    def set_settings(self, model: str, settings: Settings, actor: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?, ?, ?, ?, ?)",
                (model, settings.sample_rate, settings.retention_days, json.dumps(list(settings.exclude_columns)),
                 actor, time.time()),
            )  # fmt: skip

    def save_baseline(self, model: str, version: str, release_id: str, data: Mapping[str, Any]) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?, ?)",
                (model, str(version), release_id, time.time(), json.dumps(data, allow_nan=False)),
            )

    def baseline(self, model: str, version: str) -> dict[str, Any] | None:
        with self._reading() as connection:
            row = connection.execute(
                "SELECT data FROM baselines WHERE model = ? AND version = ?", (model, str(version))
            ).fetchone()
        return json.loads(row[0]) if row else None

    # --- reading captures ---

    def traffic(self, model: str, stage: str, since: float, until: float) -> list[tuple[float, float, int]]:
        """``(at, latency_ms, status)`` of every capture of ``model``'s ``stage`` in ``[since, until)``."""
        with self._reading() as connection:
            return connection.execute(
                "SELECT at, latency_ms, status FROM captures WHERE model = ? AND stage = ? AND at >= ? AND at < ? "
                "ORDER BY at",
                (model, stage, since, until),
            ).fetchall()

    def records(
        self, model: str, stage: str, since: float, until: float, version: str | None = None
    ) -> Iterator[tuple[float, str | None, str | None]]:
        """``(at, inputs JSON, outputs JSON)`` of the successful captures in ``[since, until)``, oldest first."""
        clause = " AND version = ?" if version is not None else ""
        parameters: tuple[Any, ...] = (model, stage, since, until) + ((str(version),) if version is not None else ())
        connection = self._connect()
        try:
            yield from connection.execute(
                "SELECT at, inputs, outputs FROM captures WHERE model = ? AND stage = ? AND at >= ? AND at < ? "
                f"AND status < 400{clause} ORDER BY at",
                parameters,
            )
        finally:
            connection.close()

    def outcomes(
        self, model: str, stage: str, since: float, until: float, version: str | None = None
    ) -> list[tuple[float, str | None, str]]:
        """``(at, outputs JSON, outcome JSON)`` of the captures in the period that have an outcome."""
        clause = " AND c.version = ?" if version is not None else ""
        parameters: tuple[Any, ...] = (model, stage, since, until) + ((str(version),) if version is not None else ())
        with self._reading() as connection:
            return connection.execute(
                "SELECT c.at, c.outputs, o.value FROM captures c JOIN outcomes o ON o.request_id = c.request_id "
                f"WHERE c.model = ? AND c.stage = ? AND c.at >= ? AND c.at < ?{clause} ORDER BY c.at",
                parameters,
            ).fetchall()

    def counts(self, model: str, stage: str) -> dict[str, int]:
        """How many captures are kept and how many were dropped, for ``model``'s ``stage``."""
        with self._reading() as connection:
            captured = connection.execute(
                "SELECT count(*) FROM captures WHERE model = ? AND stage = ?", (model, stage)
            ).fetchone()[0]
            dropped = connection.execute(
                "SELECT coalesce(sum(count), 0) FROM dropped WHERE model = ? AND stage = ?", (model, stage)
            ).fetchone()[0]
            outcomes = connection.execute("SELECT count(*) FROM outcomes WHERE model = ?", (model,)).fetchone()[0]
        return {"captured": captured, "dropped": dropped, "outcomes": outcomes}

    # --- drift results ---

    def save_drift(self, model: str, version: str, stage: str, window: str, result: Mapping[str, Any]) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO drift (model, version, stage, window, at, drifted, result) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, str(version), stage, window, time.time(), int(bool(result.get("drifted"))),
                 json.dumps(result, allow_nan=False)),
            )  # fmt: skip

    def drift_history(
        self, model: str, stage: str, version: str, since: float, limit: int = 500
    ) -> list[dict[str, Any]]:
        """The checks of ``version`` since ``since`` (the newest ``limit``), oldest first.

        Each is ``{"t", "version", "drifted", "psi": {feature: value}}`` (:func:`psi_by_feature`).
        """
        with self._reading() as connection:
            rows = connection.execute(
                "SELECT at, drifted, result FROM drift WHERE model = ? AND stage = ? AND version = ? AND at >= ? "
                "ORDER BY at DESC LIMIT ?",
                (model, stage, str(version), since, limit),
            ).fetchall()
        return [
            {"t": at, "version": str(version), "drifted": bool(drifted), "psi": psi_by_feature(json.loads(text))}
            for at, drifted, text in reversed(rows)
        ]

    def latest_drift(self, model: str, stage: str, version: str) -> dict[str, Any] | None:
        """The last check of ``version`` of ``model``'s ``stage``, or None."""
        with self._reading() as connection:
            row = connection.execute(
                "SELECT result FROM drift WHERE model = ? AND stage = ? AND version = ? ORDER BY at DESC LIMIT 1",
                (model, stage, str(version)),
            ).fetchone()
        return json.loads(row[0]) if row else None


def psi_by_feature(result: Mapping[str, Any]) -> dict[str, float | None]:
    """A drift result's PSI per feature, and the predictions' under ``__prediction__`` (as ``/metrics`` labels it)."""
    psi = {item["name"]: item.get("psi") for item in result.get("features") or []}
    if result.get("prediction"):
        psi["__prediction__"] = result["prediction"].get("psi")
    return psi


def _outcome_values(item: Mapping[str, Any], rows: int, where: str) -> list[Any]:
    """The outcome of each row of a request: ``value`` is one per row (a list) or, for a one-row request, one value."""
    if "value" not in item:
        raise OutcomeError(f"{where}.value", f"{where}.value is missing: the true outcome of the request")
    value = item["value"]
    values = value if isinstance(value, list) else [value]
    if len(values) != rows:
        raise OutcomeError(
            f"{where}.value", f"{where}.value has {len(values)} outcome(s) but request {item['request_id']} scored "
            f"{rows} row(s): give a list with one outcome per row"
        )  # fmt: skip
    for position, one in enumerate(values):
        ok = (
            isinstance(one, str)
            and len(one) <= 200
            or (isinstance(one, int | float) and (isinstance(one, bool) or math.isfinite(one)))
        )
        if not ok:
            raise OutcomeError(
                f"{where}.value", f"{where}.value[{position}] must be a number, a label (text) or true/false"
            )
    return values


class TeamStores:
    """The teams' stores in ``folder``, each opened (and its schema brought up to date) once; any thread may ask."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._stores: dict[str, MonitoringStore] = {}
        self._lock = threading.Lock()

    def __call__(self, team: str) -> MonitoringStore:
        with self._lock:
            found = self._stores.get(team)
            if found is None:
                found = self._stores[team] = MonitoringStore(store_path(self.folder, team))
            return found

    def teams(self) -> list[str]:
        """The teams that have a store in the folder."""
        return sorted(path.stem for path in self.folder.glob("*.sqlite"))
