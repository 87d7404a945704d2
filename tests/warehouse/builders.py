"""Builders of run bundles, an example history, and backend-neutral result helpers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import Engine, insert, select

from modelwatch.warehouse import schema
from modelwatch.warehouse.load import (
    FRAME_TABLES,
    RunBundle,
    load_run,
    mark_run_started,
    read_frame,
)

DAY = timedelta(days=1)
JAN = [datetime(2026, 1, day, tzinfo=UTC) for day in range(1, 8)]


def stamp(day: datetime) -> str:
    """A UTC timestamp as the text the tests compare with."""
    return day.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def plain(value: Any) -> Any:
    """A query result value in a backend-neutral form.

    Timestamps become UTC text, booleans 0/1, decimals floats rounded to 6
    places, NaN None; so SQLite and PostgreSQL results compare equal.
    """
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, str) and len(value) == 19 and value[4] == "-" and value[10] == " ":
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def rows_of(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A result frame as a list of tuples of `plain` values."""
    return [tuple(plain(value) for value in row) for row in frame.itertuples(index=False)]


def table_contents(engine: Engine, table_name: str) -> pd.DataFrame:
    """All rows of a table, sorted by key, for comparing two states of the warehouse."""
    table = schema.metadata.tables[table_name]
    key = [table.c[name] for name in schema.key_columns(table)]
    return read_frame(engine, select(table).order_by(*key))


def warehouse_state(engine: Engine) -> dict[str, pd.DataFrame]:
    """The contents of every table written by `load_run`."""
    return {name: table_contents(engine, name) for name in ("monitoring_runs", *FRAME_TABLES)}


def metrics(start: datetime, values: dict[str, float | None], **columns: Any) -> pd.DataFrame:
    """Overall metric rows of one interval; `kind` follows the metric's name."""
    system = {"request_count", "latency_p95_ms", "latency_p99_ms", "error_rate"}
    frame = pd.DataFrame(
        {
            "interval_start": start,
            "interval_end": start + DAY,
            "model_version": "all",
            "segment": "all",
            "metric": list(values),
            "kind": ["system" if name in system else "quality" for name in values],
            "value": list(values.values()),
            "sample_size": 100,
            "computed_at": start + DAY + timedelta(hours=1),
        }
    )
    for name, value in columns.items():
        frame[name] = value
    frame.loc[frame["kind"] == "system", "label_coverage"] = None
    return frame


def drift(rows: list[tuple[str, str, float, bool]], **columns: Any) -> pd.DataFrame:
    """Drift rows (feature, method, statistic, drifted) of the bundle's interval."""
    frame = pd.DataFrame(rows, columns=["feature", "method", "statistic", "drifted"])
    frame["threshold"] = 0.2
    frame["sample_size"] = 1000
    frame["reference_size"] = 5000
    frame["reference"] = "trailing 7 intervals"
    for name, value in columns.items():
        frame[name] = value
    return frame


def profiles(features: dict[str, float]) -> pd.DataFrame:
    """Numeric profiles (feature -> mean) of the bundle's interval."""
    return pd.DataFrame(
        {
            "feature": list(features),
            "feature_type": "numeric",
            "row_count": 1000,
            "null_count": 0,
            "mean": list(features.values()),
            "profile": [{"sample": [mean - 1, mean, mean + 1]} for mean in features.values()],
        }
    )


def quality(rows: list[tuple[str, str, bool, str, float]]) -> pd.DataFrame:
    """Data-quality rows (expectation, column, success, severity, unexpected percent)."""
    frame = pd.DataFrame(
        rows, columns=["expectation", "column_name", "success", "severity", "unexpected_percent"]
    )
    frame["element_count"] = 1000
    frame["unexpected_count"] = (frame["unexpected_percent"] * 10).astype(int)
    frame["observed"] = [{"examples": []} for _ in rows]
    return frame


def quarantine(
    kind: str, reason: str, lines: list[int], source: str = "part-0.jsonl"
) -> pd.DataFrame:
    return pd.DataFrame(
        {"kind": kind, "source_file": source, "line_number": lines, "reason": reason, "raw": "{"}
    )


def run_fields(**fields: Any) -> dict[str, Any]:
    """`monitoring_runs` fields with fixed timestamps, so reloads are comparable."""
    base = {
        "status": "success",
        "rows_read": 1000,
        "rows_valid": 1000,
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
        "critical_failure": False,
        "drift_detected": False,
        "drifted_features": 0,
        "damaged_files": [],
        "missing_partitions": [],
        "finished_at": datetime(2026, 2, 1, tzinfo=UTC),
    }
    return base | fields


