"""Baselines, drift and quality figures for production monitoring: pure numpy/scipy/pandas, no I/O.

A *baseline* summarises the training data of the version that serves (and the
model's predictions on it) as plain JSON, stored with the release. A
:class:`DriftAccumulator` reads live requests one at a time, as the capture
store hands them out, and keeps only counts per bin and a bounded sample per
feature, so a week of traffic costs the same memory as an hour. Its
:meth:`~DriftAccumulator.result` compares the two:

* numeric features: shares per quantile bin of the baseline, population
  stability index (:func:`psi`) over the bins, and the two-sample
  Kolmogorov-Smirnov test between the baseline's stored sample and a
  reservoir sample of live values;
* categorical features (object, string, bool columns): shares of the
  baseline's 20 most frequent categories and ``__other__``, PSI over them and
  a chi-square test against the baseline's shares.

Missing values (None, NaN, infinities, and anything that is not a number in a
numeric column) are a share of their own, reported beside the bins and not in
them. Live rows come from whoever calls an endpoint, so :meth:`~DriftAccumulator.add`
never raises on their content: ragged rows, unknown or duplicated columns and
values that are not numbers are counted in ``skipped`` instead.

:func:`quality` computes the metrics gate's metrics on captured predictions
and posted outcomes with the gate's own code (:mod:`mlopshub.pipeline.gates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from mlopshub.pipeline.gates import METRICS, _as_array, _error_text, _metric, _probability_like

#: The category every value outside the baseline's most frequent ones counts as.
OTHER = "__other__"
#: The name the predictions go by in drift results and in the drift metric's feature label.
PREDICTION = "__prediction__"
#: Categories kept by name in a categorical baseline; the rest are ``__other__``.
TOP_CATEGORIES = 20
#: Live values kept per feature for the distribution test (the baseline keeps as many by default).
RESERVOIR = 5000
#: Share given to an empty bin in the PSI, so that ln(a/e) stays finite.
EPSILON = 1e-4
#: Fewest expected counts per cell for the chi-square approximation to hold; smaller cells are pooled.
MIN_EXPECTED = 5.0
#: Distinct whole-number predictions up to which predictions are class labels rather than numbers.
MAX_LABELS = 20
#: Unknown column names remembered for the result (names come from callers: bounded and cut).
MAX_UNKNOWN_NAMES = 20
MAX_NAME = 100
#: Column lists whose mapping to features is cached (a client sends the same few lists over and over).
MAX_LAYOUTS = 64
MAX_LAYOUT_WIDTH = 10_000

NOT_IN_TRAFFIC = "not in live traffic"
NO_PREDICTIONS = "no predictions in live traffic"
ALL_MISSING = "every live value is missing or not a number"


# --- PSI ------------------------------------------------------------------------------------------------------------


def psi(expected_shares: Sequence[float], actual_shares: Sequence[float], eps: float = EPSILON) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected).

    Shares of empty bins are raised to ``eps``: a bin the baseline never saw
    then weighs heavily rather than infinitely. Common reading: below 0.1 no
    shift, 0.1-0.2 a moderate one, 0.2 and above a significant one.
    """
    expected = np.asarray(expected_shares, dtype=float)
    actual = np.asarray(actual_shares, dtype=float)
    if expected.shape != actual.shape or expected.ndim != 1:
        raise ValueError(
            f"psi needs two lists of shares of the same length, got {expected.size} expected and {actual.size} actual"
        )
    expected = np.clip(expected, eps, None)
    actual = np.clip(actual, eps, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


# --- baseline -------------------------------------------------------------------------------------------------------


def baseline(
    frame: pd.DataFrame,
    *,
    predictions: Sequence | None = None,
    bins: int = 10,
    sample: int = RESERVOIR,
    seed: int = 0,
) -> dict[str, Any]:
    """The JSON-able summary of ``frame`` (the training features) and of the model's ``predictions`` on it.

    ``{"rows": n, "features": {name: summary}, "prediction": summary | None}``; a
    numeric summary holds ``bins`` + 1 quantile edges (duplicates removed, the
    outer two open, written as null), the shares per bin, up to ``sample``
    values for the distribution test, mean, std and the missing share; a
    categorical one the top categories plus ``__other__`` and their shares.
    Predictions that are whole numbers with at most 20 distinct values are
    class labels and summarised as categories.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if sample < 0:
        raise ValueError(f"sample must be 0 or more, got {sample}")
    rng = np.random.default_rng(seed)
    features: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(frame.columns):
        if str(name) in features:  # a duplicated column name: the first one is the feature, as in add()
            continue
        column = frame.iloc[:, position]
        if _is_numeric(column):
            features[str(name)] = _numeric_summary(_floats(column), bins, sample, rng)
        else:
            features[str(name)] = _categorical_summary(list(column.astype(object)))
    return {
        "rows": len(frame),
        "features": features,
        "prediction": None if predictions is None else _prediction_summary(predictions, bins, sample, rng),
    }


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)


def _floats(column: pd.Series) -> np.ndarray:
    values = column.to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _numeric_summary(values: np.ndarray, bins: int, sample: int, rng: np.random.Generator) -> dict[str, Any]:
    finite = values[~np.isnan(values)]
    # Edges are values the data holds ("higher", not interpolated): a feature of a few whole numbers then gets a
    # bin per number rather than empty bins between them; repeats of an edge are one edge.
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    interior = np.unique(np.quantile(finite, quantiles, method="higher")) if finite.size else np.empty(0)
    counts = np.bincount(np.searchsorted(interior, finite, side="right"), minlength=interior.size + 1)
    kept = finite if finite.size <= sample else rng.choice(finite, size=sample, replace=False)
    return {
        "kind": "numeric",
        "edges": [None, *(float(edge) for edge in interior), None],
        "shares": _shares(counts),
        "sample": [float(value) for value in kept],
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else None),
        "missing": float(1 - finite.size / values.size) if values.size else 0.0,
    }


def _categorical_summary(values: list) -> dict[str, Any]:
    keys = [_category_key(value) for value in values]
    present = pd.Series([key for key in keys if key is not None], dtype=object)
    frequency = present.value_counts()
    # Most frequent first, ties by name, so the same data always gives the same baseline.
    ranked = sorted(((-int(count), key) for key, count in frequency.items() if key != OTHER))[:TOP_CATEGORIES]
    categories = [key for _, key in ranked]
    counts = [-negative for negative, _ in ranked]
    counts.append(len(present) - sum(counts))
    return {
        "kind": "categorical",
        "categories": [*categories, OTHER],
        "shares": _shares(np.asarray(counts)),
        "missing": float(1 - len(present) / len(keys)) if keys else 0.0,
    }


def _prediction_summary(predictions: Sequence, bins: int, sample: int, rng: np.random.Generator) -> dict[str, Any]:
    values = _as_array(predictions)
    if values.ndim != 1:
        raise ValueError(
            f"baseline predictions must be one value per row (labels or numbers), got an array of shape {values.shape}"
        )
    if values.dtype.kind in "iuf":
        numbers = values.astype(float)
        finite = numbers[np.isfinite(numbers)]
        labels = (
            not _probability_like(numbers)
            and bool(np.all(finite == np.round(finite)))
            and np.unique(finite).size <= MAX_LABELS
        )
        if not labels:
            return _numeric_summary(np.where(np.isfinite(numbers), numbers, np.nan), bins, sample, rng)
    return _categorical_summary(values.tolist())


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(count / total) if total else 0.0 for count in counts]


def _category_key(value: Any) -> str | None:
    """The category a value counts as: None for missing; numbers written the same whether 1, 1.0 or numpy's 1."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, list | dict | tuple | set):
        raise TypeError(f"{type(value).__name__} is not a category")
    return str(value)  # ints, and in a training frame dates, decimals and the like


# --- drift ----------------------------------------------------------------------------------------------------------


class _NumericBlock:
    """Counts per bin, missing counts and reservoir samples of several numeric features, updated together.

    Bin edges are padded to one width with +inf (no number reaches them) so a
    request's bins for every feature come from one comparison per edge
    position; counts live in one flat array, a feature's bins then its
    missing slot, filled by one ``bincount``.
    """

    def __init__(self, summaries: Sequence[Mapping[str, Any]], size: int, rng: np.random.Generator) -> None:
        interiors = [np.asarray(summary["edges"][1:-1], dtype=float) for summary in summaries]
        self.edges = np.full((len(interiors), max([1, *(edges.size for edges in interiors)])), np.inf)
        for index, edges in enumerate(interiors):
            self.edges[index, : edges.size] = edges
        self.bins = np.asarray([edges.size + 1 for edges in interiors], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.bins + 1)[:-1]]).astype(np.int64)
        self.counts = np.zeros(int((self.bins + 1).sum()), dtype=np.int64)
        self.rows = np.zeros(len(interiors), dtype=np.int64)
        self.seen = np.zeros(len(interiors), dtype=np.int64)  # numbers seen: the length of each reservoir's stream
        self.sample = np.empty((len(interiors), size))
        self.size = size
        self.rng = rng
        self._selections: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _selection(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the features of a request's columns: their edges by position, first slots and missing slots."""
        key = features.tobytes()
        found = self._selections.get(key)
        if found is None:
            if len(self._selections) >= MAX_LAYOUTS:
                self._selections.clear()
            first = self.offsets[features]
            found = (np.ascontiguousarray(self.edges[features].T), first, first + self.bins[features])
            self._selections[key] = found
        return found

    def add(self, values: np.ndarray, features: np.ndarray) -> None:
        """Count ``values`` (rows x len(features) floats, NaN where missing) for ``features`` (distinct indices)."""
        edges, first, missing = self._selection(features)
        finite = np.isfinite(values)
        slots = np.empty(values.shape, dtype=np.int64)
        slots[:] = first
        for edge in edges:  # a few edges, each compared with the whole request: faster than one 3-d comparison
            slots += values >= edge
        if not finite.all():
            slots = np.where(finite, slots, missing)
        self.counts += np.bincount(slots.ravel(), minlength=self.counts.size)
        self.rows[features] += values.shape[0]
        self._keep_sample(values, finite, features)

    def _keep_sample(self, values: np.ndarray, finite: np.ndarray, features: np.ndarray) -> None:
        """Algorithm R for every feature at once: the n-th number replaces a random slot with probability size/n.

        Positions are drawn for the whole request with one call; where two
        numbers of one request land in the same slot the later row's is
        written last, as in the one-at-a-time algorithm.
        """
        position = self.seen[features] + np.cumsum(finite, axis=0) - 1
        drawn = (self.rng.random(values.shape) * (position + 1)).astype(np.int64)
        slot = np.where(position < self.size, position, drawn)
        rows, columns = np.nonzero(finite & (slot < self.size))
        self.sample[features[columns], slot[rows, columns]] = values[rows, columns]
        self.seen[features] += finite.sum(axis=0)

    def drift(
        self, index: int, name: str, summary: Mapping[str, Any], thresholds: tuple[float, float], absent: str
    ) -> dict:
        start, bins = int(self.offsets[index]), int(self.bins[index])
        counts = self.counts[start : start + bins]
        rows = int(self.rows[index])
        live_sample = self.sample[index, : min(int(self.seen[index]), self.size)]
        base_sample = np.asarray(summary.get("sample") or [], dtype=float)
        p_value = None
        if live_sample.size and base_sample.size:
            p_value = float(scipy_stats.ks_2samp(base_sample, live_sample).pvalue)
        return _feature_drift(
            name,
            summary,
            "ks",
            counts,
            rows,
            int(self.counts[start + bins]),
            p_value,
            thresholds,
            absent,
        )


class _CategoricalCounts:
    """Counts per baseline category (``__other__`` for the rest) and missing values of one categorical feature."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        categories = [str(category) for category in summary["categories"]]
        self.other = categories.index(OTHER) if OTHER in categories else len(categories) - 1
        self.index = {category: position for position, category in enumerate(categories)}
        self.counts = np.zeros(len(categories), dtype=np.int64)
        self.rows = 0
        self.missing = 0

    def add(self, values: Sequence) -> int:
        """Count ``values``; returns how many were not categories at all (lists, objects): missing, and skipped."""
        found = []
        skipped = 0
        for value in values:
            try:
                key = _category_key(value)
            except (TypeError, ValueError):  # ValueError: an int too long to write out (Python's 4300 digits)
                key = None
                skipped += 1
            if key is None:
                self.missing += 1
            else:
                found.append(self.index.get(key, self.other))
        self.counts += np.bincount(np.asarray(found, dtype=np.int64), minlength=self.counts.size)
        self.rows += len(values)
        return skipped

    def drift(self, name: str, summary: Mapping[str, Any], thresholds: tuple[float, float], absent: str) -> dict:
        p_value = _chi_square_p(self.counts, np.asarray(summary["shares"], dtype=float))
        return _feature_drift(name, summary, "chi2", self.counts, self.rows, self.missing, p_value, thresholds, absent)


def _chi_square_p(observed: np.ndarray, shares: np.ndarray) -> float | None:
    """p-value of the chi-square test of ``observed`` counts against the baseline ``shares``; None if untestable.

    Cells expected to hold fewer than 5 counts are pooled, smallest first,
    until the pool reaches 5 (the approximation is wrong below that); a
    category the baseline never saw is expected at ``EPSILON`` so that it
    counts rather than dividing by zero.
    """
    total = int(observed.sum())
    if total == 0 or observed.size != shares.size:
        return None
    expected = np.clip(shares, EPSILON, None)
    expected = expected / expected.sum() * total
    order = np.argsort(expected, kind="stable")
    if expected[order[0]] < MIN_EXPECTED:
        pooled = int(np.searchsorted(np.cumsum(expected[order]), MIN_EXPECTED)) + 1
        cells_observed = np.append(observed[order[pooled:]], observed[order[:pooled]].sum())
        cells_expected = np.append(expected[order[pooled:]], expected[order[:pooled]].sum())
    else:
        cells_observed, cells_expected = observed, expected
    if cells_observed.size < 2:
        return None
    cells_expected = cells_expected * (total / cells_expected.sum())  # chisquare wants equal sums to the last digit
    p_value = float(scipy_stats.chisquare(cells_observed, cells_expected).pvalue)
    return None if math.isnan(p_value) else p_value


def _feature_drift(
    name: str,
    summary: Mapping[str, Any],
    test: str,
    counts: np.ndarray,
    rows: int,
    missing: int,
    p_value: float | None,
    thresholds: tuple[float, float],
    absent: str,
) -> dict[str, Any]:
    """One FeatureDrift: PSI over the bins (or categories) of the values present, the test, and the verdict.

    Drifted means a shift both large (PSI at or above its threshold) and not
    chance (p-value below its threshold, when the test could be run): on a
    million rows a test finds negligible shifts significant, on a hundred the
    PSI of an unchanged feature is noisy. ``absent`` is the reason given when no row had the feature.
    """
    psi_threshold, p_threshold = thresholds
    base_shares = [float(share) for share in summary["shares"]]
    present = int(counts.sum())
    live_shares = [float(count / present) if present else 0.0 for count in counts]
    reason = None
    value = None
    if rows == 0:
        reason = absent
    elif present == 0:
        reason = ALL_MISSING
    else:
        value = psi(base_shares, live_shares)
    drifted = value is not None and value >= psi_threshold and (p_value is None or p_value < p_threshold)
    scale = "edges" if test == "ks" else "categories"
    return {
        "name": name,
        "kind": summary["kind"],
        "psi": value,
        "test": test,
        "p_value": p_value if value is not None else None,
        "drifted": drifted,
        "reason": reason,
        "baseline": {scale: list(summary[scale]), "shares": base_shares, "missing": summary.get("missing")},
        "live": {"shares": live_shares, "rows": rows, "missing": float(missing / rows) if rows else None},
    }


class DriftAccumulator:
    """Live traffic summarised against a baseline, request by request, in bounded memory.

    Memory is the baseline's bins plus ``reservoir`` floats per numeric
    feature, whatever the traffic. ``add`` takes a request's ``columns`` and
    ``rows`` as MLflow's ``dataframe_split`` holds them; ``add_predictions``
    the endpoint's predictions; ``result`` compares with the baseline.
    """

    def __init__(self, baseline: Mapping[str, Any], *, reservoir: int = RESERVOIR, seed: int = 0) -> None:
        try:
            features = dict(baseline["features"])
            prediction = baseline.get("prediction")
            kinds = [summary["kind"] for summary in [*features.values(), *([prediction] if prediction else [])]]
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"not a monitoring baseline ({_error_text(error)}); expected the dict stats.baseline() returns"
            ) from error
        unknown = sorted(set(kinds) - {"numeric", "categorical"})
        if unknown:
            raise ValueError(f"unknown summary kind {unknown[0]!r} in the baseline; expected numeric or categorical")
        rng = np.random.default_rng(seed)
        self.baseline = baseline
        self.names = list(features)
        self.numeric = [name for name in self.names if features[name]["kind"] == "numeric"]
        self.numeric_index = {name: index for index, name in enumerate(self.numeric)}
        self.block = _NumericBlock([features[name] for name in self.numeric], reservoir, rng)
        self.categorical = {
            name: _CategoricalCounts(features[name]) for name in self.names if features[name]["kind"] == "categorical"
        }
        self.prediction_block: _NumericBlock | None = None
        self.prediction_counts: _CategoricalCounts | None = None
        if prediction and prediction["kind"] == "numeric":
            self.prediction_block = _NumericBlock([prediction], reservoir, rng)
        elif prediction:
            self.prediction_counts = _CategoricalCounts(prediction)
        self.rows = 0
        self.predictions = 0
        #: What add() could not read: whole requests, rows, values (cells), columns (per request).
        self.skipped = {"requests": 0, "rows": 0, "values": 0, "columns": 0}
        self.unknown_columns: list[str] = []
        self._layouts: dict[tuple, _Layout] = {}

    # -- live requests --

    def add(self, columns: list[str], rows: list[list]) -> None:
        """Count one request's rows; what cannot be read is counted in ``skipped``, never raised.

        Rows of another length than ``columns`` are skipped; columns the
        baseline does not know, and repeats of a column name (the first one
        counts), are ignored; in a numeric column anything ``float()`` does
        not turn into a finite number is a missing value.
        """
        if not isinstance(columns, list) or not isinstance(rows, list):
            self.skipped["requests"] += 1
            self.skipped["rows"] += len(rows) if isinstance(rows, list) else 0
            return
        width = len(columns)
        good = [row for row in rows if isinstance(row, list) and len(row) == width]
        self.skipped["rows"] += len(rows) - len(good)
        layout = self._layout(columns)
        self.skipped["columns"] += layout.ignored
        if not good:
            return
        self.rows += len(good)
        if layout.width:
            values, bad = _numbers(good, layout.positions, layout.everything)
            self.skipped["values"] += bad
            self.block.add(values, layout.features)
        for position, counts in layout.categorical:
            self.skipped["values"] += counts.add([row[position] for row in good])

    def add_predictions(self, values: list) -> None:
        """Count an endpoint's predictions for one request (one label or number per row)."""
        if not isinstance(values, list):
            self.skipped["requests"] += 1
            return
        self.predictions += len(values)
        if self.prediction_block is not None:
            numbers, bad = _numbers([[value] for value in values], [0], True)
            self.skipped["values"] += bad
            if numbers.shape[0]:
                self.prediction_block.add(numbers, np.zeros(1, dtype=np.int64))
        elif self.prediction_counts is not None:
            self.skipped["values"] += self.prediction_counts.add(values)

    def _layout(self, columns: list) -> _Layout:
        """Where ``columns`` go, worked out once per distinct column list (up to MAX_LAYOUTS of them)."""
        key = tuple(columns)
        try:
            layout = self._layouts.get(key)
        except TypeError:  # a column "name" that is a list or a dict: worked out for this request only
            return _Layout(columns, self.numeric_index, self.categorical, self.unknown_columns)
        if layout is None:
            layout = _Layout(columns, self.numeric_index, self.categorical, self.unknown_columns)
            if len(key) <= MAX_LAYOUT_WIDTH:
                if len(self._layouts) >= MAX_LAYOUTS:
                    self._layouts.clear()
                self._layouts[key] = layout
        return layout

    # -- the comparison --

    def result(self, psi_threshold: float = 0.2, p_threshold: float = 0.01) -> dict[str, Any]:
        """Drift per feature (in the baseline's order) and of the predictions, as plain JSON-able data."""
        thresholds = (psi_threshold, p_threshold)
        features_summary = self.baseline["features"]
        drifts = []
        for name in self.names:
            summary = features_summary[name]
            if name in self.numeric_index:
                drifts.append(self.block.drift(self.numeric_index[name], name, summary, thresholds, NOT_IN_TRAFFIC))
            else:
                drifts.append(self.categorical[name].drift(name, summary, thresholds, NOT_IN_TRAFFIC))
        prediction = None
        summary = self.baseline.get("prediction")
        if self.prediction_block is not None:
            prediction = self.prediction_block.drift(0, PREDICTION, summary, thresholds, NO_PREDICTIONS)
        elif self.prediction_counts is not None:
            prediction = self.prediction_counts.drift(PREDICTION, summary, thresholds, NO_PREDICTIONS)
        return {
            "rows": self.rows,
            "features": drifts,
            "prediction": prediction,
            "drifted": any(drift["drifted"] for drift in drifts) or bool(prediction and prediction["drifted"]),
            "skipped": {**self.skipped, "unknown_columns": list(self.unknown_columns)},
        }


class _Layout:
    """Where a request's columns go: positions of numeric features (and which), categorical ones, ignored ones."""

    def __init__(
        self,
        columns: list,
        numeric_index: Mapping[str, int],
        categorical: Mapping[str, _CategoricalCounts],
        unknown_names: list[str],
    ) -> None:
        seen: set[str] = set()
        positions: list[int] = []
        features: list[int] = []
        self.categorical: list[tuple[int, _CategoricalCounts]] = []
        self.ignored = 0
        for position, name in enumerate(columns):
            if not isinstance(name, str) or name in seen or (name not in numeric_index and name not in categorical):
                self.ignored += 1
                if isinstance(name, str) and name not in seen and len(unknown_names) < MAX_UNKNOWN_NAMES:
                    label = name[:MAX_NAME]
                    if label not in unknown_names:
                        unknown_names.append(label)
                continue
            seen.add(name)
            if name in numeric_index:
                positions.append(position)
                features.append(numeric_index[name])
            else:
                self.categorical.append((position, categorical[name]))
        self.positions = positions
        self.width = len(positions)
        self.features = np.asarray(features, dtype=np.int64)
        #: Every column is a numeric feature, in order: the rows convert to floats as they are.
        self.everything = positions == list(range(len(columns)))


def _numbers(rows: list[list], positions: list[int], everything: bool) -> tuple[np.ndarray, int]:
    """The numeric columns of ``rows`` as rows x columns floats (NaN where missing) and how many cells were not numbers.

    The whole block converts in one call when it can; a block with a bad
    value converts column by column, and a bad column cell by cell.
    """
    expected = (len(rows), len(positions))
    try:
        values = np.asarray(rows if everything else [[row[p] for p in positions] for row in rows], dtype=float)
        if values.shape == expected:
            return _finite(values)
    except (TypeError, ValueError, OverflowError):
        pass
    values = np.empty(expected)
    bad = 0
    for column, position in enumerate(positions):
        cells = [row[position] for row in rows]
        try:
            converted = np.asarray(cells, dtype=float)
            if converted.shape != (len(rows),):
                raise ValueError("not one number per row")
        except (TypeError, ValueError, OverflowError):
            converted = np.empty(len(rows))
            for index, cell in enumerate(cells):
                converted[index], not_number = _number(cell)
                bad += not_number
        values[:, column] = converted
    values, infinite = _finite(values)
    return values, bad + infinite


def _finite(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` with infinities made missing, and how many there were (NaN is missing already, not counted)."""
    infinite = np.isinf(values)
    count = int(infinite.sum())
    if count:
        values = np.where(infinite, np.nan, values)
    return values, count


def _number(cell: Any) -> tuple[float, bool]:
    """(the number, False), (NaN, False) for None, or (NaN, True) for anything ``float()`` refuses."""
    if cell is None:
        return math.nan, False
    try:
        return float(cell), False
    except (TypeError, ValueError, OverflowError):
        return math.nan, True


# --- quality --------------------------------------------------------------------------------------------------------


def quality(metric_names: Sequence[str], predictions: Sequence, outcomes: Sequence) -> dict[str, dict[str, Any]]:
    """The metrics gate's metrics of ``predictions`` against the true ``outcomes``: name -> {value, reason}.

    Computed by the gate's own function, so a live figure means what the
    approved hold-out figure meant. A metric that cannot be computed (AUC of
    an endpoint that returns labels, one class in the outcomes so far) has
    value None and the reason.
    """
    predicted = list(predictions)
    observed = list(outcomes)
    if len(predicted) != len(observed):
        raise ValueError(f"quality needs one outcome per prediction, got {len(observed)} for {len(predicted)}")
    figures: dict[str, dict[str, Any]] = {}
    for name in metric_names:
        if name not in METRICS:
            figures[name] = _no_figure(f"unknown metric {name!r}; the metrics are: {', '.join(METRICS)}")
        elif not predicted:
            figures[name] = _no_figure("no outcomes posted yet")
        else:
            figures[name] = _figure(name, np.asarray(observed), _as_array(predicted))
    return figures


def _figure(name: str, truth: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    try:
        value = _metric(name, truth, scores)
    except ValueError as error:
        return _no_figure(str(error))
    except Exception as error:  # outcomes of a type the metric cannot take: the reason, not a failed page
        return _no_figure(_error_text(error))
    if not math.isfinite(value):
        return _no_figure(f"{name} is not a number on these outcomes")
    return {"value": value, "reason": None}


def _no_figure(reason: str) -> dict[str, Any]:
    return {"value": None, "reason": reason}
