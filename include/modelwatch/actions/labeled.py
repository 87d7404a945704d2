"""The labeled predictions of past intervals, read back from the staging area.

Retraining and the rollback comparison both need, for a list of intervals,
the answered predictions that carry a label by now: their model input, the
label, the version that served them and the interval they belong to.

Each interval stages the labels known before its end, from feedback
partitions back to its label window (`extract.label_window_start`). So the
labels of an interval's predictions may sit in the FEEDBACK file of that
interval or of any later one: feedback is collected from every interval
from the earliest requested one up to `labels_until`, and
`metrics.join_labels` keeps the latest label per request.

Only the columns needed are read (request id, status, served version,
features; the timestamp when counting), feedback is kept only for requests
of the requested intervals, and a label that several intervals staged is
kept once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch import batch, catalogue, metrics, staging
from modelwatch.config import ModelConfig
from modelwatch.model_input import staged_model_frame

log = logging.getLogger(__name__)

Interval = tuple[datetime, datetime]

_FEEDBACK_COLUMNS = ["request_id", "label", "label_value", "label_timestamp"]


@dataclass(frozen=True)
class LabeledRows:
    """Answered predictions with a label, of some intervals.

    Attributes
    ----------
    inputs : DataFrame
        The pipeline input of each row (`model_input.staged_model_frame`).
    labels : ndarray
        Classification: 1 where the label is ``model.positive_label`` (compared
        as text), else 0. Regression: the label's value, float.
    served_versions : ndarray of str
        The ``model_version`` that answered each row.
    interval_positions : ndarray of int
        Each row's interval, as a position in `intervals`.
    intervals : tuple of (datetime, datetime)
        The requested intervals, in the order given.
    unpublished : tuple of (datetime, datetime)
        Intervals read for predictions or feedback that have no published
        staged batch: skipped, so their rows (or the labels they staged) are missing.
    """

    inputs: pd.DataFrame
    labels: np.ndarray
    served_versions: np.ndarray
    interval_positions: np.ndarray
    intervals: tuple[Interval, ...]
    unpublished: tuple[Interval, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> LabeledRows:
        """The rows selected by a boolean mask or an array of positions."""
        positions = np.flatnonzero(rows) if rows.dtype == bool else rows
        return LabeledRows(
            self.inputs.iloc[positions].reset_index(drop=True),
            self.labels[positions],
            self.served_versions[positions],
            self.interval_positions[positions],
            self.intervals,
            self.unpublished,
        )

    def labels_per_interval(self) -> list[int]:
        """How many rows each of `intervals` holds, in their order."""
        return np.bincount(self.interval_positions, minlength=len(self.intervals)).tolist()


def intervals_ending_at(model: ModelConfig, end: datetime, count: int) -> list[Interval]:
    """The `count` consecutive intervals of the model's schedule whose last one ends at `end`, oldest first."""
    length = model.interval_length
    return [(end - (count - i) * length, end - (count - i - 1) * length) for i in range(count)]


def read_labeled(
    model: ModelConfig, staging_url: str, intervals: Sequence[Interval], labels_until: datetime
) -> LabeledRows:
    """The answered, labeled predictions of `intervals`, with labels known by `labels_until`.

    Parameters
    ----------
    model : ModelConfig
        The model; gives its name, task, positive label and features.
    staging_url : str
        The staging area (`ProjectConfig.staging_url`).
    intervals : sequence of (datetime, datetime)
        Intervals of the model's schedule whose predictions are wanted.
    labels_until : datetime
        The end of the latest interval whose staged feedback is read (the
        current interval's end); not before the end of any of `intervals`.

    Returns
    -------
    LabeledRows
        Rows with ``status == "ok"`` and a usable label (classification: any
        label; regression: a numeric one), in the order of `intervals`.

    Raises
    ------
    ValueError
        `labels_until` is before the end of one of `intervals`.
    """
    staged = _StagedIntervals(model, staging_url, intervals, labels_until)
    features = [batch.feature_column(f.name) for f in model.features]
    # An empty frame of the staged columns stands in when no interval is published, so the shapes stay alike.
    answered = staged.answered(["model_version", *features]) or [
        (0, pd.DataFrame({name: pd.Series(dtype=object) for name in ["request_id", "model_version", *features]}))
    ]
    request_ids = pd.concat([frame["request_id"] for _, frame in answered], ignore_index=True)
    labeled, _ = metrics.join_labels(pd.DataFrame({"request_id": request_ids}), staged.feedback(request_ids))
    usable = _usable_label(model, labeled)
    # Unlabeled rows are dropped interval by interval, before their features are converted.
    ends = np.cumsum([len(frame) for _, frame in answered])
    kept = [(p, frame.loc[usable[end - len(frame):end]]) for (p, frame), end in zip(answered, ends, strict=True)]
    rows = LabeledRows(
        pd.concat([staged_model_frame(model, frame) for _, frame in kept], ignore_index=True),
        _label_vector(model, labeled)[usable],
        np.concatenate([frame["model_version"].to_numpy(dtype=str) for _, frame in kept]),
        np.concatenate([np.full(len(frame), p, dtype=np.int64) for p, frame in kept]),
        tuple(intervals),
        staged.unpublished,
    )
    log.info(
        "%s: %d labeled predictions in %d intervals (labels known by %s); unpublished intervals: %s",
        model.name, len(rows), len(intervals), labels_until.isoformat(),
        [start.isoformat() for start, _ in staged.unpublished] or "none",
    )
    return rows


