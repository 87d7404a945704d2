"""Model-quality metrics and system KPIs of one interval, as `model_metrics` rows.

Every public function returns a DataFrame with the columns of
`METRIC_COLUMNS`, one row per (model_version, segment, metric):

- the overall row has ``model_version == segment == "all"`` (`batch.ALL`);
- a per-version row names the version and has ``segment == "all"``;
- a per-segment row has ``model_version == "all"`` and ``segment`` like
  ``"country=DE"``; rows whose segment value is null fall under
  ``"country=(missing)"``.

Nullable numbers (``value``, ``label_coverage``) are Python floats or None in
object columns, so that they load as SQL NULL and never as NaN. A metric that
is undefined on its data (AUC with one class, precision without predicted
positives, anything on zero rows) has value None and still reports its
``sample_size``.

All work is vectorised over the whole frame: rows are assigned an integer
group code per grouping (overall, version, each segment key) and sums are
taken with `numpy.bincount`; rank-based metrics (AUC, latency percentiles)
use one sort by value followed by a stable radix sort by group. Only the
columns a function names are read, so callers can load just
`quality_columns(model)` / `system_columns(model)` from the staged files.
Latency percentiles need every latency of the interval at once (8 bytes a
request), so system KPIs are not merged across row chunks.

Values agree with `sklearn.metrics` on the same rows: accuracy, precision,
recall and f1 (``zero_division=nan``), ``roc_auc_score``, ``log_loss``
(probabilities clipped to ``[eps, 1 - eps]`` with eps of float64),
``brier_score_loss``, ``mean_absolute_error``, ``root_mean_squared_error``,
``mean_absolute_percentage_error`` on the rows with a non-zero label (rows with
label 0 are left out instead of being divided by machine epsilon) and
``r2_score(force_finite=False)`` (None when the labels are constant).
``calibration_error`` is the expected calibration error over the bins of
``sklearn.calibration.calibration_curve(strategy="uniform", n_bins=10)``,
weighted by each bin's share of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch import batch, catalogue
from modelwatch.config import ModelConfig

METRIC_COLUMNS = [
    "model_name",
    "model_version",
    "interval_start",
    "interval_end",
    "segment",
    "metric",
    "kind",
    "value",
    "sample_size",
    "label_coverage",
]
# Names and order come from the catalogue; the computations below produce them in that order.
CLASSIFICATION_METRICS = tuple(catalogue.names("quality", catalogue.CLASSIFICATION))
REGRESSION_METRICS = tuple(catalogue.names("quality", catalogue.REGRESSION))
LATENCY_QUANTILES = catalogue.LATENCY_QUANTILES
CALIBRATION_BINS = 10
MISSING = "(missing)"
ERROR_COUNT_PREFIX = "error_count."

_SYSTEM_BASE_COLUMNS = ["timestamp", "model_version", "status", "error", "latency_ms"]
_FEEDBACK_COLUMNS = ["label", "label_value", "label_timestamp"]
_UNITS_PER_MINUTE = {"s": 60, "ms": 60_000, "us": 60_000_000, "ns": 60_000_000_000}


@dataclass(frozen=True)
class GroupedMetric:
    """One metric over every group of a grouping.

    Attributes
    ----------
    name : str
        Metric name as stored in ``model_metrics.metric``.
    values : numpy.ndarray
        Value per group; NaN or infinity marks an undefined value.
    sample_sizes : numpy.ndarray
        Rows the value was computed from, per group.
    """

    name: str
    values: np.ndarray
    sample_sizes: np.ndarray


@dataclass(frozen=True)
class Grouping:
    """Rows assigned to groups: a code per row and the labels of each group.

    Attributes
    ----------
    kind : {"overall", "version", "segment"}
        What splits the rows.
    codes : numpy.ndarray
        Group code (0 .. size-1) of every row.
    versions, segments : list of str
        ``model_version`` and ``segment`` label of each group.
    """

    kind: Literal["overall", "version", "segment"]
    codes: np.ndarray
    versions: list[str]
    segments: list[str]

    @property
    def size(self) -> int:
        return len(self.versions)

    def restrict(self, rows: np.ndarray) -> Grouping:
        """The grouping of the selected rows; groups left empty are dropped,
        except the overall group, which always stays.

        Parameters
        ----------
        rows : numpy.ndarray of bool
            Row mask over the rows of this grouping.
        """
        codes = self.codes[rows]
        present = (np.bincount(codes, minlength=self.size) > 0) | (self.kind == "overall")
        remap = np.cumsum(present) - 1
        keep = np.flatnonzero(present)
        return Grouping(
            kind=self.kind,
            codes=remap[codes],
            versions=[self.versions[i] for i in keep],
            segments=[self.segments[i] for i in keep],
        )


# ---------------------------------------------------------------------------
# boundary checks shared with `modelwatch.drift`


def normalize_interval(
    interval_start: datetime | str, interval_end: datetime | str
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Check an interval and return its bounds as UTC timestamps.

    Naive datetimes are taken as UTC.

    Raises
    ------
    ValueError
        When a bound is not a date-time or the interval is empty.
    """
    bounds = []
    for name, value in (("interval_start", interval_start), ("interval_end", interval_end)):
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a datetime (got {value!r})") from None
        if pd.isna(stamp):
            raise ValueError(f"{name}: expected a datetime (got {value!r})")
        bounds.append(stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
    start, end = bounds
    if end <= start:
        raise ValueError(f"interval_end ({end}) must be after interval_start ({start})")
    return start, end


def require_columns(
    frame: Any,
    columns: Sequence[str],
    what: str,
    expected: str = "the staged prediction columns of modelwatch.batch.prediction_schema",
) -> None:
    """Raise a clear error unless `frame` is a DataFrame holding `columns`.

    Parameters
    ----------
    frame : object
        The argument to check.
    columns : sequence of str
        Column names the caller reads.
    what : str
        How to name the argument in the message, e.g. ``"quality_metrics: labeled"``.
    expected : str
        What the frame should be, for the message.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame (got {type(frame).__name__})")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; expected {expected}")


def ok_rows(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the rows the model answered (``status == "ok"``)."""
    return _flag(frame["status"].eq("ok"))


def float_values(values: pd.Series, what: str) -> np.ndarray:
    """A numeric column as float64 with null as NaN (no copy for float64 columns).

    Object columns of numbers and None are accepted; text is not.

    Raises
    ------
    ValueError
        Naming `what` when the column does not hold numbers.
    """
    if values.dtype == np.float64:
        return values.to_numpy()
    if values.dtype == object:
        try:
            values = pd.to_numeric(values, errors="raise")
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected numbers (got text or other values)") from None
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raise ValueError(f"{what}: expected numbers (got dtype {values.dtype})")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def segment_columns(model: ModelConfig) -> dict[str, str]:
    """Segment key -> staged column, for every segment key the model configures."""
    return {key: batch.segment_column(model, key) for key in model.segments}


def quality_columns(model: ModelConfig) -> list[str]:
    """Staged prediction columns `quality_metrics` reads (before `join_labels`)."""
    outputs = (
        ["prediction", "score"] if model.task == "binary_classification" else ["prediction_value"]
    )
    return ["request_id", "model_version", "status", *outputs, *segment_columns(model).values()]


def system_columns(model: ModelConfig) -> list[str]:
    """Staged prediction columns `system_kpis` reads, segment columns included."""
    return [*_SYSTEM_BASE_COLUMNS, *segment_columns(model).values()]


# ---------------------------------------------------------------------------
# public metrics


def join_labels(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Attach the latest label of each request to its prediction.

    Parameters
    ----------
    predictions : DataFrame
        Staged predictions with a unique ``request_id``.
    feedback : DataFrame
        Staged feedback: ``request_id``, ``label``, ``label_value``,
        ``label_timestamp``. Several labels for one request may be present;
        the one with the latest ``label_timestamp`` wins (on equal timestamps,
        the later row).

    Returns
    -------
    joined : DataFrame
        `predictions` plus ``label``, ``label_value`` and ``label_timestamp``
        (null where no label arrived). The prediction columns are shared, not
        copied.
    orphans : int
        Number of distinct feedback request_ids that match no prediction.
    """
    require_columns(predictions, ["request_id"], "join_labels: predictions")
    require_columns(
        feedback,
        ["request_id", *_FEEDBACK_COLUMNS],
        "join_labels: feedback",
        "the staged feedback columns of modelwatch.batch.FEEDBACK_SCHEMA",
    )
    clashing = [c for c in _FEEDBACK_COLUMNS if c in predictions.columns]
    if clashing:
        raise ValueError(f"join_labels: predictions already have label columns {clashing}")
    latest = (
        feedback[["request_id", *_FEEDBACK_COLUMNS]]
        .sort_values("label_timestamp", kind="stable", na_position="first")
        .drop_duplicates("request_id", keep="last")
    )
    position = _positions(predictions["request_id"], latest["request_id"])
    matched = np.zeros(len(latest), dtype=bool)
    matched[position[position >= 0]] = True
    orphans = int(len(latest) - matched.sum())
    labels = {
        column: latest[column].array.take(position, allow_fill=True) for column in _FEEDBACK_COLUMNS
    }
    return predictions.assign(**labels), orphans


def quality_metrics(
    labeled: pd.DataFrame,
    model: ModelConfig,
    interval_start: datetime | str,
    interval_end: datetime | str,
) -> pd.DataFrame:
    """Model-quality metrics overall, per model version and per segment value.

    Only rows with ``status == "ok"`` count; among them, rows with a label are
    scored. For binary classification the positive class is
    ``model.positive_label`` (canonical text, compared with ``prediction``
    and ``label``); score metrics use the rows with a ``score``. For
    regression the metrics use ``prediction_value`` and ``label_value``.
    ``positive_rate`` needs no label: it is the share of predicted positives
    among all answered rows, and its sample_size counts those rows.

    Parameters
    ----------
    labeled : DataFrame
        Staged predictions joined with feedback (see `join_labels`).
    model : ModelConfig
        The model; gives the task, positive label and segment keys.
    interval_start, interval_end : datetime
        The interval the rows belong to (``end > start``).

    Returns
    -------
    DataFrame
        `METRIC_COLUMNS`, ``kind == "quality"``; ``label_coverage`` is the
        share of answered rows in the group that carry a label. Groups
        without answered rows are left out, except the overall one, which is
        always there (with None values when nothing was answered).
    """
    start, end = normalize_interval(interval_start, interval_end)
    segments = segment_columns(model)
    classification = model.task == "binary_classification"
    if classification:
        needed = ["prediction", "score", "label"]
    else:
        needed = ["prediction_value", "label", "label_value"]
    columns = ["model_version", "status", *needed, *segments.values()]
    require_columns(labeled, columns, "quality_metrics: labeled")
    ok = ok_rows(labeled)
    has_label = _flag(labeled["label"].notna())[ok]
    if classification:
        measure = _binary_measure(labeled, ok, has_label, model.positive_label)
    else:
        measure = _regression_measure(labeled, ok, has_label)
    frames = []
    for grouping in _groupings(labeled, segments):
        group = grouping.restrict(ok)
        served = np.bincount(group.codes, minlength=group.size)
        labeled_count = _count(group.codes, has_label, group.size)
        coverage = _ratio(labeled_count, served)
        frames.append(_rows(model.name, start, end, "quality", group, measure(group), coverage))
    return pd.concat(frames, ignore_index=True)


def system_kpis(
    predictions: pd.DataFrame,
    model_name: str,
    interval_start: datetime | str,
    interval_end: datetime | str,
    *,
    segments: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Volume, throughput, latency and error KPIs of every request, ok or error.

    Per model version and overall: ``request_count``, ``error_rate``,
    ``throughput_mean_rps`` (requests per second of the interval),
    ``throughput_peak_rps`` (busiest clock minute's requests / 60),
    ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms`` (numpy's
    linear interpolation), ``latency_max_ms``, and ``error_count.<error>``
    for every distinct error of the frame (zero where a group did not see
    it). Per segment value: ``request_count`` and ``error_rate``.

    Parameters
    ----------
    predictions : DataFrame
        Staged predictions; reads `system_columns`.
    model_name : str
        Written to the ``model_name`` column.
    interval_start, interval_end : datetime
        The interval (``end > start``); its length divides the request count.
    segments : mapping of str to str, optional
        Segment key -> column (see `segment_columns`); none by default.

    Returns
    -------
    DataFrame
        `METRIC_COLUMNS`, ``kind == "system"``, ``label_coverage`` None,
        ``sample_size`` the group's request count (latency: requests with a
        latency).
    """
    start, end = normalize_interval(interval_start, interval_end)
    segments = dict(segments or {})
    require_columns(
        predictions, [*_SYSTEM_BASE_COLUMNS, *segments.values()], "system_kpis: predictions"
    )
    failed = _flag(predictions["status"].eq("error"))
    error_codes, error_names = _factorize(predictions["error"][failed])
    seconds = (end - start).total_seconds()
    minutes = _minutes(predictions["timestamp"])
    latency = float_values(predictions["latency_ms"], "system_kpis: latency_ms")
    timed = ~np.isnan(latency)
    latency = latency[timed]
    latency_order = np.argsort(latency)
    frames = []
    for grouping in _groupings(predictions, segments):
        requests = np.bincount(grouping.codes, minlength=grouping.size)
        errors = _count(grouping.codes, failed, grouping.size)
        measured = [
            GroupedMetric("request_count", requests.astype(float), requests),
            GroupedMetric("error_rate", _ratio(errors, requests), requests),
        ]
        if grouping.kind != "segment":
            measured += [
                GroupedMetric("throughput_mean_rps", requests / seconds, requests),
                GroupedMetric("throughput_peak_rps", _peak_rps(minutes, grouping), requests),
            ]
            measured += _latency(latency, latency_order, grouping.codes[timed], grouping.size)
            kinds = len(error_names)
            counts = _error_counts(grouping.codes[failed], grouping.size, error_codes, kinds)
            measured += [
                GroupedMetric(ERROR_COUNT_PREFIX + name, counts[:, i].astype(float), requests)
                for i, name in enumerate(error_names)
            ]
        frames.append(_rows(model_name, start, end, "system", grouping, measured, None))
    return pd.concat(frames, ignore_index=True)


def _positions(keys: pd.Series, lookup: pd.Series) -> np.ndarray:
    """Row of the unique `lookup` holding each text key; -1 where none does."""
    try:
        keys_text = pa.array(keys, type=pa.large_string())
        lookup_text = pa.array(lookup, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise ValueError(
            f"join_labels: request_id must be text in predictions ({keys.dtype}) "
            f"and feedback ({lookup.dtype})"
        ) from None
    found = pc.index_in(keys_text, value_set=lookup_text)
    return pc.fill_null(found, -1).to_numpy().astype(np.intp)


# ---------------------------------------------------------------------------
# groupings


def _groupings(frame: pd.DataFrame, segments: Mapping[str, str]) -> list[Grouping]:
    """Overall, per model version, and per value of each segment key."""
    groupings = [Grouping("overall", np.zeros(len(frame), dtype=np.int32), [batch.ALL], [batch.ALL])]
    codes, names = _factorize(frame["model_version"])
    groupings.append(Grouping("version", codes, names, [batch.ALL] * len(names)))
    for key, column in segments.items():
        codes, names = _factorize(frame[column])
        segment_names = [f"{key}={name}" for name in names]
        groupings.append(Grouping("segment", codes, [batch.ALL] * len(names), segment_names))
    return groupings


def _factorize(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes and text names of a column's distinct values; null -> `MISSING`."""
    codes, uniques = pd.factorize(values, sort=True)
    names = [_text(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING)
    # int32 codes: a 10M-row interval's groupings cost 40 MB each, not 80.
    return codes.astype(np.int32, copy=False), names


def _text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _order_by_group(value_order: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Refine an order that sorts the values into one sorted by group, then value.

    A stable sort on small integer codes is a radix sort, so the expensive
    value sort is done once and shared by every grouping.
    """
    small = np.int16 if groups <= np.iinfo(np.int16).max else np.int64
    return value_order[np.argsort(codes[value_order].astype(small), kind="stable")]


# ---------------------------------------------------------------------------
# quality


def _binary_measure(
    frame: pd.DataFrame, ok: np.ndarray, has_label: np.ndarray, positive: str
) -> Callable[[Grouping], list[GroupedMetric]]:
    """Prepare the answered rows once; return the per-grouping computation."""
    actual = _flag(frame["label"].eq(positive))[ok]
    predicted = _flag(frame["prediction"].eq(positive))[ok]
    has_prediction = _flag(frame["prediction"].notna())[ok]
    score = float_values(frame["score"], "quality_metrics: score")[ok]
    judged = has_label & has_prediction
    scored = has_label & np.isfinite(score)
    scored_actual, scored_score = actual[scored], score[scored]
    score_order = np.argsort(scored_score)

    def measure(group: Grouping) -> list[GroupedMetric]:
        def count(mask: np.ndarray) -> np.ndarray:
            return _count(group.codes, mask, group.size)

        n = count(judged)
        tp = count(judged & actual & predicted)
        fp = count(judged & ~actual & predicted)
        fn = count(judged & actual & ~predicted)
        answered = count(has_prediction)
        score_codes = group.codes[scored]
        return [
            GroupedMetric("accuracy", _ratio(n - fp - fn, n), n),
            GroupedMetric("precision", _ratio(tp, tp + fp), n),
            GroupedMetric("recall", _ratio(tp, tp + fn), n),
            GroupedMetric("f1", _ratio(2 * tp, 2 * tp + fp + fn), n),
            *_score_metrics(scored_actual, scored_score, score_order, score_codes, group.size),
            GroupedMetric("positive_rate", _ratio(count(predicted), answered), answered),
        ]

    return measure


def _score_metrics(
    actual: np.ndarray, score: np.ndarray, order: np.ndarray, codes: np.ndarray, size: int
) -> list[GroupedMetric]:
    """auc_roc, log_loss, brier_score and calibration_error of scored rows."""
    n = np.bincount(codes, minlength=size)
    eps = np.finfo(score.dtype).eps
    log_likelihood = np.where(
        actual, np.log(np.clip(score, eps, 1 - eps)), np.log(np.clip(1 - score, eps, 1 - eps))
    )
    squared = (score - actual) ** 2
    return [
        GroupedMetric("auc_roc", _grouped_auc(actual, score, order, codes, size), n),
        GroupedMetric("log_loss", _ratio(-np.bincount(codes, log_likelihood, size), n), n),
        GroupedMetric("brier_score", _ratio(np.bincount(codes, squared, size), n), n),
        GroupedMetric("calibration_error", _calibration_error(actual, score, codes, size), n),
    ]


def _grouped_auc(
    actual: np.ndarray, score: np.ndarray, order: np.ndarray, codes: np.ndarray, size: int
) -> np.ndarray:
    """ROC AUC per group: the Mann-Whitney statistic with mid-ranks for ties.

    `order` sorts `score`; undefined (NaN) where a group lacks either class.
    """
    n = np.bincount(codes, minlength=size)
    positives = _count(codes, actual, size)
    negatives = n - positives
    if len(score) == 0:
        return np.full(size, np.nan)
    order = _order_by_group(order, codes, size)
    sorted_score, sorted_codes = score[order], codes[order]
    new_tie = np.empty(len(order), dtype=bool)
    new_tie[0] = True
    new_tie[1:] = (sorted_score[1:] != sorted_score[:-1]) | (sorted_codes[1:] != sorted_codes[:-1])
    tie_start = np.flatnonzero(new_tie)
    tie_end = np.append(tie_start[1:], len(order))
    mid_rank = (tie_start + tie_end + 1) / 2
    group_start = np.cumsum(n) - n
    rank = mid_rank[np.cumsum(new_tie) - 1] - group_start[sorted_codes]
    rank_sum = np.bincount(sorted_codes, weights=rank * actual[order], minlength=size)
    return _ratio(rank_sum - positives * (positives + 1) / 2, positives * negatives)


def _calibration_error(
    actual: np.ndarray, score: np.ndarray, codes: np.ndarray, size: int
) -> np.ndarray:
    """Expected calibration error on `CALIBRATION_BINS` equal-width score bins.

    Sum over bins of (bin rows / rows) * |mean label - mean score|, which is
    |sum of labels - sum of scores| / rows.
    """
    inner_edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1]
    cell = codes * CALIBRATION_BINS + np.searchsorted(inner_edges, score)
    cells = size * CALIBRATION_BINS
    gap = np.bincount(cell, weights=actual, minlength=cells) - np.bincount(
        cell, weights=score, minlength=cells
    )
    n = np.bincount(codes, minlength=size)
    return _ratio(np.abs(gap).reshape(size, CALIBRATION_BINS).sum(axis=1), n)


def _regression_measure(
    frame: pd.DataFrame, ok: np.ndarray, has_label: np.ndarray
) -> Callable[[Grouping], list[GroupedMetric]]:
    """Prepare the answered rows once; return the per-grouping computation."""
    predicted = float_values(frame["prediction_value"], "quality_metrics: prediction_value")[ok]
    actual = float_values(frame["label_value"], "quality_metrics: label_value")[ok]
    used = has_label & np.isfinite(predicted) & np.isfinite(actual)
    actual, error = actual[used], predicted[used] - actual[used]
    nonzero = actual != 0
    relative = np.abs(error[nonzero]) / np.abs(actual[nonzero])

    def measure(group: Grouping) -> list[GroupedMetric]:
        codes, size = group.codes[used], group.size
        n = np.bincount(codes, minlength=size)
        n_nonzero = np.bincount(codes[nonzero], minlength=size)
        mean = np.nan_to_num(_ratio(np.bincount(codes, actual, size), n))
        total = np.bincount(codes, (actual - mean[codes]) ** 2, size)
        residual = np.bincount(codes, error**2, size)
        return [
            GroupedMetric("mae", _ratio(np.bincount(codes, np.abs(error), size), n), n),
            GroupedMetric("rmse", np.sqrt(_ratio(residual, n)), n),
            GroupedMetric(
                "mape", _ratio(np.bincount(codes[nonzero], relative, size), n_nonzero), n_nonzero
            ),
            GroupedMetric("r2", 1 - _ratio(residual, total), n),
        ]

    return measure


# ---------------------------------------------------------------------------
# system


def _minutes(timestamps: pd.Series) -> np.ndarray:
    """Clock minute (since the epoch) of every timestamp."""
    if not pd.api.types.is_datetime64_any_dtype(timestamps.dtype):
        raise ValueError(f"system_kpis: 'timestamp' must hold datetimes (got {timestamps.dtype})")
    if timestamps.isna().any():
        raise ValueError("system_kpis: 'timestamp' has nulls; every request needs a timestamp")
    array = timestamps.array
    return array.asi8 // _UNITS_PER_MINUTE[array.unit]


def _peak_rps(minutes: np.ndarray, grouping: Grouping) -> np.ndarray:
    """Per group, the most requests seen in one clock minute, divided by 60."""
    peak = np.zeros(grouping.size)
    if len(minutes):
        offset = minutes - minutes.min()
        span = int(offset.max()) + 1
        cell, counts = np.unique(grouping.codes * span + offset, return_counts=True)
        np.maximum.at(peak, cell // span, counts / 60.0)
    return peak


def _latency(
    latency: np.ndarray, order: np.ndarray, codes: np.ndarray, size: int
) -> list[GroupedMetric]:
    """Latency percentiles and maximum per group; `order` sorts `latency`."""
    n = np.bincount(codes, minlength=size)
    quantiles = [*LATENCY_QUANTILES.values(), 1.0]
    names = [*LATENCY_QUANTILES, "latency_max_ms"]
    values = _grouped_quantiles(latency, order, codes, n, quantiles)
    return [GroupedMetric(name, v, n) for name, v in zip(names, values, strict=True)]


def _grouped_quantiles(
    values: np.ndarray,
    order: np.ndarray,
    codes: np.ndarray,
    n: np.ndarray,
    quantiles: Sequence[float],
) -> list[np.ndarray]:
    """Per-group quantiles with numpy's default linear interpolation; NaN for empty groups."""
    if len(values) == 0:
        return [np.full(len(n), np.nan) for _ in quantiles]
    ordered = values[_order_by_group(order, codes, len(n))]
    first = np.cumsum(n) - n
    last = first + np.maximum(n, 1) - 1
    result = []
    for q in quantiles:
        position = q * (np.maximum(n, 1) - 1)
        low = np.floor(position).astype(np.intp)
        below = ordered[np.minimum(first + low, len(ordered) - 1)]
        above = ordered[np.minimum(np.minimum(first + low + 1, last), len(ordered) - 1)]
        result.append(np.where(n > 0, below + (position - low) * (above - below), np.nan))
    return result


def _error_counts(
    failed_codes: np.ndarray, size: int, error_codes: np.ndarray, kinds: int
) -> np.ndarray:
    """(group, error kind) table of failed-request counts."""
    table = np.bincount(failed_codes * kinds + error_codes, minlength=size * kinds)
    return table.reshape(size, kinds)


# ---------------------------------------------------------------------------
# shared helpers


def _flag(values: pd.Series) -> np.ndarray:
    """A boolean Series as a numpy mask, null counting as False."""
    return values.to_numpy(dtype=bool, na_value=False)


def _count(codes: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Rows of each group where `mask` holds, as floats.

    Counting the selected codes is several times faster than weighting every
    row by the mask, which first turns a 10M-row mask into 80 MB of floats.
    """
    return np.bincount(codes[mask], minlength=size).astype(float)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division, NaN where the denominator is zero."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _nullable(values: Sequence[float] | np.ndarray) -> pd.Series:
    """Finite floats as Python floats, anything else as None (object dtype)."""
    return pd.Series(
        [float(v) if v is not None and np.isfinite(v) else None for v in values], dtype=object
    )


def _rows(
    model_name: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    kind: str,
    grouping: Grouping,
    measured: Sequence[GroupedMetric],
    coverage: np.ndarray | None,
) -> pd.DataFrame:
    """Long-format rows: one per group and metric, groups outermost."""
    size, count = grouping.size, len(measured)
    values = np.column_stack([m.values for m in measured]).ravel()
    sizes = np.column_stack([m.sample_sizes for m in measured]).ravel()
    coverage_values = (
        np.repeat(coverage, count) if coverage is not None else [None] * (size * count)
    )
    return pd.DataFrame(
        {
            "model_name": model_name,
            "model_version": np.repeat(grouping.versions, count),
            "interval_start": start,
            "interval_end": end,
            "segment": np.repeat(grouping.segments, count),
            "metric": [m.name for m in measured] * size,
            "kind": kind,
            "value": _nullable(values),
            "sample_size": np.asarray(sizes, dtype=np.int64),
            "label_coverage": _nullable(coverage_values),
        },
        columns=METRIC_COLUMNS,
    )
