"""The page's warehouse reads: SQLAlchemy Core statements with bound parameters, nothing built from input.

Views first, as analysts read them (docs/warehouse.md):

- `model_latest_state`: each model's latest interval and decision (the index);
- `model_health_daily`: which intervals ran, their run, label coverage and decision (the window, label coverage);
- `model_decision_timeline`: every decision with its reason, champion and run.

Tables where no view covers the history a chart needs:

- `check_results`, through `modelwatch.warehouse.queries.check_history`: the limits and verdicts of
  every check of every interval (`open_alert_conditions` keeps only what alerts now);
- `model_metrics` and the run tables, through `modelwatch.warehouse.queries.interval_values`: every
  catalogue metric the checks judge, derived ones included (`model_health_daily` pivots a fixed few);
- `feature_drift`: the drift heatmap's tests per feature and interval (no view summarises them).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Boolean, Double, Engine, Integer, String, Text, column, inspect, select, table

from modelwatch.warehouse import queries as warehouse_queries
from modelwatch.warehouse import schema
from modelwatch.warehouse.load import read_frame
from modelwatch.warehouse.schema import UtcDateTime

MODEL_HEALTH_DAILY = table(
    "model_health_daily",
    column("model_name", String),
    column("interval_start", UtcDateTime),
    column("interval_end", UtcDateTime),
    column("status", String),
    column("run_id", String),
    column("label_coverage", Double),
    column("labelled_predictions", Integer),
    column("decision", String),
)

MODEL_LATEST_STATE = table(
    "model_latest_state",
    column("model_name", String),
    column("latest_interval_start", UtcDateTime),
    column("latest_interval_end", UtcDateTime),
    column("status", String),
    column("run_id", String),
    column("drifted_features", Integer),
    column("latest_decision", String),
    column("latest_decision_reason", Text),
    column("latest_decision_interval_start", UtcDateTime),
    column("champion_version", String),
)

MODEL_DECISION_TIMELINE = table(
    "model_decision_timeline",
    column("model_name", String),
    column("interval_start", UtcDateTime),
    column("interval_end", UtcDateTime),
    column("decision", String),
    column("severity", String),
    column("reason", Text),
    column("outcome", String),
    column("champion_before", String),
    column("champion_after", String),
    column("notified", Boolean),
    column("run_id", String),
    column("decided_at", UtcDateTime),
)


def has_schema(engine: Engine) -> bool:
    """Whether the warehouse has been migrated: before the first run it may hold nothing at all."""
    return MODEL_HEALTH_DAILY.name in inspect(engine).get_view_names()


def latest_states(engine: Engine, model_names: list[str]) -> dict[str, dict]:
    """Each named model's row of `model_latest_state`; models without a run are absent."""
    view = MODEL_LATEST_STATE
    statement = select(view).where(view.c.model_name.in_(model_names))
    with engine.connect() as connection:
        return {row["model_name"]: dict(row) for row in connection.execute(statement).mappings()}


def recent_intervals(engine: Engine, model_name: str, limit: int) -> pd.DataFrame:
    """The model's latest `limit` intervals in `model_health_daily`, oldest first.

    Returns
    -------
    DataFrame
        ``interval_start``, ``interval_end``, ``status``, ``run_id``, ``label_coverage``,
        ``labelled_predictions``, ``decision``; empty when the model never ran.
    """
    view = MODEL_HEALTH_DAILY
    statement = (
        select(view.c.interval_start, view.c.interval_end, view.c.status, view.c.run_id, view.c.label_coverage,
               view.c.labelled_predictions, view.c.decision)
        .where(view.c.model_name == model_name)
        .order_by(view.c.interval_start.desc())
        .limit(limit)
    )
    frame = read_frame(engine, statement)
    return frame.iloc[::-1].reset_index(drop=True)


def decision_timeline(engine: Engine, model_name: str, since: datetime) -> pd.DataFrame:
    """The model's decisions of intervals starting at or after `since`, oldest first (dry runs left out)."""
    view = MODEL_DECISION_TIMELINE
    statement = (
        select(view.c.interval_start, view.c.interval_end, view.c.decision, view.c.severity, view.c.reason,
               view.c.outcome, view.c.champion_before, view.c.champion_after, view.c.run_id, view.c.decided_at)
        .where(view.c.model_name == model_name, view.c.interval_start >= since)
        .order_by(view.c.interval_start)
    )
    return read_frame(engine, statement)


def drift_tests(engine: Engine, model_name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Every drift test of the model's intervals starting in `[since, until]`, one row per feature and method."""
    drift = schema.feature_drift
    statement = (
        select(drift.c.interval_start, drift.c.feature, drift.c.method, drift.c.statistic, drift.c.p_value,
               drift.c.adjusted_p_value, drift.c.threshold, drift.c.drifted)
        .where(drift.c.model_name == model_name, drift.c.interval_start >= since, drift.c.interval_start <= until)
        .order_by(drift.c.feature, drift.c.interval_start, drift.c.method)
    )
    return read_frame(engine, statement)


def metric_values(engine: Engine, model_name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Every catalogue metric of the intervals starting in `[since, until]`: what the checks judge.

    See `modelwatch.warehouse.queries.interval_values`; intervals whose run did not load are left out.
    """
    return warehouse_queries.interval_values(engine, model_name, since, until)


def check_rows(engine: Engine, model_name: str, since: datetime, before: datetime) -> pd.DataFrame:
    """The stored check rows of the intervals starting in `[since, before)`."""
    return warehouse_queries.check_history(engine, model_name, since, before)
