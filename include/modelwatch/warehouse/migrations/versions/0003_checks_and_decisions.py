"""Checks and decisions: what each check found, one decision per interval, and the analysts' views on them.

`check_results` gains the verdict (`status`), its reason, the baseline and
sample size behind the limits, streaks and the run that judged it.
`model_actions` holds one decision per model, interval and mode (`on` or
`dry_run`), so a re-run replaces its interval's decision and a dry run never
overwrites a real one. New views: `model_decision_timeline` and
`open_alert_conditions`; `model_health_daily` and `model_latest_state` read
the new columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def _initial_revision():
    """Revision 0001's module (revision files are no package): its health metrics, and the views a downgrade
    restores."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("revision_0001", Path(__file__).with_name("0001_initial.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The health view pivots the same metrics as revision 0001's.
_INITIAL = _initial_revision()
HEALTH_METRICS = _INITIAL.HEALTH_METRICS
_PIVOT = _INITIAL._PIVOT

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
    COALESCE(c.checks_breached, 0) AS checks_breached,
    COALESCE(c.checks_alerting, 0) AS checks_alerting,
    a.decision,
    a.outcome AS decision_outcome,
    a.to_version AS champion_version
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
    SELECT
        model_name,
        interval_start,
        SUM(CASE WHEN breached THEN 1 ELSE 0 END) AS checks_breached,
        SUM(CASE WHEN alerting THEN 1 ELSE 0 END) AS checks_alerting
    FROM check_results
    GROUP BY model_name, interval_start
) c ON c.model_name = r.model_name AND c.interval_start = r.interval_start
LEFT JOIN model_actions a
    ON a.model_name = r.model_name AND a.interval_start = r.interval_start AND a.mode = 'on'
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
    a.decided_at AS latest_decision_at,
    a.to_version AS champion_version
FROM monitoring_runs r
LEFT JOIN model_actions a
    ON a.model_name = r.model_name
    AND a.id = (
        SELECT a2.id
        FROM model_actions a2
        WHERE a2.model_name = r.model_name AND a2.mode = 'on'
        ORDER BY a2.interval_start DESC, a2.decided_at DESC, a2.id DESC
        LIMIT 1
    )
WHERE r.interval_start = (
    SELECT MAX(r2.interval_start) FROM monitoring_runs r2 WHERE r2.model_name = r.model_name
)
"""

MODEL_DECISION_TIMELINE = """
CREATE VIEW model_decision_timeline AS
SELECT
    a.model_name,
    a.interval_start,
    a.interval_end,
    a.decision,
    a.severity,
    a.reason,
    a.outcome,
    a.detail,
    a.from_version AS champion_before,
    a.to_version AS champion_after,
    a.served_version,
    a.checks,
    a.notified,
    a.notification,
    a.run_id,
    a.decided_at
FROM model_actions a
WHERE a.mode = 'on'
"""

OPEN_ALERT_CONDITIONS = """
CREATE VIEW open_alert_conditions AS
SELECT
    c.model_name,
    c.check_name,
    c.check_kind,
    c.metric,
    c.severity,
    c.breached_since AS open_since,
    c.interval_start AS latest_interval_start,
    c.streak,
    c.observed,
    c.limit_low,
    c.limit_high,
    c.baseline,
    c.reason,
    c.judged_in,
    c.run_id
FROM check_results c
WHERE c.alerting
    AND c.interval_start = (
        SELECT MAX(c2.interval_start)
        FROM check_results c2
        WHERE c2.model_name = c.model_name
            AND c2.check_name = c.check_name
            AND c2.status IN ('ok', 'breached')
    )
"""

_CHECK_COLUMNS = (
    sa.Column("interval_end", TIMESTAMP),
    sa.Column("status", sa.String()),
    sa.Column("baseline", sa.Double()),
    sa.Column("sample_size", sa.BigInteger()),
    sa.Column("streak", sa.Integer()),
    sa.Column("breached_since", TIMESTAMP),
    sa.Column("alerting", sa.Boolean()),
    sa.Column("reason", sa.Text()),
    sa.Column("judged_in", TIMESTAMP),
    sa.Column("run_id", sa.String()),
    sa.Column("checked_at", TIMESTAMP, server_default=sa.func.current_timestamp()),
)

_ACTION_COLUMNS = (
    sa.Column("interval_end", TIMESTAMP),
    sa.Column("mode", sa.String(), nullable=False, server_default="on"),
    sa.Column("severity", sa.String()),
    sa.Column("detail", sa.Text()),
    sa.Column("checks", sa.Text()),
    sa.Column("served_version", sa.String()),
    sa.Column("notified", sa.Boolean()),
    sa.Column("notification", sa.Text()),
    sa.Column("condition", sa.Text()),
    sa.Column("facts", sa.Text()),
)


def upgrade() -> None:
    # SQLite rebuilds model_actions to change its key; views that read it must not exist meanwhile.
    op.execute("DROP VIEW model_latest_state")
    op.execute("DROP VIEW model_health_daily")
    for column in _CHECK_COLUMNS:
        op.add_column("check_results", column)
    op.create_index("ix_check_results_check", "check_results", ["model_name", "check_name", "interval_start"])
    with op.batch_alter_table("model_actions") as batch:
        for column in _ACTION_COLUMNS:
            batch.add_column(column)
        batch.drop_constraint("uq_model_actions_run", type_="unique")
        batch.create_unique_constraint("uq_model_actions_interval", ["model_name", "interval_start", "mode"])
    for view in (MODEL_HEALTH_DAILY, MODEL_LATEST_STATE, MODEL_DECISION_TIMELINE, OPEN_ALERT_CONDITIONS):
        op.execute(view)


def downgrade() -> None:
    for view in ("open_alert_conditions", "model_decision_timeline", "model_latest_state", "model_health_daily"):
        op.execute(f"DROP VIEW {view}")
    with op.batch_alter_table("model_actions") as batch:
        batch.drop_constraint("uq_model_actions_interval", type_="unique")
        batch.create_unique_constraint("uq_model_actions_run", ["model_name", "interval_start", "run_id"])
        for column in reversed(_ACTION_COLUMNS):
            batch.drop_column(column.name)
    op.drop_index("ix_check_results_check", table_name="check_results")
    for column in reversed(_CHECK_COLUMNS):
        op.drop_column("check_results", column.name)
    op.execute(_INITIAL.MODEL_HEALTH_DAILY)
    op.execute(_INITIAL.MODEL_LATEST_STATE)
