"""Inputs of the checks, built from plain values: models, interval histories, stored check rows.

Interval ``i`` of every history here is the day starting at ``START + i days``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from logfiles import model_spec

from modelwatch.checks import CheckRow, History
from modelwatch.config import ModelConfig, parse_config

START = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
STORED_COLUMNS = ["interval_start", "check_name", "status", "streak", "breached_since"]

Measured = Mapping[str, tuple[float, int]]
"""One interval's metrics: metric -> (value, sample_size)."""


def model(**overrides) -> ModelConfig:
    """The small daily classifier of `logfiles.model_spec`, parsed as the models file would be."""
    return parse_config({"models": [model_spec(**overrides)]}).models[0]


def interval(i: int) -> tuple[datetime, datetime]:
    """Start and end of interval `i`."""
    return START + i * DAY, START + (i + 1) * DAY


def history_frame(intervals: Iterable[Measured], halted: Iterable[int] = ()) -> pd.DataFrame:
    """The long frame `warehouse.queries.interval_values` returns, one row per interval and metric.

    Parameters
    ----------
    intervals : iterable of mapping
        Interval ``i``'s metrics, as metric -> (value, sample_size).
    halted : iterable of int
        Intervals whose run halted (their data was bad).
    """
    halted = set(halted)
    records = [
        {
            "interval_start": interval(i)[0],
            "interval_end": interval(i)[1],
            "metric": metric,
            "value": float(value),
            "sample_size": int(size),
            "run_status": "halted" if i in halted else "success",
        }
        for i, measured in enumerate(intervals)
        for metric, (value, size) in measured.items()
    ]
    return pd.DataFrame.from_records(records)


def history(intervals: Iterable[Measured], halted: Iterable[int] = ()) -> History:
    return History(history_frame(intervals, halted))


def binomial(rng: np.random.Generator, rate: float, labels: int) -> tuple[float, int]:
    """A rate metric as measured on `labels` trials: its sampling noise is real, not a constant."""
    return rng.binomial(labels, rate) / labels, labels


def typical_day(rng: np.random.Generator) -> dict[str, tuple[float, int]]:
    """One ordinary interval of a classifier's monitored metrics, with day-to-day noise.

    Quality metrics from about 1,000 labels; system metrics from about 50,000 requests.
    """
    labels = int(rng.poisson(1000))
    requests = int(rng.normal(50_000, 2_000))
    return {
        "accuracy": binomial(rng, 0.92, labels),
        "f1": (rng.normal(0.88, 0.01), labels),
        "auc_roc": (rng.normal(0.95, 0.005), labels),
        "brier_score": (rng.normal(0.07, 0.004), labels),
        "request_count": (requests, requests),
        "error_rate": binomial(rng, 0.004, requests),
        "latency_p95_ms": (rng.normal(120, 6), requests),
        "latency_p99_ms": (rng.normal(250, 12), requests),
        "quarantined_share": (0.0, requests),
        "drifted_feature_share": (0.0, 3),
    }


def stored(rows: Iterable[CheckRow]) -> pd.DataFrame:
    """Check rows as `warehouse.queries.check_history` returns them: what streaks continue from."""
    return pd.DataFrame([{name: getattr(row, name) for name in STORED_COLUMNS} for row in rows],
                        columns=STORED_COLUMNS)


def only(rows: Iterable[CheckRow], check_name: str) -> CheckRow:
    """The one row of `check_name`."""
    (row,) = [row for row in rows if row.check_name == check_name]
    return row
