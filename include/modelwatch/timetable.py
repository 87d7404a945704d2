"""The monitor DAGs' schedule: a run for a named day covers that day's interval, however it starts."""

from __future__ import annotations

from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class IntervalOfLogicalDate(CronDataIntervalTimetable):
    """Cron intervals where a run's logical date falls inside the interval it covers.

    Scheduled runs and backfills already take the interval that starts at their
    logical date. Airflow's cron timetable gives a manual run (the trigger
    form, `airflow dags trigger`, `dag.test`) the last interval that *ended*
    before its logical date instead, so the same day named twice meant two
    intervals. Here a manual run covers the interval that holds its logical
    date: 2026-11-20 (any time of that day, for a daily model) is
    [2026-11-20, 2026-11-21) for every way of starting a run.
    """

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        start = self._align_to_prev(run_after)
        return DataInterval(start=start, end=self._get_next(start))
