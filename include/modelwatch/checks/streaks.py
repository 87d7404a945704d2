"""Consecutive breaches: a check alerts once it has breached `consecutive` intervals in a row."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from modelwatch.checks.rows import CheckRow


class Streaks:
    """The stored streak of every check, updated as rows are judged oldest first.

    Parameters
    ----------
    stored : DataFrame
        `check_results` rows of earlier intervals (``interval_start``,
        ``check_name``, ``status``, ``streak``, ``breached_since``).
    step : timedelta
        One interval: a streak continues only from the interval right before.
    """

    def __init__(self, stored: pd.DataFrame, step: timedelta):
        self.step = step
        self._rows: dict[tuple[pd.Timestamp, str], tuple[int, object]] = {}
        for row in stored.itertuples():
            if row.status == "breached":
                since = row.breached_since if pd.notna(row.breached_since) else row.interval_start
                streak = int(row.streak) if pd.notna(row.streak) and row.streak else 1
                self._rows[(pd.Timestamp(row.interval_start), row.check_name)] = (
                    streak, pd.Timestamp(since).to_pydatetime()
                )

    def continue_with(self, row: CheckRow) -> CheckRow:
        """`row` with its streak, the start of its run of breaches and whether it alerts."""
        key = (pd.Timestamp(row.interval_start), row.check_name)
        if not row.breached:
            self._rows.pop(key, None)
            return row.but(streak=0, breached_since=None, alerting=False)
        before = self._rows.get((pd.Timestamp(row.interval_start - self.step), row.check_name))
        streak, since = (before[0] + 1, before[1]) if before else (1, row.interval_start)
        self._rows[key] = (streak, since)
        return row.but(streak=streak, breached_since=since, alerting=streak >= row.consecutive)
