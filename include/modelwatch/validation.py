"""Data-quality validation of one interval's staged predictions.

The suite is built from the model's configuration. Checks that Great
Expectations expresses on a pandas frame run through GX Core (an ephemeral
context, nothing written to disk, analytics off); the rest run in our own code
and report in the same shape. Names, the rows they read (all, or those whose
status is ``ok``) and where they run:

- ``column_exists:<col>`` (all, ours): every staged column is present.
- ``type:<col>`` (all, ours): values have the staged type.
- ``not_null:<col>`` (all, GX; ours for request_id): request_id, timestamp,
  model_name, model_version, status and latency_ms are never null.
- ``allowed_values:status`` (all, GX): status is ``ok`` or ``error``.
- ``score_in_unit_interval`` (all, GX): scores lie in [0, 1].
- ``latency_non_negative`` (all, GX): latencies are at least 0.
- ``unique:request_id`` (all, ours): no request_id repeats anywhere in the batch.
- ``not_null:prediction`` and, for binary classifiers, ``not_null:score`` (ok, GX).
- ``null_fraction:<feature col>`` (ok, GX): at most ``max_null_fraction`` nulls.
- ``range:<feature col>`` (ok, GX): values within the feature's min and max.
- ``allowed_values:<feature col>`` (ok, GX): values among ``allowed_values``.
- ``schema:unexpected_features`` (ok, ours): no feature the configuration does not name.
- ``schema:missing_features`` (ok, ours): no configured feature absent.
- ``volume`` (all, ours): row count within ``volume_tolerance`` of the recent median.
- ``freshness`` (all, ours): the latest record at most ``freshness_max_lag_minutes``
  before the interval end.

Feature, prediction and score checks read ok rows only: an error record may
legitimately log no features. GX's type expectations recognise neither pandas
3's default ``str`` dtype nor timezone-aware timestamps, so column types are
checked in our own code; so is uniqueness, because GX sees one chunk at a time.
Column presence is a lookup in our own code too, so that GX is handed only the
columns its expectations read: it fingerprints (hashes) every frame it is given.

The staged batch arrives in chunks. Counts from every chunk are summed and each
expectation's success is decided once, from the sums, against its ``mostly``
threshold.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.batch import feature_column, prediction_schema
from modelwatch.config import ModelConfig, Severity

log = logging.getLogger(__name__)

RowScope = Literal["all", "ok"]

REQUIRED_COLUMNS = (
    "request_id", "timestamp", "model_name", "model_version", "status", "latency_ms",
)
STATUS_VALUES = ("ok", "error")

DEFAULT_SEVERITIES: dict[str, Severity] = {
    "column_exists": "critical",
    "type": "critical",
    "not_null": "critical",
    "allowed_values:status": "critical",
    "score_in_unit_interval": "critical",
    "latency_non_negative": "critical",
    "unique": "critical",
    "null_fraction": "warning",
    "range": "warning",
    "allowed_values": "warning",
    "schema": "warning",
    "volume": "warning",
    "freshness": "warning",
}
"""Severity by expectation name or by the prefix before its ``:``; the exact name wins."""

MISSING_FEATURES_CRITICAL_ABOVE = 0.5
"""``schema:missing_features`` counts as critical when more than this fraction of ok rows
lack a configured feature, unless ``data_quality.severities`` sets its severity."""

EXAMPLES = 3
RESULT_COLUMNS = [
    "model_name",
    "interval_start",
    "interval_end",
    "expectation",
    "column_name",
    "success",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "severity",
    "observed",
]


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a model's suite.

    Exactly one of ``gx_expectation`` (a GX Core expectation run on every chunk)
    and ``check`` (a factory of a streaming check computed in our own code) is set.

    Attributes:
        name: stable name, e.g. ``range:feature__income``; the key of severities.
        column_name: the staged column checked, ``''`` for table-level checks.
        severity: ``critical`` or ``warning``, after the model's overrides.
        rows: ``all`` rows of the batch, or only those whose status is ``ok``.
        mostly: least fraction of non-null values that must meet the expectation.
        critical_above: when set, a failure with a larger unexpected fraction is
            reported as critical whatever ``severity`` says.
    """

    name: str
    column_name: str
    severity: Severity
    rows: RowScope = "all"
    gx_expectation: Any = None
    check: Callable[[], _Check] | None = None
    mostly: float = 1.0
    critical_above: float | None = None

    def __post_init__(self) -> None:
        if (self.gx_expectation is None) == (self.check is None):
            raise ValueError(f"{self.name}: expected exactly one of gx_expectation or check")


