"""Initial warehouse: monitoring tables and the analysts' views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _interval_columns() -> list[sa.Column]:
    return [
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("interval_start", TIMESTAMP, nullable=False),
        sa.Column("interval_end", TIMESTAMP, nullable=False),
    ]


def _create_tables() -> None:
    op.create_table(
        "monitoring_runs",
        *_interval_columns(),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("rows_read", sa.BigInteger()),
        sa.Column("rows_valid", sa.BigInteger()),
        sa.Column("rows_quarantined", sa.BigInteger()),
        sa.Column("duplicates_dropped", sa.BigInteger()),
        sa.Column("labels_read", sa.BigInteger()),
        sa.Column("labels_joined", sa.BigInteger()),
        sa.Column("orphan_labels", sa.BigInteger()),
        sa.Column("damaged_files", sa.Text()),
        sa.Column("missing_partitions", sa.Text()),
        sa.Column("critical_failure", sa.Boolean()),
        sa.Column("drift_detected", sa.Boolean()),
        sa.Column("drifted_features", sa.Integer()),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("failure_reason", sa.Text()),
        sa.PrimaryKeyConstraint("model_name", "interval_start", name="pk_monitoring_runs"),
    )
    op.create_table(
        "model_metrics",
        *_interval_columns(),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("segment", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.Double()),
        sa.Column("sample_size", sa.BigInteger(), nullable=False),
        sa.Column("label_coverage", sa.Double()),
        sa.Column("labels_as_of", TIMESTAMP),
        sa.Column(
            "computed_at", TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.PrimaryKeyConstraint(
            "model_name",
            "interval_start",
            "model_version",
            "segment",
            "metric",
            name="pk_model_metrics",
        ),
    )
    op.create_index(
        "ix_model_metrics_metric", "model_metrics", ["model_name", "metric", "interval_start"]
    )
    op.create_table(
        "feature_drift",
        *_interval_columns(),
        sa.Column("feature", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.Column("p_value", sa.Double()),
        sa.Column("adjusted_p_value", sa.Double()),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("reference", sa.Text()),
        sa.Column("sample_size", sa.BigInteger(), nullable=False),
        sa.Column("reference_size", sa.BigInteger(), nullable=False),
        sa.Column("unseen_categories", sa.Integer()),
        sa.PrimaryKeyConstraint(
            "model_name", "interval_start", "feature", "method", name="pk_feature_drift"
        ),
    )
    op.create_index(
        "ix_feature_drift_feature", "feature_drift", ["model_name", "feature", "interval_start"]
    )
    op.create_table(
        "feature_profiles",
        *_interval_columns(),
        sa.Column("feature", sa.String(), nullable=False),
        sa.Column("feature_type", sa.String(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("null_count", sa.BigInteger(), nullable=False),
        sa.Column("mean", sa.Double()),
        sa.Column("std", sa.Double()),
        sa.Column("min", sa.Double()),
        sa.Column("max", sa.Double()),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model_name", "interval_start", "feature", name="pk_feature_profiles"
        ),
    )
    op.create_table(
        "data_quality_results",
        *_interval_columns(),
        sa.Column("expectation", sa.String(), nullable=False),
        sa.Column("column_name", sa.String(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("element_count", sa.BigInteger()),
        sa.Column("unexpected_count", sa.BigInteger()),
        sa.Column("unexpected_percent", sa.Double()),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("observed", sa.Text()),
        sa.PrimaryKeyConstraint(
            "model_name",
            "interval_start",
            "expectation",
            "column_name",
            name="pk_data_quality_results",
        ),
    )
    op.create_table(
        "quarantined_records",
        *_interval_columns(),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("source_file", sa.String(), nullable=False),
        sa.Column("line_number", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("raw", sa.Text()),
        sa.PrimaryKeyConstraint(
            "model_name",
            "interval_start",
            "kind",
            "source_file",
            "line_number",
            "reason",
            name="pk_quarantined_records",
        ),
    )
    op.create_table(
        "check_results",
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("interval_start", TIMESTAMP, nullable=False),
        sa.Column("check_name", sa.String(), nullable=False),
        sa.Column("check_kind", sa.String(), nullable=False),
        sa.Column("metric", sa.String()),
        sa.Column("observed", sa.Double()),
        sa.Column("limit_low", sa.Double()),
        sa.Column("limit_high", sa.Double()),
        sa.Column("score", sa.Double()),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String()),
        sa.PrimaryKeyConstraint(
            "model_name", "interval_start", "check_name", name="pk_check_results"
        ),
    )
    op.create_table(
        "model_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("interval_start", TIMESTAMP, nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_version", sa.String()),
        sa.Column("to_version", sa.String()),
        sa.Column("outcome", sa.String()),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column(
            "decided_at", TIMESTAMP, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_actions"),
        sa.UniqueConstraint("model_name", "interval_start", "run_id", name="uq_model_actions_run"),
    )
    op.create_index("ix_model_actions_decided", "model_actions", ["model_name", "decided_at"])


HEALTH_METRICS = (
    "accuracy",
    "auc_roc",
    "f1",
    "log_loss",
    "mae",
    "rmse",
    "request_count",
    "latency_p95_ms",
    "latency_p99_ms",
    "error_rate",
)

_PIVOT = ",\n".join(
    f"        MAX(CASE WHEN metric = '{name}' THEN value END) AS {name}" for name in HEALTH_METRICS
)

MODEL_HEALTH_DAILY = f"""
CREATE VIEW model_health_daily AS
SELECT
    r.model_name,
    r.interval_start,
    r.interval_end,
    r.status,
    r.run_id,
    r.started_at,
    r.finished_at,
    r.rows_read,
    r.rows_valid,
    r.rows_quarantined,
    r.duplicates_dropped,
    r.labels_joined,
    r.critical_failure,
    COALESCE(q.expectations_evaluated, 0) AS expectations_evaluated,
    COALESCE(q.expectations_failed, 0) AS expectations_failed,
    COALESCE(q.critical_expectations_failed, 0) AS critical_expectations_failed,
    r.drift_detected,
    r.drifted_features,
    m.label_coverage,
    m.labelled_predictions,
    {", ".join(f"m.{name}" for name in HEALTH_METRICS)},
    COALESCE(c.checks_breached, 0) AS checks_breached
