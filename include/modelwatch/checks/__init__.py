"""Checks: judge an interval against rules and against the model's own history.

- `thresholds`: the bounds the models file sets (absolute, or relative to a baseline);
- `control_limits`: limits from the trailing history that follow each interval's sample size;
- `anomaly`: IsolationForest over each interval's vector of monitored metrics;
- `streaks`: how many intervals in a row a check has breached, and whether it alerts.

Every check returns `CheckRow`s of one shape; `judge` runs them all for one
run: the interval itself, and the quality checks of each earlier interval
whose labels the run refreshed, so that a drop that only shows once labels
arrive is caught on the run where it shows.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from modelwatch import catalogue
from modelwatch.checks import anomaly, control_limits, thresholds
from modelwatch.checks.rows import CheckRow, History
from modelwatch.checks.streaks import Streaks
from modelwatch.config import ModelConfig

__all__ = ["CheckRow", "History", "judge"]


def judge(
    model: ModelConfig,
    start: datetime,
    end: datetime,
    history: History,
    stored_checks: pd.DataFrame,
    champion_reference: dict[str, float],
    refreshed: list[tuple[datetime, datetime]] = (),
) -> list[CheckRow]:
    """Every check row one run writes: the refreshed earlier intervals' quality checks, then the interval's.

    Parameters
    ----------
    model : ModelConfig
        Thresholds and check settings.
    start, end : datetime
        The run's interval.
    history : History
        Interval values of the model up to and including this interval.
    stored_checks : DataFrame
        Stored `check_results` of earlier intervals, for streaks.
    champion_reference : dict
        The champion's holdout metrics (for thresholds relative to the champion).
    refreshed : list of (datetime, datetime)
        Earlier intervals whose quality metrics this run recomputed with newer labels.

    Returns
    -------
    list of CheckRow
        Oldest interval first, streaks filled in.
    """
    quality = catalogue.names("quality", model.task)
    streaks = Streaks(stored_checks, model.interval_length)
    rows: list[CheckRow] = []
    for earlier_start, earlier_end in sorted(refreshed):
        judged = thresholds.evaluate(model, earlier_start, earlier_end, history, champion_reference, quality)
        judged += control_limits.evaluate(model, earlier_start, earlier_end, history, quality)
        rows += [streaks.continue_with(row) for row in judged]
    judged = thresholds.evaluate(model, start, end, history, champion_reference)
    judged += control_limits.evaluate(model, start, end, history)
    judged += anomaly.evaluate(model, start, end, history)
    rows += [streaks.continue_with(row) for row in judged]
    return rows
