"""Run the task functions of one interval end to end, and compare what warehouses hold."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd

from modelwatch import pipeline
from modelwatch.config import ProjectConfig
from modelwatch.warehouse import schema
from modelwatch.warehouse.load import read_frame

VOLATILE_COLUMNS = {"run_id", "started_at", "finished_at", "computed_at", "checked_at", "decided_at"}
"""Columns that say when or by which run a row was written, not what it holds."""


def interval(day: int) -> tuple[datetime, datetime]:
    """The interval [day, day + 1) of March 2026."""
    return datetime(2026, 3, day, tzinfo=UTC), datetime(2026, 3, day + 1, tzinfo=UTC)


def run_interval(config: ProjectConfig, day: int, url: str, run_id: str | None = None,
                 history_timeout_s: float = 0.0, label_refresh: int | None = None) -> dict:
    """Run every task of one interval, as the DAG does: mark, extract, wait for history, validate,
    measure, load, check, decide, act and notify (notifications are only logged).

    `label_refresh` is the DAG's Param `label_refresh_intervals`. Returns measure's result.
    """
    start, end = interval(day)
    name = config.models[0].name
    run_id = run_id or f"run-{day}"
    pipeline.mark_started(name, start, end, run_id, warehouse_url=url)
    staged = pipeline.extract(name, start, end, config=config, attempt=run_id, label_refresh=label_refresh)
    pipeline.await_history(name, start, history_timeout_s, poll_s=0.2, config=config, warehouse_url=url)
    pipeline.validate(name, staged["folder"], start, end, config=config, warehouse_url=url)
    measured = pipeline.measure(name, staged["folder"], start, end, config=config, warehouse_url=url)
    loaded = pipeline.load(name, staged["folder"], start, end, run_id, config=config, warehouse_url=url)
    judge_interval(config, start, end, run_id, loaded, url)
    return measured


def judge_interval(config: ProjectConfig, start: datetime, end: datetime, run_id: str, loaded: dict, url: str,
                   mode: str = "on") -> dict:
    """Check, decide, act and notify one loaded interval; returns the decision."""
    from modelwatch_notifiers import send

    name = config.models[0].name
    checked = pipeline.check(name, start, end, run_id, loaded, config=config, warehouse_url=url)
    decided = pipeline.decide(name, start, end, run_id, loaded, checked, mode=mode, config=config, warehouse_url=url)
    pipeline.act(name, decided["action"], start, end, run_id, mode=mode, config=config, warehouse_url=url)
    pipeline.notify(name, start, end, run_id, send, mode=mode, config=config, warehouse_url=url)
    return decided


def run_interval_at(moment: float, config: ProjectConfig, day: int, url: str, run_id: str,
                    history_timeout_s: float = 0.0) -> str:
    """`run_interval` started at the wall-clock `moment`; returns 'success' or the error it raised."""
    time.sleep(max(0.0, moment - time.time()))
    try:
        run_interval(config, day, url, run_id, history_timeout_s)
    except Exception as exc:  # a loud failure is an allowed outcome; the caller checks the warehouse
        return f"{type(exc).__name__}: {exc}"
    return "success"


def warehouse_contents(url: str) -> dict[str, pd.DataFrame]:
    """Every warehouse table without its volatile columns, rows in a stable order."""
    engine = pipeline.warehouse_engine(url)
    contents = {}
    for table in schema.metadata.sorted_tables:
        frame = read_frame(engine, table.select())
        frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE_COLUMNS or c == "id"])
        contents[table.name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return contents


def assert_same_contents(expected: dict[str, pd.DataFrame], actual: dict[str, pd.DataFrame]) -> None:
    """Fail naming the first table whose contents differ."""
    assert sorted(expected) == sorted(actual)
    for name in expected:
        try:
            pd.testing.assert_frame_equal(expected[name], actual[name], check_dtype=False, check_exact=False)
        except AssertionError as exc:
            raise AssertionError(f"table {name} differs: {exc}") from None