@dataclass(frozen=True)
class ValidationOutcome:
    """The validation of one interval.

    Attributes:
        rows: one row per expectation, columns as in ``RESULT_COLUMNS``.
        critical_failure: whether any critical expectation failed.
        summary: one line for logs and alerts, naming every failed expectation.
    """

    rows: pd.DataFrame
    critical_failure: bool
    summary: str


@dataclass(frozen=True)
class _Result:
    """One expectation's merged outcome; ``checked`` is the share's base (non-null values)."""

    success: bool
    element_count: int
    unexpected_count: int
    observed: str
    checked: int | None = None

    @property
    def unexpected_fraction(self) -> float:
        base = self.element_count if self.checked is None else self.checked
        return self.unexpected_count / base if base else 0.0


# ---------------------------------------------------------------------------
# Streaming checks


class _Check:
    """A check fed chunk by chunk, reporting once at the end.

    A chunk lacking one of ``columns`` is not evaluated; the check then fails
    and says why.
    """

    columns: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._skipped: Counter[str] = Counter()

    def skip(self, rows: int, reason: str) -> None:
        """Record that a chunk of ``rows`` rows could not be evaluated."""
        self._skipped[reason] += rows

    def observe(self, frame: pd.DataFrame) -> None:
        """Take in one chunk; it holds every column in ``columns``."""
        raise NotImplementedError

    def _result(self) -> _Result:
        raise NotImplementedError

    def result(self) -> _Result:
        """The outcome over every chunk seen, failed if any chunk was not evaluated."""
        result = self._result()
        if not self._skipped:
            return result
        reasons = "; ".join(f"{reason} ({rows} rows)" for reason, rows in self._skipped.items())
        return replace(result, success=False, observed=f"not evaluated: {reasons}")


class _GxCounts(_Check):
    """Sums the per-chunk results of one GX expectation.

    Column-value expectations add their counts; the merged success is the
    ``mostly`` test on the sums.
    """

    def __init__(self, mostly: float) -> None:
        super().__init__()
        self.mostly = mostly
        self.elements = 0
        self.unexpected = 0
        self.missing = 0
        self.examples: list[Any] = []

    def add(self, gx_result: Any, rows: int) -> None:
        """Merge one chunk's ``ExpectationValidationResult`` for a frame of ``rows`` rows."""
        error = _gx_error(gx_result)
        if error is not None:
            self.skip(rows, error)
            return
        counts = gx_result.result
        self.elements += counts["element_count"]
        self.unexpected += counts["unexpected_count"]
        self.missing += counts.get("missing_count") or 0
        found = [v for v in counts.get("partial_unexpected_list") or [] if not pd.isna(v)]
        self.examples += found[: EXAMPLES - len(self.examples)]

    def _result(self) -> _Result:
        checked = self.elements - self.missing
        success = checked - self.unexpected >= self.mostly * checked - 1e-9
        values = "non-null values" if self.missing else "values"
        observed = f"{self.unexpected} of {checked} {values} unexpected"
        if self.mostly < 1:
            observed += f" (at most {1 - self.mostly:.1%} allowed)"
        if self.examples:
            observed += ", e.g. " + ", ".join(str(v) for v in self.examples)
        return _Result(success, self.elements, self.unexpected, observed, checked=checked)


