"""Registers the monitor DAGs' timetable, so that the scheduler and the API server can read the DAGs."""

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from modelwatch.timetable import IntervalOfLogicalDate


class ModelWatchTimetables(AirflowPlugin):
    name = "modelwatch_timetables"
    timetables: ClassVar[list] = [IntervalOfLogicalDate]
