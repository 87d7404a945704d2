"""Reading what checks and decisions need from the warehouse.

Every function takes the engine and a model name and returns plain values or
a small DataFrame; the checks and the decision never build SQL themselves.
"""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, and_, case, distinct, func, literal, select, union_all

from modelwatch import catalogue
from modelwatch.batch import ALL
from modelwatch.warehouse import schema
from modelwatch.warehouse.load import read_frame

JSON_COLUMNS = ("checks", "condition", "facts")
"""`model_actions` columns stored as JSON text."""

VALUE_COLUMNS = ["interval_start", "interval_end", "metric", "value", "sample_size", "run_status"]
"""The columns of `interval_values`."""


def interval_values(engine: Engine, model_name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Every catalogue metric of the model's intervals starting in `[since, until]`, one row per metric.

    Quality and system metrics are the overall rows of `model_metrics`;
    ``quarantined_share``, ``failed_expectations``,
    ``critical_failed_expectations`` and ``drifted_feature_share`` are derived
    from the run, data-quality and drift tables. Intervals whose run did not
    load (status other than ``success`` or ``halted``) are left out.

    Returns
    -------
    DataFrame
        `VALUE_COLUMNS`, ordered by interval and metric; ``sample_size`` is the
        labeled predictions (quality), the requests (system), the records read
        (data quality) or the features tested (drift).
    """
    runs, metrics = schema.monitoring_runs, schema.model_metrics
    quality_dq, drift = schema.data_quality_results, schema.feature_drift
    finished = select(runs.c.interval_start, runs.c.interval_end, runs.c.status).where(
        runs.c.model_name == model_name,
        runs.c.interval_start >= since,
        runs.c.interval_start <= until,
        runs.c.status.in_(("success", "halted")),
    ).subquery()

    measured = (
        select(
            finished.c.interval_start, finished.c.interval_end, metrics.c.metric, metrics.c.value,
            metrics.c.sample_size, finished.c.status.label("run_status"),
        )
        .join(metrics, and_(metrics.c.interval_start == finished.c.interval_start))
        .where(
            metrics.c.model_name == model_name,
            metrics.c.model_version == ALL,
            metrics.c.segment == ALL,
            metrics.c.metric.in_(catalogue.names("quality") + catalogue.names("system")),
        )
    )
    records = runs.c.rows_read + func.coalesce(runs.c.labels_read, 0)
    quarantined = (
        select(
            runs.c.interval_start, runs.c.interval_end, literal("quarantined_share").label("metric"),
            case((records > 0, 1.0 * func.coalesce(runs.c.rows_quarantined, 0) / records)).label("value"),
            records.label("sample_size"), runs.c.status.label("run_status"),
        )
        .where(
            runs.c.model_name == model_name,
            runs.c.interval_start >= since,
            runs.c.interval_start <= until,
            runs.c.status.in_(("success", "halted")),
        )
    )
    failed = case((quality_dq.c.success, 0), else_=1)
    critical = case((and_(~quality_dq.c.success, quality_dq.c.severity == "critical"), 1), else_=0)
    expectations = [
        select(
            finished.c.interval_start, finished.c.interval_end, literal(name).label("metric"),
            (1.0 * func.sum(flag)).label("value"), func.count().label("sample_size"),
            finished.c.status.label("run_status"),
        )
        .join(quality_dq, quality_dq.c.interval_start == finished.c.interval_start)
        .where(quality_dq.c.model_name == model_name)
        .group_by(finished.c.interval_start, finished.c.interval_end, finished.c.status)
        for name, flag in (("failed_expectations", failed), ("critical_failed_expectations", critical))
    ]
    drifted = (
        select(
            finished.c.interval_start, finished.c.interval_end, literal("drifted_feature_share").label("metric"),
            (1.0 * func.count(distinct(case((drift.c.drifted, drift.c.feature))))
             / func.count(distinct(drift.c.feature))).label("value"),
            func.count(distinct(drift.c.feature)).label("sample_size"),
            finished.c.status.label("run_status"),
        )
        .join(drift, drift.c.interval_start == finished.c.interval_start)
        .where(drift.c.model_name == model_name)
        .group_by(finished.c.interval_start, finished.c.interval_end, finished.c.status)
    )
    statement = union_all(measured, quarantined, *expectations, drifted)
    frame = read_frame(engine, select(statement.subquery()))
    if frame.empty:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    frame.columns = VALUE_COLUMNS
    frame["interval_start"] = _utc(frame["interval_start"])
    frame["interval_end"] = _utc(frame["interval_end"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["sample_size"] = pd.to_numeric(frame["sample_size"], errors="coerce").fillna(0).astype("int64")
    return frame.sort_values(["interval_start", "metric"], ignore_index=True)


def check_history(engine: Engine, model_name: str, since: datetime, before: datetime) -> pd.DataFrame:
    """Stored check rows of intervals starting in `[since, before)`: what streaks continue from."""
    checks = schema.check_results
    statement = (
        select(checks)
        .where(checks.c.model_name == model_name, checks.c.interval_start >= since,
               checks.c.interval_start < before)
        .order_by(checks.c.interval_start, checks.c.check_name)
    )
    return read_frame(engine, statement)


def served_versions(engine: Engine, model_name: str, since: datetime, until: datetime) -> pd.DataFrame:
    """The version that answered most requests in each interval starting in `[since, until]`.

    Returns
    -------
    DataFrame
        ``interval_start``, ``model_version``, ``requests``; oldest first.
    """
    metrics = schema.model_metrics
    statement = (
        select(metrics.c.interval_start, metrics.c.model_version, metrics.c.value.label("requests"))
        .where(
            metrics.c.model_name == model_name,
            metrics.c.interval_start >= since,
            metrics.c.interval_start <= until,
            metrics.c.metric == "request_count",
            metrics.c.segment == ALL,
            metrics.c.model_version != ALL,
        )
        .order_by(metrics.c.interval_start, metrics.c.value.desc(), metrics.c.model_version)
    )
    frame = read_frame(engine, statement)
    if frame.empty:
        return pd.DataFrame(columns=["interval_start", "model_version", "requests"])
    frame["interval_start"] = _utc(frame["interval_start"])
    return frame.drop_duplicates("interval_start", keep="first").reset_index(drop=True)


def decisions(engine: Engine, model_name: str, since: datetime, before: datetime, mode: str = "on") -> pd.DataFrame:
    """Recorded decisions of intervals starting in `[since, before)`, oldest first; JSON columns decoded."""
    actions = schema.model_actions
    statement = (
        select(actions)
        .where(actions.c.model_name == model_name, actions.c.interval_start >= since,
               actions.c.interval_start < before, actions.c.mode == mode)
        .order_by(actions.c.interval_start)
    )
    frame = read_frame(engine, statement)
    for column in JSON_COLUMNS:
        frame[column] = [_decoded(column, value) for value in frame[column]]
    return frame


def decision(engine: Engine, model_name: str, interval_start: datetime, mode: str = "on") -> dict | None:
    """The recorded decision of one interval and mode as a dict (JSON columns decoded), or None."""
    actions = schema.model_actions
    statement = select(actions).where(
        actions.c.model_name == model_name, actions.c.interval_start == interval_start, actions.c.mode == mode
    )
    with engine.connect() as connection:
        row = connection.execute(statement).mappings().first()
    if row is None:
        return None
    return {name: _decoded(name, value) for name, value in row.items()}


def _decoded(name: str, value):
    if name in JSON_COLUMNS and value:
        return json.loads(value)
    return value


def metric_mean(
    engine: Engine, model_name: str, metric: str, starts: list[datetime], version: str = ALL
) -> float | None:
    """The sample-size weighted mean of a metric of one version (overall rows) over some intervals."""
    if not starts:
        return None
    metrics = schema.model_metrics
    statement = select(
        func.sum(metrics.c.value * metrics.c.sample_size) / func.nullif(func.sum(metrics.c.sample_size), 0)
    ).where(
        metrics.c.model_name == model_name,
        metrics.c.metric == metric,
        metrics.c.model_version == version,
        metrics.c.segment == ALL,
        metrics.c.interval_start.in_(starts),
        metrics.c.value.is_not(None),
    )
    with engine.connect() as connection:
        value = connection.execute(statement).scalar()
    return None if value is None else float(value)


def last_retrain_end(engine: Engine, model_name: str, before: datetime) -> datetime | None:
    """The end of the latest interval before `before` whose retrain trained a challenger (promoted or not)."""
    actions = schema.model_actions
    statement = select(func.max(actions.c.interval_end)).where(
        actions.c.model_name == model_name,
        actions.c.decision == "retrain",
        actions.c.outcome.in_(("promoted", "kept_champion")),
        actions.c.mode == "on",
        actions.c.interval_start < before,
    )
    with engine.connect() as connection:
        return connection.execute(statement).scalar()


def version_went_live(engine: Engine, model_name: str, version: str) -> datetime | None:
    """The end of the interval whose decision promoted or restored `version`, if one did."""
    actions = schema.model_actions
    statement = (
        select(func.max(actions.c.interval_end))
        .where(
            actions.c.model_name == model_name,
            actions.c.mode == "on",
            actions.c.to_version == version,
            actions.c.outcome.in_(("promoted", "rolled_back")),
        )
    )
    with engine.connect() as connection:
        return connection.execute(statement).scalar()


def champion_moved_since(engine: Engine, model_name: str, start: datetime) -> str | None:
    """The champion before the earliest promotion or rollback decided for `start` or a later interval.

    None when no such action moved the champion. A re-run of an interval
    decides on the champion its first run saw, not on one a later decision set.
    """
    actions = schema.model_actions
    statement = (
        select(actions.c.from_version)
        .where(
            actions.c.model_name == model_name,
            actions.c.mode == "on",
            actions.c.interval_start >= start,
            actions.c.outcome.in_(("promoted", "rolled_back")),
            actions.c.from_version.is_not(None),
            actions.c.from_version != actions.c.to_version,
        )
        .order_by(actions.c.interval_start)
        .limit(1)
    )
    with engine.connect() as connection:
        return connection.execute(statement).scalar()


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as aware UTC, whether the driver returned text (SQLite) or datetimes."""
    return pd.to_datetime(values, utc=True)