class _ColumnExists(_Check):
    """A column is present in every chunk; the rows of chunks lacking it are unexpected."""

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column = column
        self.rows = 0
        self.unexpected = 0
        self.chunks = 0
        self.failed_chunks = 0

    def observe(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        self.chunks += 1
        if self.column not in frame.columns:
            self.unexpected += len(frame)
            self.failed_chunks += 1

    def _result(self) -> _Result:
        if not self.failed_chunks:
            return _Result(True, self.rows, 0, "present")
        observed = f"absent from {self.failed_chunks} of {self.chunks} chunks"
        return _Result(False, self.rows, self.unexpected, observed)


class _NotNull(_Check):
    """No value of a column is null."""

    def __init__(self, column: str) -> None:
        super().__init__()
        self.columns = (column,)
        self.rows = 0
        self.nulls = 0

    def observe(self, frame: pd.DataFrame) -> None:
        values = frame[self.columns[0]]
        self.rows += len(values)
        self.nulls += int(values.isna().sum())

    def _result(self) -> _Result:
        return _Result(not self.nulls, self.rows, self.nulls, f"{self.nulls} of {self.rows} values null")


class _DtypeCheck(_Check):
    """Values of a column are of its staged Arrow type.

    A column of a specific dtype passes or fails as a whole; an ``object``
    column (e.g. booleans with nulls) is checked value by value.
    """

    def __init__(self, column: str, arrow_type: pa.DataType) -> None:
        super().__init__()
        self.columns = (column,)
        self.arrow_type = arrow_type
        self.dtype_ok, self.value_ok, self.inferred_ok = _accepted_types(arrow_type)
        self.elements = 0
        self.unexpected = 0
        self.seen: set[str] = set()

    def observe(self, frame: pd.DataFrame) -> None:
        values = frame[self.columns[0]]
        self.elements += len(values)
        if values.dtype == object:
            if pd.api.types.infer_dtype(values, skipna=True) in self.inferred_ok:
                return
            present = values.dropna()
            wrong = present[~present.map(self.value_ok).astype(bool)]
            self.unexpected += len(wrong)
            self.seen.update(type(v).__name__ for v in wrong.head(EXAMPLES))
        elif not self.dtype_ok(values.dtype):
            self.unexpected += len(values)
            self.seen.add(str(values.dtype))

    def _result(self) -> _Result:
        observed = f"expected {self.arrow_type}"
        if self.seen:
            observed += f", got {', '.join(sorted(self.seen))} in {self.unexpected} rows"
        return _Result(self.unexpected == 0, self.elements, self.unexpected, observed)


class _UniqueCheck(_Check):
    """No value of a column repeats anywhere in the batch (nulls are not compared).

    Each chunk leaves only a 64-bit hash per value, so a 10M-row batch costs 80 MB
    here, not its text; repeated hashes are confirmed against the values of the
    chunks that hold them, so a hash collision never counts as a repeat.
    """

    def __init__(self, column: str) -> None:
        super().__init__()
        self.columns = (column,)
        self.hashes: list[np.ndarray] = []
        self.chunks: list[pd.Series] = []

    def observe(self, frame: pd.DataFrame) -> None:
        values = frame[self.columns[0]].dropna().reset_index(drop=True)
        # Distinct values are the rule: hashing them directly beats factorizing them first.
        self.hashes.append(pd.util.hash_array(values.to_numpy(dtype=object), categorize=False))
        self.chunks.append(_Repeatable(values))

    def _result(self) -> _Result:
        hashes = np.concatenate(self.hashes) if self.hashes else np.array([], dtype=np.uint64)
        unique, counts = np.unique(hashes, return_counts=True)
        suspects = set(unique[counts > 1].tolist())
        if not suspects:
            return _Result(True, len(hashes), 0, f"{len(hashes)} distinct values")
        candidates = pd.concat(
            [c.matching(h, suspects) for c, h in zip(self.chunks, self.hashes, strict=False)], ignore_index=True
        )
        repeated = candidates[candidates.duplicated(keep=False)]
        if repeated.empty:
            return _Result(True, len(hashes), 0, f"{len(hashes)} distinct values")
        shared = sorted(repeated.unique())
        examples = ", ".join(str(v) for v in shared[:EXAMPLES])
        observed = f"{len(repeated)} rows share {len(shared)} values, e.g. {examples}"
        return _Result(False, len(hashes), len(repeated), observed)


class _Repeatable:
    """A chunk's values kept as compact Arrow text until a suspected repeat needs them."""

    def __init__(self, values: pd.Series) -> None:
        if not pd.api.types.is_string_dtype(values.dtype):
            values = values.astype(str)
        self.values = pa.array(values, type=pa.large_string())

    def matching(self, hashes: np.ndarray, suspects: set[int]) -> pd.Series:
        picked = np.flatnonzero(np.isin(hashes, np.fromiter(suspects, dtype=np.uint64)))
        return pd.Series(self.values.take(pa.array(picked)).to_pylist(), dtype=object)


class _VolumeCheck(_Check):
    """The row count stays within a relative tolerance of the recent median."""

    def __init__(self, expected: float | None, tolerance: float) -> None:
        super().__init__()
        self.expected = expected
        self.tolerance = tolerance
        self.rows = 0

    def observe(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)

    def _result(self) -> _Result:
        if self.expected is None:
            return _Result(True, self.rows, 0, f"{self.rows} rows; no history")
        success = abs(self.rows - self.expected) <= self.tolerance * self.expected
        observed = f"{self.rows} rows vs recent median {self.expected:g}"
        if self.expected:
            change = (self.rows - self.expected) / self.expected
            observed += f" ({change:+.0%}; tolerance ±{self.tolerance:.0%})"
        return _Result(success, self.rows, 0, observed)


class _FreshnessCheck(_Check):
    """The latest record is at most ``max_lag`` before the interval end."""

    columns = ("timestamp",)

    def __init__(self, interval_end: pd.Timestamp, max_lag: timedelta) -> None:
        super().__init__()
        self.interval_end = interval_end
        self.max_lag = max_lag
        self.rows = 0
        self.latest: pd.Timestamp | None = None

    def observe(self, frame: pd.DataFrame) -> None:
        stamps = frame["timestamp"]
        if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
            self.skip(len(frame), f"timestamp is {stamps.dtype}, not a timezone-aware datetime")
            return
        self.rows += len(frame)
        latest = stamps.max()
        if not pd.isna(latest) and (self.latest is None or latest > self.latest):
            self.latest = latest

    def _result(self) -> _Result:
        allowed = f"at most {self.max_lag.total_seconds() / 60:g} min allowed"
        if self.latest is None:
            return _Result(False, self.rows, 0, f"no records; {allowed}")
        lag = self.interval_end - self.latest
        observed = f"latest record {lag.total_seconds() / 60:.0f} min before the end; {allowed}"
        return _Result(lag <= self.max_lag, self.rows, 0, observed)


UNEXPECTED_NAMES_SHOWN = 20


class _UnexpectedFeatures(_Check):
    """Rows whose ``extra_features`` JSON object names features the config does not."""

    columns = ("extra_features",)

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.unexpected = 0
        self.names: set[str] = set()

    def observe(self, frame: pd.DataFrame) -> None:
        extra = frame["extra_features"]
        present = extra.notna() & ~extra.isin(["", "{}"])
        self.rows += len(extra)
        self.unexpected += int(present.sum())
        for text in pd.unique(extra[present]):
            self.names.update(_json_keys(text))

    def _result(self) -> _Result:
        if not self.unexpected:
            return _Result(True, self.rows, 0, "none")
        # Every record may name features of its own: the report names a bounded few.
        shown = sorted(self.names)[:UNEXPECTED_NAMES_SHOWN]
        more = len(self.names) - len(shown)
        names = ", ".join(shown) + (f" and {more} more" if more else "")
        observed = f"unnamed features in {self.unexpected} of {self.rows} rows: {names}"
        return _Result(False, self.rows, self.unexpected, observed)


class _MissingFeatures(_Check):
    """Rows whose ``missing_features`` lists configured features they lacked."""

    columns = ("missing_features",)

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.unexpected = 0
        self.by_name: Counter[str] = Counter()

    def observe(self, frame: pd.DataFrame) -> None:
        missing = frame["missing_features"]
        present = missing.notna() & (missing != "")
        self.rows += len(missing)
        self.unexpected += int(present.sum())
        for text, rows in missing[present].value_counts().items():
            for name in filter(None, (part.strip() for part in text.split(","))):
                self.by_name[name] += int(rows)

    def _result(self) -> _Result:
        if not self.unexpected:
            return _Result(True, self.rows, 0, "none")
        names = ", ".join(f"{name} ({rows})" for name, rows in sorted(self.by_name.items()))
        observed = f"configured features missing in {self.unexpected} of {self.rows} rows: {names}"
        return _Result(False, self.rows, self.unexpected, observed)


def _accepted_types(
    arrow_type: pa.DataType,
) -> tuple[Callable[[Any], bool], Callable[[Any], bool], frozenset[str]]:
    """Tests that hold ``arrow_type``: of a dtype, of a value in an ``object`` column,
    and the ``infer_dtype`` verdicts of an ``object`` column needing no value-by-value test."""
    api = pd.api.types
    if pa.types.is_string(arrow_type):
        return api.is_string_dtype, lambda v: isinstance(v, str), frozenset({"string", "empty"})
    if pa.types.is_floating(arrow_type):
        return _is_number_dtype, _is_number, frozenset({"floating", "integer", "mixed-integer-float", "empty"})
    if pa.types.is_integer(arrow_type):
        integer = lambda v: isinstance(v, int | np.integer) and not _is_bool(v)  # noqa: E731
        return api.is_integer_dtype, integer, frozenset({"integer", "empty"})
    if pa.types.is_boolean(arrow_type):
        return api.is_bool_dtype, _is_bool, frozenset({"boolean", "empty"})
    if pa.types.is_timestamp(arrow_type):
        aware = lambda d: isinstance(d, pd.DatetimeTZDtype)  # noqa: E731
        return aware, lambda v: isinstance(v, datetime), frozenset()
    raise ValueError(f"no pandas equivalent known for staged type {arrow_type}")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not _is_bool(value)


def _is_number_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _json_keys(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return ["(unreadable)"]
    return list(value) if isinstance(value, dict) else ["(unreadable)"]


def _gx_error(gx_result: Any) -> str | None:
    """The message of an exception GX caught while validating, if any."""
    info = gx_result.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "GX raised an error").strip()
    return None


# ---------------------------------------------------------------------------
# Building the suite


def _import_gx() -> Any:
    """Import GX Core with its analytics switched off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx

    return gx


def _matching_severity(name: str, table: dict[str, Severity]) -> Severity | None:
    """The severity ``table`` gives ``name``: by exact name, else by its prefix."""
    if name in table:
        return table[name]
    return table.get(name.split(":", 1)[0])


def _check_overrides(model: ModelConfig, names: Sequence[str]) -> None:
    """Every key of ``data_quality.severities`` names an expectation or a prefix of one."""
    prefixes = sorted({name.split(":", 1)[0] for name in names})
    known = sorted(set(names) | set(prefixes))
    unknown = []
    for key in sorted(set(model.data_quality.severities) - set(known)):
        close = difflib.get_close_matches(key, known, n=1)
        unknown.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if unknown:
        raise ValueError(
            f"models[{model.name}].data_quality.severities: no expectation of this model is "
            f"named {', '.join(unknown)}; expected an exact expectation name or one of the "
            f"prefixes {', '.join(prefixes)}"
        )


def _with_severities(model: ModelConfig, specs: list[ExpectationSpec]) -> list[ExpectationSpec]:
    """Apply the model's severity overrides; a set severity also disables escalation."""
    overrides = model.data_quality.severities
    _check_overrides(model, [spec.name for spec in specs])
    resolved = []
    for spec in specs:
        severity = _matching_severity(spec.name, overrides)
        if severity is not None:
            spec = replace(spec, severity=severity, critical_above=None)
        resolved.append(spec)
    return resolved


def _spec(name: str, column: str = "", **kwargs: Any) -> ExpectationSpec:
    """A spec with its built-in default severity."""
    severity = _matching_severity(name, DEFAULT_SEVERITIES)
    if severity is None:
        raise KeyError(f"no default severity for expectation {name!r}")
    return ExpectationSpec(name=name, column_name=column, severity=severity, **kwargs)


def _schema_specs(model: ModelConfig) -> list[ExpectationSpec]:
    """Every staged column exists and holds its staged type."""
    specs = []
    for staged in prediction_schema(model):
        col = staged.name
        specs.append(_spec(f"column_exists:{col}", col, check=partial(_ColumnExists, col)))
        specs.append(_spec(f"type:{col}", col, check=partial(_DtypeCheck, col, staged.type)))
    return specs


def _record_specs(gx: Any, model: ModelConfig) -> list[ExpectationSpec]:
    """The log contract's rules for every record, and for the answered ones."""
    ex = gx.expectations
    # GX fingerprints every frame it is given by hashing each value; for request_id,
    # distinct on every row, that costs more than the check, which is ours.
    specs = [_spec("not_null:request_id", "request_id", check=partial(_NotNull, "request_id"))]
    specs += [
        _spec(f"not_null:{col}", col, gx_expectation=ex.ExpectColumnValuesToNotBeNull(column=col))
        for col in REQUIRED_COLUMNS
        if col != "request_id"
    ]
    status = ex.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUS_VALUES))
    score = ex.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1)
    latency = ex.ExpectColumnValuesToBeBetween(column="latency_ms", min_value=0)
    prediction = ex.ExpectColumnValuesToNotBeNull(column="prediction")
    specs += [
        _spec("allowed_values:status", "status", gx_expectation=status),
        _spec("score_in_unit_interval", "score", gx_expectation=score),
        _spec("latency_non_negative", "latency_ms", gx_expectation=latency),
        _spec("unique:request_id", "request_id", check=partial(_UniqueCheck, "request_id")),
        _spec("not_null:prediction", "prediction", rows="ok", gx_expectation=prediction),
    ]
    if model.task == "binary_classification":
        scored = ex.ExpectColumnValuesToNotBeNull(column="score")
        specs.append(_spec("not_null:score", "score", rows="ok", gx_expectation=scored))
    return specs


