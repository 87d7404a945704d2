"""The one shape every check returns, and the history it reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

OK = "ok"
BREACHED = "breached"
INSUFFICIENT_HISTORY = "insufficient_history"
INSUFFICIENT_LABELS = "insufficient_labels"
NO_BASELINE = "no_baseline"
NOT_MEASURED = "not_measured"
JUDGED = (OK, BREACHED)
"""Statuses of a check that reached a verdict."""


@dataclass(frozen=True)
class CheckRow:
    """One check of one interval, as stored in `check_results`.

    Attributes
    ----------
    check_name : str
        Unique per model and interval, e.g. ``threshold:auc_roc`` or ``control_limit:error_rate``.
    check_kind : {"threshold", "control_limit", "isolation_forest"}
    status : str
        ``ok``, ``breached``, or why no verdict: ``insufficient_history``,
        ``insufficient_labels``, ``no_baseline``, ``not_measured``.
    observed : float or None
        The interval's value (for the anomaly detector: its anomaly score).
    limit_low, limit_high : float or None
        The allowed range; None where a side is open.
    baseline : float or None
        What the limits are centred on (history mean, trailing median, champion value).
    score : float or None
        Standard errors from the baseline in the bad direction (control limits),
        or the anomaly score (isolation forest).
    consecutive : int
        Breaches in a row needed before the check alerts.
    streak, breached_since, alerting
        Filled by `streaks.continue_streaks`.
    facts : dict
        Small extras for reasons and decisions (e.g. the most deviating metrics).
    """

    interval_start: datetime
    interval_end: datetime
    check_name: str
    check_kind: str
    metric: str | None
    status: str
    severity: str
    reason: str
    observed: float | None = None
    limit_low: float | None = None
    limit_high: float | None = None
    baseline: float | None = None
    score: float | None = None
    sample_size: int | None = None
    consecutive: int = 1
    streak: int = 0
    breached_since: datetime | None = None
    alerting: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def breached(self) -> bool:
        return self.status == BREACHED

    def but(self, **changes: Any) -> CheckRow:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MetricHistory:
    """One metric's values over the judged interval's trailing history.

    Attributes
    ----------
    values, sample_sizes : numpy.ndarray
        Oldest first, one entry per earlier interval that has the metric.
    starts : list of datetime
        The intervals the entries belong to.
    """

    values: np.ndarray
    sample_sizes: np.ndarray
    starts: list[datetime]

    def __len__(self) -> int:
        return len(self.values)


class History:
    """The model's interval values (`warehouse.queries.interval_values`), sliced per judged interval.

    Parameters
    ----------
    frame : DataFrame
        Long rows: ``interval_start``, ``interval_end``, ``metric``, ``value``,
        ``sample_size``, ``run_status``.
    """

    def __init__(self, frame: pd.DataFrame):
        usable = frame[frame["value"].notna() & np.isfinite(frame["value"].astype(float))]
        self.values = usable.pivot_table(index="interval_start", columns="metric", values="value", aggfunc="last")
        self.sizes = usable.pivot_table(
            index="interval_start", columns="metric", values="sample_size", aggfunc="last"
        ).reindex_like(self.values)
        status = frame.drop_duplicates("interval_start").set_index("interval_start")["run_status"]
        self.status = status.reindex(self.values.index)

    def value(self, start: datetime, metric: str) -> tuple[float | None, int | None]:
        """The interval's value and sample size of a metric (None when not measured)."""
        stamp = pd.Timestamp(start)
        if stamp not in self.values.index or metric not in self.values.columns:
            return None, None
        value = self.values.at[stamp, metric]
        if pd.isna(value):
            return None, None
        return float(value), int(self.sizes.at[stamp, metric])

    def before(self, start: datetime, metric: str, limit: int, exclude: int = 0) -> MetricHistory:
        """Up to `limit` earlier values of `metric` from successful runs, skipping the latest `exclude` intervals.

        Halted intervals are not history: their data was bad.
        """
        stamp = pd.Timestamp(start)
        if metric not in self.values.columns:
            return MetricHistory(np.zeros(0), np.zeros(0, dtype=np.int64), [])
        earlier = self.values.index[(self.values.index < stamp) & (self.status == "success").to_numpy()]
        earlier = earlier[: len(earlier) - exclude] if exclude else earlier
        column = self.values.loc[earlier, metric].dropna().iloc[-limit:]
        sizes = self.sizes.loc[column.index, metric].to_numpy(dtype=np.int64)
        return MetricHistory(column.to_numpy(dtype=float), sizes, [t.to_pydatetime() for t in column.index])

    def recent(self, start: datetime, metric: str, count: int) -> MetricHistory:
        """The values of `metric` of the `count` intervals ending with `start` (fewer if some lack it).

        The intervals before `start` are successful ones, as in `before`: a halted interval's data was bad.
        """
        stamp = pd.Timestamp(start)
        if metric not in self.values.columns:
            return MetricHistory(np.zeros(0), np.zeros(0, dtype=np.int64), [])
        earlier = (self.values.index < stamp) & (self.status == "success").to_numpy()
        index = self.values.index[earlier | (self.values.index == stamp)][-count:]
        column = self.values.loc[index, metric].dropna()
        sizes = self.sizes.loc[column.index, metric].to_numpy(dtype=np.int64)
        return MetricHistory(column.to_numpy(dtype=float), sizes, [t.to_pydatetime() for t in column.index])

    def vectors(self, start: datetime, metrics: list[str], limit: int) -> tuple[pd.DataFrame, pd.Series | None]:
        """The successful earlier intervals' values of `metrics` (up to `limit`) and the interval's own."""
        stamp = pd.Timestamp(start)
        columns = [m for m in metrics if m in self.values.columns]
        successful = (self.status == "success").to_numpy()
        earlier = self.values.index[(self.values.index < stamp) & successful][-limit:]
        own = self.values.loc[stamp, columns] if stamp in self.values.index else None
        return self.values.loc[earlier, columns], own


def to_message(row: CheckRow) -> dict[str, Any]:
    """A check row as a JSON-ready dict (times as ISO text), for passing between tasks."""
    values = row.to_dict()
    for name in ("interval_start", "interval_end", "breached_since"):
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return values


def from_message(values: dict[str, Any]) -> CheckRow:
    """The check row `to_message` wrote."""
    times = {
        name: datetime.fromisoformat(values[name]) if values[name] is not None else None
        for name in ("interval_start", "interval_end", "breached_since")
    }
    return CheckRow(**(values | times))