def count_labeled(
    model: ModelConfig,
    staging_url: str,
    intervals: Sequence[Interval],
    labels_until: datetime,
    served_since: datetime | None = None,
) -> int:
    """How many answered predictions of `intervals` carry a usable label known by `labels_until`.

    The rows `read_labeled` would return, counted without reading features;
    with `served_since`, only those whose ``timestamp`` is at or after it.
    """
    staged = _StagedIntervals(model, staging_url, intervals, labels_until)
    answered = staged.answered(["timestamp"])
    if served_since is not None:
        answered = [(p, frame.loc[frame["timestamp"] >= pd.Timestamp(served_since)]) for p, frame in answered]
    if not answered:
        return 0
    request_ids = pd.concat([frame["request_id"] for _, frame in answered], ignore_index=True)
    labeled, _ = metrics.join_labels(pd.DataFrame({"request_id": request_ids}), staged.feedback(request_ids))
    return int(_usable_label(model, labeled).sum())


def first_served(model: ModelConfig, staging_url: str, intervals: Sequence[Interval], version: str) -> datetime | None:
    """When `version` first answered a request (ok or error) in the published `intervals`; None if it never did."""
    for start, end in sorted(intervals):
        staged = staging.published(staging_url, model.name, start, end)
        if staged is None:
            continue
        frame = staged.read(staging.PREDICTIONS, columns=["model_version", "timestamp"])
        served = frame.loc[frame["model_version"] == str(version), "timestamp"]
        if len(served):
            return served.min().to_pydatetime()
    return None


class _StagedIntervals:
    """The published batches of the requested intervals and of those whose feedback is read."""

    def __init__(self, model: ModelConfig, staging_url: str, intervals: Sequence[Interval], labels_until: datetime):
        late = [end for _, end in intervals if end > labels_until]
        if late:
            raise ValueError(
                f"labels_until ({labels_until.isoformat()}) is before the end of a requested interval "
                f"({max(late).isoformat()}); expected the current interval's end or later"
            )
        self.intervals = list(intervals)
        self.feedback_intervals = _feedback_intervals(model, self.intervals, labels_until)
        self.published = {
            interval: staging.published(staging_url, model.name, *interval)
            for interval in dict.fromkeys(self.intervals + self.feedback_intervals)
        }
        self.unpublished = tuple(sorted(interval for interval, found in self.published.items() if found is None))

    def answered(self, columns: list[str]) -> list[tuple[int, pd.DataFrame]]:
        """The ok rows (`request_id` and `columns`) of each published requested interval, with its position."""
        answered = []
        for position, interval in enumerate(self.intervals):
            staged = self.published[interval]
            if staged is not None:
                frame = staged.read(staging.PREDICTIONS, columns=["request_id", "status", *columns])
                answered.append((position, frame.loc[frame["status"] == "ok"].reset_index(drop=True)))
        return answered

    def feedback(self, request_ids: pd.Series) -> pd.DataFrame:
        """The staged labels of `request_ids` from the feedback of every interval up to `labels_until`."""
        # Arrow's hash lookup: pandas' isin on Arrow strings compares in Python, seconds per 100k ids.
        wanted = pa.array(pd.unique(request_ids.astype(str)), type=pa.string())
        pieces = [
            chunk.loc[_among(chunk["request_id"], wanted)].astype({"label": object})
            for interval in self.feedback_intervals
            if (staged := self.published[interval]) is not None
            for chunk in staged.iter_chunks(staging.FEEDBACK, columns=_FEEDBACK_COLUMNS)
        ]
        if not pieces:
            return pd.DataFrame({
                "request_id": pd.Series(dtype=object),
                "label": pd.Series(dtype=object),
                "label_value": pd.Series(dtype=float),
                "label_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
            })
        # Consecutive intervals stage the same labels: an exact copy is kept once,
        # and join_labels chooses among the labels that differ.
        return pd.concat(pieces, ignore_index=True).drop_duplicates(ignore_index=True)


def _among(ids: pd.Series, wanted: pa.Array) -> np.ndarray:
    """Mask of the `ids` that are in `wanted`."""
    found = pc.is_in(pa.array(ids.astype(str), type=pa.string()), value_set=wanted)
    return found.to_numpy(zero_copy_only=False)


def _feedback_intervals(model: ModelConfig, intervals: list[Interval], labels_until: datetime) -> list[Interval]:
    """Every interval of the schedule from the earliest requested one to the one ending at `labels_until`."""
    if not intervals:
        return []
    first = min(start for start, _ in intervals)
    return intervals_ending_at(model, labels_until, round((labels_until - first) / model.interval_length))


def _label_vector(model: ModelConfig, labeled: pd.DataFrame) -> np.ndarray:
    """1/0 for the positive class (labels compared as text), or the regression label's value."""
    if model.task == catalogue.CLASSIFICATION:
        return (labeled["label"].astype(str).to_numpy() == model.positive_label).astype(np.int64)
    return labeled["label_value"].to_numpy(dtype=float, na_value=np.nan)


def _usable_label(model: ModelConfig, labeled: pd.DataFrame) -> np.ndarray:
    """Rows whose label the model's task can use: any label for classification, a number for regression."""
    if model.task == catalogue.CLASSIFICATION:
        return labeled["label"].notna().to_numpy()
    return np.isfinite(labeled["label_value"].to_numpy(dtype=float, na_value=np.nan))