def _feature_specs(gx: Any, model: ModelConfig) -> list[ExpectationSpec]:
    """Null fraction, range and allowed values of each configured feature, on ok rows."""
    ex = gx.expectations
    specs = []
    for feature in model.features:
        col = feature_column(feature.name)
        mostly = 1.0 - feature.max_null_fraction
        not_null = ex.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly)
        specs.append(
            _spec(f"null_fraction:{col}", col, rows="ok", mostly=mostly, gx_expectation=not_null)
        )
        if feature.min is not None or feature.max is not None:
            between = ex.ExpectColumnValuesToBeBetween(
                column=col, min_value=feature.min, max_value=feature.max
            )
            specs.append(_spec(f"range:{col}", col, rows="ok", gx_expectation=between))
        if feature.allowed_values is not None:
            in_set = ex.ExpectColumnValuesToBeInSet(column=col, value_set=feature.allowed_values)
            specs.append(_spec(f"allowed_values:{col}", col, rows="ok", gx_expectation=in_set))
    return specs


def _table_specs(
    model: ModelConfig, expected_volume: float | None, interval_end: pd.Timestamp
) -> list[ExpectationSpec]:
    """Volume, freshness and schema drift, computed in our own code."""
    dq = model.data_quality
    max_lag = timedelta(minutes=dq.freshness_max_lag_minutes)
    return [
        _spec("volume", check=partial(_VolumeCheck, expected_volume, dq.volume_tolerance)),
        _spec("freshness", "timestamp", check=partial(_FreshnessCheck, interval_end, max_lag)),
        _spec("schema:unexpected_features", "extra_features", rows="ok", check=_UnexpectedFeatures),
        _spec(
            "schema:missing_features", "missing_features", rows="ok", check=_MissingFeatures,
            critical_above=MISSING_FEATURES_CRITICAL_ABOVE,
        ),
    ]