def bundle(model: str, start: datetime, run_id: str | None = None, **parts: Any) -> RunBundle:
    """A bundle of `model` over the day starting at `start`."""
    run = parts.pop("run", run_fields())
    return RunBundle(
        model, start, start + DAY, run_id or f"scheduled__{start:%Y-%m-%d}", run, **parts
    )


def seed(engine: Engine) -> None:
    """Load the example history the view and documentation tests query.

    credit_risk ran Jan 1-3 (Jan 3 halted by a critical data-quality failure;
    its run recomputed Jan 2's quality metrics); demand ran Jan 2 and is
    running Jan 3. credit_risk has two decisions (and a dry run on Jan 3) and
    four check rows: its error rate breached on Jan 1 and recovered on Jan 2,
    when its latency breached.
    """
    d1, d2, d3 = JAN[:3]
    load_run(
        engine,
        bundle(
            "credit_risk",
            d1,
            run=run_fields(
                rows_read=1000,
                rows_quarantined=2,
                labels_joined=950,
                drift_detected=True,
                drifted_features=1,
            ),
            model_metrics=pd.concat(
                [
                    metrics(
                        d1,
                        {"accuracy": 0.90, "auc_roc": 0.85, "f1": 0.80, "log_loss": 0.30},
                        label_coverage=0.95,
                        sample_size=950,
                    ),
                    metrics(
                        d1,
                        {
                            "request_count": 1000,
                            "latency_p95_ms": 120,
                            "latency_p99_ms": 300,
                            "error_rate": 0.01,
                        },
                        sample_size=1000,
                    ),
                    metrics(d1, {"auc_roc": 0.70}, segment="region=eu", label_coverage=0.5),
                    metrics(d1, {"auc_roc": 0.86}, model_version="v1", label_coverage=0.95),
                ]
            ),
            feature_drift=drift([("age", "psi", 0.30, True), ("income", "psi", 0.05, False)]),
            feature_profiles=profiles({"age": 40.0, "income": 5000.0}),
            data_quality_results=quality(
                [
                    ("expect_column_values_to_not_be_null", "income", True, "warning", 0.0),
                    ("expect_table_row_count_to_be_between", "", True, "critical", 0.0),
                ]
            ),
            quarantined_records=quarantine("predictions", "invalid JSON", [3, 7]),
        ),
    )
    load_run(
        engine,
        bundle(
            "credit_risk",
            d2,
            run=run_fields(
                rows_read=1100,
                rows_quarantined=4,
                labels_joined=440,
                drift_detected=True,
                drifted_features=2,
            ),
            model_metrics=pd.concat(
                [
                    metrics(
                        d2,
                        {"accuracy": 0.87, "auc_roc": 0.82, "f1": 0.77, "log_loss": 0.36},
                        label_coverage=0.40,
                        sample_size=440,
                    ),
                    metrics(
                        d2,
                        {
                            "request_count": 1100,
                            "latency_p95_ms": 200,
                            "latency_p99_ms": 650,
                            "error_rate": 0.02,
                        },
                        sample_size=1100,
                    ),
                ]
            ),
            feature_drift=drift(
                [
                    ("age", "psi", 0.40, True),
                    ("income", "ks", 0.20, True),
                    ("income", "psi", 0.10, False),
                ]
            ),
            feature_profiles=profiles({"age": 42.0, "income": 5100.0}),
            data_quality_results=quality(
                [
                    ("expect_column_values_to_not_be_null", "income", True, "warning", 0.0),
                    ("expect_table_row_count_to_be_between", "", True, "critical", 0.0),
                ]
            ),
            quarantined_records=pd.concat(
                [
                    quarantine("predictions", "invalid JSON", [1, 2, 9]),
                    quarantine("predictions", "latency_ms: expected a number", [4]),
                ]
            ),
        ),
    )
    load_run(
        engine,
        bundle(
            "credit_risk",
            d3,
            run=run_fields(
                status="halted",
                rows_read=500,
                rows_quarantined=4,
                labels_joined=100,
                critical_failure=True,
                drift_detected=True,
                drifted_features=1,
            ),
            model_metrics=pd.concat(
                [
                    metrics(
                        d3,
                        {"accuracy": 0.86, "auc_roc": 0.78, "f1": 0.75, "log_loss": 0.40},
                        label_coverage=0.20,
                        sample_size=100,
                    ),
                    metrics(
                        d3,
                        {
                            "request_count": 500,
                            "latency_p95_ms": 150,
                            "latency_p99_ms": 450,
                            "error_rate": 0.05,
                        },
                        sample_size=500,
                    ),
                    metrics(
                        d2,
                        {"accuracy": 0.88, "auc_roc": 0.80, "f1": 0.78, "log_loss": 0.35},
                        label_coverage=0.70,
                        sample_size=770,
                        computed_at=d3 + DAY + timedelta(hours=1),
                    ),
                ]
            ),
            feature_drift=drift([("age", "psi", 0.25, True), ("income", "psi", 0.02, False)]),
            feature_profiles=profiles({"age": 30.0, "income": 9000.0}),
            data_quality_results=quality(
                [
                    ("expect_column_values_to_not_be_null", "income", False, "critical", 40.0),
                    ("expect_table_row_count_to_be_between", "", True, "critical", 0.0),
                ]
            ),
            quarantined_records=quarantine(
                "feedback", "missing request_id", [1, 2, 3, 4], source="feedback-0.jsonl"
            ),
        ),
    )
    load_run(
        engine,
        bundle(
            "demand",
            d2,
            run=run_fields(rows_read=200),
            model_metrics=pd.concat(
                [
                    metrics(d2, {"mae": 3.5, "rmse": 5.0}, label_coverage=1.0, sample_size=200),
                    metrics(
                        d2,
                        {"request_count": 200, "latency_p99_ms": 200, "error_rate": 0.0},
                        sample_size=200,
                    ),
                ]
            ),
        ),
    )
    mark_run_started(engine, "demand", d3, d3 + DAY, "scheduled__2026-01-03")
    with engine.begin() as connection:
        # One statement per row: the rows name different columns.
        for row in [
                {
                    "model_name": "credit_risk",
                    "interval_start": d2,
                    "interval_end": d3,
                    "decision": "alert",
                    "severity": "warning",
                    "reason": "latency_p99_ms 650 above 500",
                    "checks": '["threshold:latency_p99_ms@2026-01-02"]',
                    "outcome": "alerted",
                    "from_version": "3",
                    "to_version": "3",
                    "served_version": "3",
                    "notified": True,
                    "run_id": "scheduled__2026-01-02",
                    "decided_at": d3 + timedelta(hours=1),
                },
                {
                    "model_name": "credit_risk",
                    "interval_start": d3,
                    "interval_end": d3 + DAY,
                    "decision": "halt",
                    "severity": "critical",
                    "reason": "critical data-quality failure",
                    "outcome": "halted",
                    "from_version": "3",
                    "to_version": "3",
                    "served_version": "3",
                    "notified": True,
                    "run_id": "scheduled__2026-01-03",
                    "decided_at": d3 + DAY + timedelta(hours=1),
                },
                {
                    "model_name": "credit_risk",
                    "interval_start": d3,
                    "interval_end": d3 + DAY,
                    "mode": "dry_run",
                    "decision": "healthy",
                    "reason": "a dry run, which the timeline leaves out",
                    "run_id": "manual__2026-01-05",
                    "decided_at": d3 + 2 * DAY,
                },
            ]:
            connection.execute(insert(schema.model_actions), row)
        for row in [
                {
                    "model_name": "credit_risk",
                    "interval_start": d2,
                    "check_name": "threshold:latency_p99_ms",
                    "check_kind": "threshold",
                    "metric": "latency_p99_ms",
                    "observed": 650.0,
                    "limit_high": 500.0,
                    "breached": True,
                    "status": "breached",
                    "streak": 1,
                    "breached_since": d2,
                    "alerting": True,
                    "severity": "warning",
                    "reason": "latency_p99_ms 650 above its threshold 500",
                },
                {
                    "model_name": "credit_risk",
                    "interval_start": d1,
                    "check_name": "threshold:error_rate",
                    "check_kind": "threshold",
                    "metric": "error_rate",
                    "observed": 0.09,
                    "limit_high": 0.05,
                    "breached": True,
                    "status": "breached",
                    "streak": 1,
                    "breached_since": d1,
                    "alerting": True,
                    "severity": "warning",
                    "reason": "error_rate 0.09 above its threshold 0.05",
                },
                {
                    "model_name": "credit_risk",
                    "interval_start": d2,
                    "check_name": "threshold:error_rate",
                    "check_kind": "threshold",
                    "metric": "error_rate",
                    "observed": 0.02,
                    "limit_high": 0.05,
                    "breached": False,
                    "status": "ok",
                    "alerting": False,
                    "severity": "warning",
                },
                {
                    "model_name": "credit_risk",
                    "interval_start": d2,
                    "check_name": "control_limit:auc_roc",
                    "check_kind": "control_limit",
                    "metric": "auc_roc",
                    "observed": 0.80,
                    "limit_low": 0.70,
                    "limit_high": 0.95,
                    "breached": False,
                    "status": "ok",
                    "alerting": False,
                    "severity": "warning",
                },
            ]:
            connection.execute(insert(schema.check_results), row)