FROM monitoring_runs r
LEFT JOIN (
    SELECT
        model_name,
        interval_start,
        MAX(CASE WHEN kind = 'quality' THEN label_coverage END) AS label_coverage,
        MAX(CASE WHEN kind = 'quality' THEN sample_size END) AS labelled_predictions,
{_PIVOT}
    FROM model_metrics
    WHERE model_version = 'all' AND segment = 'all'
    GROUP BY model_name, interval_start
) m ON m.model_name = r.model_name AND m.interval_start = r.interval_start
LEFT JOIN (
    SELECT
        model_name,
        interval_start,
        COUNT(*) AS expectations_evaluated,
        SUM(CASE WHEN success THEN 0 ELSE 1 END) AS expectations_failed,
        SUM(CASE WHEN NOT success AND severity = 'critical' THEN 1 ELSE 0 END)
            AS critical_expectations_failed
    FROM data_quality_results
    GROUP BY model_name, interval_start
) q ON q.model_name = r.model_name AND q.interval_start = r.interval_start
LEFT JOIN (
    SELECT model_name, interval_start, SUM(CASE WHEN breached THEN 1 ELSE 0 END) AS checks_breached
    FROM check_results
    GROUP BY model_name, interval_start
) c ON c.model_name = r.model_name AND c.interval_start = r.interval_start
"""

MODEL_LATEST_STATE = """
CREATE VIEW model_latest_state AS
SELECT
    r.model_name,
    r.interval_start AS latest_interval_start,
    r.interval_end AS latest_interval_end,
    r.status,
    r.run_id,
    r.finished_at,
    r.critical_failure,
    r.drift_detected,
    r.drifted_features,
    a.decision AS latest_decision,
    a.reason AS latest_decision_reason,
    a.interval_start AS latest_decision_interval_start,
    a.outcome AS latest_decision_outcome,
    a.decided_at AS latest_decision_at
FROM monitoring_runs r
LEFT JOIN model_actions a
    ON a.model_name = r.model_name
    AND a.id = (
        SELECT a2.id
        FROM model_actions a2
        WHERE a2.model_name = r.model_name
        ORDER BY a2.decided_at DESC, a2.id DESC
        LIMIT 1
    )
WHERE r.interval_start = (
    SELECT MAX(r2.interval_start) FROM monitoring_runs r2 WHERE r2.model_name = r.model_name
)
"""


def upgrade() -> None:
    _create_tables()
    op.execute(MODEL_HEALTH_DAILY)
    op.execute(MODEL_LATEST_STATE)


def downgrade() -> None:
    op.execute("DROP VIEW model_latest_state")
    op.execute("DROP VIEW model_health_daily")
    for table in (
        "model_actions",
        "check_results",
        "quarantined_records",
        "data_quality_results",
        "feature_profiles",
        "feature_drift",
        "model_metrics",
        "monitoring_runs",
    ):
        op.drop_table(table)
