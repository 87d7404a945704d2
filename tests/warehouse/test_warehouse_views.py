"""The analysts' views over the seeded example history."""

from __future__ import annotations

from modelwatch.warehouse.load import read_frame

from .builders import rows_of

HEALTH_COLUMNS = [
    "model_name",
    "interval_start",
    "status",
    "rows_read",
    "rows_quarantined",
    "critical_failure",
    "expectations_evaluated",
    "expectations_failed",
    "critical_expectations_failed",
    "drifted_features",
    "label_coverage",
    "labelled_predictions",
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
    "checks_breached",
]


def test_model_health_daily_has_one_wide_row_per_interval(seeded_engine):
    frame = read_frame(
        seeded_engine,
        f"SELECT {', '.join(HEALTH_COLUMNS)} FROM model_health_daily "
        "ORDER BY model_name, interval_start",
    )
    assert rows_of(frame) == [
        ("credit_risk", "2026-01-01 00:00:00", "success", 1000, 2, 0, 2, 0, 0, 1,
         0.95, 950, 0.90, 0.85, 0.80, 0.30, None, None, 1000, 120, 300, 0.01, 1),
        ("credit_risk", "2026-01-02 00:00:00", "success", 1100, 4, 0, 2, 0, 0, 2,
         0.70, 770, 0.88, 0.80, 0.78, 0.35, None, None, 1100, 200, 650, 0.02, 1),
        ("credit_risk", "2026-01-03 00:00:00", "halted", 500, 4, 1, 2, 1, 1, 1,
         0.20, 100, 0.86, 0.78, 0.75, 0.40, None, None, 500, 150, 450, 0.05, 0),
        ("demand", "2026-01-02 00:00:00", "success", 200, 0, 0, 0, 0, 0, 0,
         1.0, 200, None, None, None, None, 3.5, 5.0, 200, None, 200, 0.0, 0),
        ("demand", "2026-01-03 00:00:00", "running", None, None, None, 0, 0, 0, None,
         None, None, None, None, None, None, None, None, None, None, None, None, 0),
    ]  # fmt: skip


def test_model_latest_state_has_the_latest_interval_and_decision(seeded_engine):
    frame = read_frame(
        seeded_engine,
        "SELECT model_name, latest_interval_start, latest_interval_end, status, run_id, "
        "critical_failure, drift_detected, drifted_features, latest_decision, "
        "latest_decision_reason, latest_decision_interval_start, latest_decision_outcome, "
        "latest_decision_at FROM model_latest_state ORDER BY model_name",
    )
    assert rows_of(frame) == [
        ("credit_risk", "2026-01-03 00:00:00", "2026-01-04 00:00:00", "halted",
         "scheduled__2026-01-03", 1, 1, 1, "halt", "critical data-quality failure",
         "2026-01-03 00:00:00", "halted", "2026-01-04 01:00:00"),
        ("demand", "2026-01-03 00:00:00", "2026-01-04 00:00:00", "running",
         "scheduled__2026-01-03", None, None, None, None, None, None, None, None),
    ]  # fmt: skip


def test_model_health_daily_shows_the_decision_and_the_champion_after_it(seeded_engine):
    frame = read_frame(
        seeded_engine,
        "SELECT interval_start, checks_alerting, decision, decision_outcome, champion_version "
        "FROM model_health_daily WHERE model_name = 'credit_risk' ORDER BY interval_start",
    )
    assert rows_of(frame) == [
        ("2026-01-01 00:00:00", 1, None, None, None),
        ("2026-01-02 00:00:00", 1, "alert", "alerted", "3"),
        ("2026-01-03 00:00:00", 0, "halt", "halted", "3"),
    ]


def test_decision_timeline_has_one_real_decision_per_interval(seeded_engine):
    frame = read_frame(
        seeded_engine,
        "SELECT model_name, interval_start, decision, severity, outcome, champion_before, champion_after, "
        "served_version FROM model_decision_timeline ORDER BY model_name, interval_start",
    )
    assert rows_of(frame) == [
        ("credit_risk", "2026-01-02 00:00:00", "alert", "warning", "alerted", "3", "3", "3"),
        ("credit_risk", "2026-01-03 00:00:00", "halt", "critical", "halted", "3", "3", "3"),
    ]


def test_open_alert_conditions_are_the_checks_whose_latest_verdict_alerts(seeded_engine):
    frame = read_frame(
        seeded_engine,
        "SELECT model_name, check_name, severity, open_since, latest_interval_start, streak, observed, "
        "limit_high FROM open_alert_conditions ORDER BY model_name, check_name",
    )
    # error_rate breached on Jan 1 but recovered on Jan 2: no longer open.
    assert rows_of(frame) == [
        ("credit_risk", "threshold:latency_p99_ms", "warning", "2026-01-02 00:00:00", "2026-01-02 00:00:00", 1,
         650.0, 500.0),
    ]