def _utc(moment: datetime | pd.Timestamp, label: str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError(f"{label} must be timezone-aware (got {moment!r})")
    return stamp.tz_convert("UTC")


def build_expectations(
    model: ModelConfig, *, expected_volume: float | None, interval_end: datetime
) -> list[ExpectationSpec]:
    """The data-quality suite of one model, in reporting order.

    Args:
        model: the model's configuration; features, thresholds and severity
            overrides come from it.
        expected_volume: the median row count of recent intervals, or None when
            there is no history yet (the volume check then passes).
        interval_end: end of the validated interval (timezone-aware), for freshness.

    Returns:
        One spec per expectation, severities resolved.

    Raises:
        ValueError: a key of ``data_quality.severities`` names no expectation, or
            ``interval_end`` is naive.
    """
    gx = _import_gx()
    end = _utc(interval_end, "interval_end")
    specs = (
        _schema_specs(model)
        + _record_specs(gx, model)
        + _feature_specs(gx, model)
        + _table_specs(model, expected_volume, end)
    )
    return _with_severities(model, specs)


# ---------------------------------------------------------------------------
# Running the suite


class _GxSuites:
    """The GX side of one validation: an ephemeral context and one suite per row scope."""

    def __init__(self, gx: Any, specs: Sequence[ExpectationSpec]) -> None:
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        source = context.data_sources.add_pandas("modelwatch")
        asset = source.add_dataframe_asset("staged_predictions")
        batch = asset.add_batch_definition_whole_dataframe("chunk")
        self.definitions: dict[str, Any] = {}
        self.columns: dict[str, list[str]] = {}
        for scope in ("all", "ok"):
            scoped = [s for s in specs if s.gx_expectation is not None and s.rows == scope]
            expectations = [
                spec.gx_expectation.copy(update={"meta": {"modelwatch": spec.name}}) for spec in scoped
            ]
            self.columns[scope] = list(dict.fromkeys(spec.column_name for spec in scoped))
            if expectations:
                suite = gx.ExpectationSuite(name=f"rows_{scope}", expectations=expectations)
                context.suites.add(suite)
                self.definitions[scope] = context.validation_definitions.add(
                    gx.ValidationDefinition(name=f"rows_{scope}", data=batch, suite=suite)
                )

    def run(self, scope: RowScope, frame: pd.DataFrame) -> list[tuple[str, Any]]:
        """Validate ``frame`` with the suite of ``scope``: (expectation name, GX result) pairs."""
        definition = self.definitions.get(scope)
        if definition is None:
            return []
        # A column absent from the chunk stays absent, so GX reports it as an error.
        read = [column for column in self.columns[scope] if column in frame.columns]
        result = definition.run(
            batch_parameters={"dataframe": frame[read]},
            result_format={"result_format": "BASIC", "partial_unexpected_count": EXAMPLES},
        )
        return [(r.expectation_config.meta["modelwatch"], r) for r in result.results]


def _ok_rows(chunk: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The answered rows of a chunk, restricted to the columns the ok-row checks read.

    Staged batches hold answered rows first (`modelwatch.batch`); a chunk whose
    answered rows are one contiguous run is sliced, not copied.
    """
    present = [col for col in columns if col in chunk.columns]
    answered = chunk["status"].eq("ok").to_numpy(dtype=bool, na_value=False)
    first = int(answered.argmax()) if len(answered) else 0
    run = slice(first, first + int(answered.sum()))
    if answered[run].all():
        return chunk[present].iloc[run]
    return chunk.loc[answered, present]


def _feed(
    chunk: pd.DataFrame,
    specs: Sequence[ExpectationSpec],
    checks: dict[str, _Check],
    suites: _GxSuites,
) -> None:
    """Run every expectation on one chunk and merge the outcome into ``checks``."""
    ok_columns = sorted({s.column_name for s in specs if s.rows == "ok" and s.column_name})
    frames: dict[RowScope, pd.DataFrame | None] = {
        "all": chunk,
        "ok": _ok_rows(chunk, ok_columns) if "status" in chunk.columns else None,
    }
    for scope, frame in frames.items():
        scoped = [spec for spec in specs if spec.rows == scope]
        if frame is None:
            for spec in scoped:
                checks[spec.name].skip(len(chunk), "no status column to select ok rows")
            continue
        for name, gx_result in suites.run(scope, frame):
            checks[name].add(gx_result, len(frame))
        for spec in scoped:
            if spec.check is not None:
                _observe(checks[spec.name], frame)


def _observe(check: _Check, frame: pd.DataFrame) -> None:
    absent = [col for col in check.columns if col not in frame.columns]
    if absent:
        check.skip(len(frame), f"column {', '.join(absent)} missing")
    else:
        check.observe(frame)


def _severity(spec: ExpectationSpec, result: _Result) -> Severity:
    escalate = (
        spec.critical_above is not None
        and not result.success
        and result.unexpected_fraction > spec.critical_above
    )
    return "critical" if escalate else spec.severity


def _outcome(
    model: ModelConfig,
    specs: Sequence[ExpectationSpec],
    checks: dict[str, _Check],
    interval_start: pd.Timestamp,
    interval_end: pd.Timestamp,
) -> ValidationOutcome:
    """Turn the merged checks into result rows, the critical flag and a summary."""
    records = []
    for spec in specs:
        result = checks[spec.name].result()
        records.append({
            "model_name": model.name,
            "interval_start": interval_start,
            "interval_end": interval_end,
            "expectation": spec.name,
            "column_name": spec.column_name,
            "success": result.success,
            "element_count": result.element_count,
            "unexpected_count": result.unexpected_count,
            "unexpected_percent": 100.0 * result.unexpected_fraction,
            "severity": _severity(spec, result),
            "observed": result.observed,
        })
    rows = pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)
    failed = rows[~rows["success"]]
    critical = failed[failed["severity"] == "critical"]
    return ValidationOutcome(
        rows=rows,
        critical_failure=not critical.empty,
        summary=_summary(model, interval_start, interval_end, rows, failed, len(critical)),
    )


def _summary(
    model: ModelConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rows: pd.DataFrame,
    failed: pd.DataFrame,
    critical: int,
) -> str:
    volume = rows.loc[rows["expectation"] == "volume", "element_count"].iloc[0]
    head = f"{model.name} [{start.isoformat()}, {end.isoformat()}): {volume} rows, "
    if failed.empty:
        return head + f"all {len(rows)} expectations passed"
    details = "; ".join(
        f"{r.expectation} [{r.severity}]: {r.observed}" for r in failed.itertuples()
    )
    counts = f"{len(failed)} of {len(rows)} expectations failed ({critical} critical)"
    return head + f"{counts}: {details}"


def validate_batch(
    batches: Iterable[pd.DataFrame],
    model: ModelConfig,
    *,
    interval_start: datetime,
    interval_end: datetime,
    recent_volumes: Sequence[int],
) -> ValidationOutcome:
    """Validate one interval's staged predictions, streamed in chunks.

    Args:
        batches: the staged prediction rows (columns of
            ``batch.prediction_schema(model)``), in chunks of any size; no
            chunks at all is an empty interval.
        model: the model's configuration.
        interval_start, interval_end: the validated interval (timezone-aware).
        recent_volumes: row counts of earlier intervals, oldest first; the last
            ``data_quality.volume_history_intervals`` of them set the expected volume.

    Returns:
        One result row per expectation, whether a critical one failed, and a summary.

    Raises:
        TypeError: a chunk is not a pandas DataFrame.
        ValueError: an interval bound is naive, or the severity overrides name
            no expectation of this model.
    """
    start, end = _utc(interval_start, "interval_start"), _utc(interval_end, "interval_end")
    history = list(recent_volumes)[-model.data_quality.volume_history_intervals:]
    expected = float(statistics.median(history)) if history else None
    specs = build_expectations(model, expected_volume=expected, interval_end=end)
    suites = _GxSuites(_import_gx(), specs)
    checks = {s.name: s.check() if s.check is not None else _GxCounts(s.mostly) for s in specs}
    total = 0
    for number, chunk in enumerate(batches, start=1):
        if not isinstance(chunk, pd.DataFrame):
            kind = type(chunk).__name__
            raise TypeError(f"chunk {number}: expected a pandas DataFrame, got {kind}")
        _feed(chunk, specs, checks, suites)
        total += len(chunk)
        log.info("%s: validated chunk %d, %d rows so far", model.name, number, total)
    return _outcome(model, specs, checks, start, end)
