"""The warehouse tables as SQLAlchemy Core objects.

This module describes the schema for the code that reads and writes it; the
migrations in `modelwatch/warehouse/migrations` create it. The two must agree,
which a test checks by comparing a migrated database with `metadata`.

Every table's primary key is its natural key, so a re-run of an interval
replaces its rows instead of adding to them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

RUN_STATUSES = ("running", "retrying", "success", "halted", "failed")
METRIC_KINDS = ("quality", "system")
DRIFT_METHODS = ("psi", "ks", "wasserstein", "chi2")
FEATURE_TYPES = ("numeric", "categorical", "boolean")
SEVERITIES = ("critical", "warning")
QUARANTINE_KINDS = ("predictions", "feedback")
CHECK_KINDS = ("threshold", "control_limit", "isolation_forest")
CHECK_STATUSES = ("ok", "breached", "insufficient_history", "insufficient_labels", "no_baseline", "not_measured")
DECISIONS = ("halt", "rollback", "retrain", "alert", "healthy")
ACTION_MODES = ("on", "dry_run")

VIEWS = ("model_health_daily", "model_latest_state", "model_decision_timeline", "open_alert_conditions")

SQLITE_TIMESTAMP_FORMAT = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored in UTC.

    PostgreSQL keeps it as `timestamp with time zone`. SQLite has no timestamp
    type: the value is stored as UTC text `YYYY-MM-DD HH:MM:SS`, the format of
    SQLite's own `datetime()` and `CURRENT_TIMESTAMP`, so that text sorts and
    compares in time order. Values read back are always aware and in UTC.
    Naive datetimes are refused: their time zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sqlite.DATETIME(storage_format=SQLITE_TIMESTAMP_FORMAT))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime (got {type(value).__name__}: {value!r})")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime (got naive {value.isoformat()})")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()


def _interval() -> list[Column[Any]]:
    """The model and interval columns that start most tables."""
    return [
        Column("model_name", String, nullable=False),
        Column("interval_start", UtcDateTime, nullable=False),
        Column("interval_end", UtcDateTime, nullable=False),
    ]


monitoring_runs = Table(
    "monitoring_runs",
    metadata,
    *_interval(),
    Column("run_id", String, nullable=False),
    Column("status", String, nullable=False),
    Column("rows_read", BigInteger),
    Column("rows_valid", BigInteger),
    Column("rows_quarantined", BigInteger),
    Column("duplicates_dropped", BigInteger),
    Column("labels_read", BigInteger),
    Column("labels_joined", BigInteger),
    Column("orphan_labels", BigInteger),
    Column("damaged_files", Text),
    Column("missing_partitions", Text),
    Column("critical_failure", Boolean),
    Column("drift_detected", Boolean),
    Column("drifted_features", Integer),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("failure_reason", Text),
    Column("history", Text),
    PrimaryKeyConstraint("model_name", "interval_start", name="pk_monitoring_runs"),
)

model_metrics = Table(
    "model_metrics",
    metadata,
    *_interval(),
    Column("model_version", String, nullable=False),
    Column("segment", String, nullable=False),
    Column("metric", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", Double),
    Column("sample_size", BigInteger, nullable=False),
    Column("label_coverage", Double),
    Column("labels_as_of", UtcDateTime),
    Column("computed_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    PrimaryKeyConstraint(
        "model_name",
        "interval_start",
        "model_version",
        "segment",
        "metric",
        name="pk_model_metrics",
    ),
    Index("ix_model_metrics_metric", "model_name", "metric", "interval_start"),
)

feature_drift = Table(
    "feature_drift",
    metadata,
    *_interval(),
    Column("feature", String, nullable=False),
    Column("method", String, nullable=False),
    Column("statistic", Double, nullable=False),
    Column("p_value", Double),
    Column("adjusted_p_value", Double),
    Column("threshold", Double, nullable=False),
    Column("drifted", Boolean, nullable=False),
    Column("reference", Text),
    Column("sample_size", BigInteger, nullable=False),
    Column("reference_size", BigInteger, nullable=False),
    Column("unseen_categories", Integer),
    PrimaryKeyConstraint(
        "model_name", "interval_start", "feature", "method", name="pk_feature_drift"
    ),
    Index("ix_feature_drift_feature", "model_name", "feature", "interval_start"),
)

feature_profiles = Table(
    "feature_profiles",
    metadata,
    *_interval(),
    Column("feature", String, nullable=False),
    Column("feature_type", String, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("null_count", BigInteger, nullable=False),
    Column("mean", Double),
    Column("std", Double),
    Column("min", Double),
    Column("max", Double),
    Column("profile", Text, nullable=False),
    PrimaryKeyConstraint("model_name", "interval_start", "feature", name="pk_feature_profiles"),
)

data_quality_results = Table(
    "data_quality_results",
    metadata,
    *_interval(),
    Column("expectation", String, nullable=False),
    Column("column_name", String, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("element_count", BigInteger),
    Column("unexpected_count", BigInteger),
    Column("unexpected_percent", Double),
    Column("severity", String, nullable=False),
    Column("observed", Text),
    PrimaryKeyConstraint(
        "model_name",
        "interval_start",
        "expectation",
        "column_name",
        name="pk_data_quality_results",
    ),
)

quarantined_records = Table(
    "quarantined_records",
    metadata,
    *_interval(),
    Column("kind", String, nullable=False),
    Column("source_file", String, nullable=False),
    Column("line_number", BigInteger, nullable=False),
    Column("reason", String, nullable=False),
    Column("raw", Text),
    PrimaryKeyConstraint(
        "model_name",
        "interval_start",
        "kind",
        "source_file",
        "line_number",
        "reason",
        name="pk_quarantined_records",
    ),
)

check_results = Table(
    "check_results",
    metadata,
    Column("model_name", String, nullable=False),
    Column("interval_start", UtcDateTime, nullable=False),
    Column("check_name", String, nullable=False),
    Column("check_kind", String, nullable=False),
    Column("metric", String),
    Column("observed", Double),
    Column("limit_low", Double),
    Column("limit_high", Double),
    Column("score", Double),
    Column("breached", Boolean, nullable=False),
    Column("severity", String),
    Column("interval_end", UtcDateTime),
    Column("status", String),
    Column("baseline", Double),
    Column("sample_size", BigInteger),
    Column("streak", Integer),
    Column("breached_since", UtcDateTime),
    Column("alerting", Boolean),
    Column("reason", Text),
    Column("judged_in", UtcDateTime),
    Column("run_id", String),
    Column("checked_at", UtcDateTime, server_default=func.current_timestamp()),
    PrimaryKeyConstraint("model_name", "interval_start", "check_name", name="pk_check_results"),
    Index("ix_check_results_check", "model_name", "check_name", "interval_start"),
)

model_actions = Table(
    "model_actions",
    metadata,
    Column("id", Integer, autoincrement=True, nullable=False),
    Column("model_name", String, nullable=False),
    Column("interval_start", UtcDateTime, nullable=False),
    Column("decision", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("from_version", String),
    Column("to_version", String),
    Column("outcome", String),
    Column("run_id", String, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("interval_end", UtcDateTime),
    Column("mode", String, nullable=False, server_default="on"),
    Column("severity", String),
    Column("detail", Text),
    Column("checks", Text),
    Column("served_version", String),
    Column("notified", Boolean),
    Column("notification", Text),
    Column("condition", Text),
    Column("facts", Text),
    PrimaryKeyConstraint("id", name="pk_model_actions"),
    UniqueConstraint("model_name", "interval_start", "mode", name="uq_model_actions_interval"),
    Index("ix_model_actions_decided", "model_name", "decided_at"),
)

ALLOWED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("monitoring_runs", "status"): RUN_STATUSES,
    ("model_metrics", "kind"): METRIC_KINDS,
    ("feature_drift", "method"): DRIFT_METHODS,
    ("feature_profiles", "feature_type"): FEATURE_TYPES,
    ("data_quality_results", "severity"): SEVERITIES,
    ("quarantined_records", "kind"): QUARANTINE_KINDS,
    ("check_results", "check_kind"): CHECK_KINDS,
    ("check_results", "status"): CHECK_STATUSES,
    ("check_results", "severity"): SEVERITIES,
    ("model_actions", "decision"): DECISIONS,
    ("model_actions", "mode"): ACTION_MODES,
}
"""Columns restricted to a fixed vocabulary, checked when rows are loaded."""


def key_columns(table: Table) -> list[str]:
    """Names of the primary-key columns of `table`: the natural key of its rows."""
    return [column.name for column in table.primary_key.columns]
