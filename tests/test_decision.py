"""The decision: an interval's check rows and run facts in, one action and its reason out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelwatch.checks import CheckRow
from modelwatch.checks.rows import BREACHED, INSUFFICIENT_LABELS, OK
from modelwatch.decision import (
    DATA_PROBLEM,
    ENVIRONMENT_PROBLEM,
    INPUT_DRIFT,
    MODEL_PROBLEM,
    RunFacts,
    VersionSwitch,
    condition_of,
    decide,
    notification_due,
)

DAY = timedelta(days=1)
START = datetime(2026, 3, 10, tzinfo=UTC)


def check(check_name: str, status: str = BREACHED, *, alerting: bool | None = None, severity: str = "warning",
          streak: int | None = None, consecutive: int = 1, **values) -> CheckRow:
    """A check row of the interval at START as the checks write it; breached rows alert unless told otherwise."""
    kind, _, metric = check_name.partition(":")
    breached = status == BREACHED
    alerting = breached if alerting is None else alerting
    streak = (consecutive if alerting else 1) if breached and streak is None else (streak or 0)
    return CheckRow(
        START, START + DAY, check_name, kind, metric or None, status, severity,
        values.pop("reason", f"{check_name} {'out of bounds' if breached else 'fine'}"),
        consecutive=consecutive, streak=streak, breached_since=START - (streak - 1) * DAY if streak else None,
        alerting=alerting, **values,
    )


def accuracy_drop(**values) -> CheckRow:
    return check("control_limit:accuracy", **({"observed": 0.87, "limit_low": 0.89, "baseline": 0.92, "score": 6.1}
                                              | values))


def auc_below_min(**values) -> CheckRow:
    return check("threshold:auc_roc", observed=0.78, limit_low=0.80, **values)


def latency_spike(**values) -> CheckRow:
    return check("control_limit:latency_p99_ms", observed=900.0, limit_high=320.0, baseline=250.0, score=40.0,
                 **values)


def anomaly(first_kind: str, first_metric: str) -> CheckRow:
    deviating = [
        {"metric": first_metric, "kind": first_kind, "value": 1.0, "z": 40.0, "low": 0.0, "high": 0.5},
        {"metric": "accuracy" if first_kind == "system" else "latency_p99_ms",
         "kind": "quality" if first_kind == "system" else "system", "value": 1.0, "z": 3.0, "low": 0.0, "high": 0.5},
    ]
    return check("isolation_forest", observed=-0.62, limit_low=-0.55, score=-0.62, consecutive=2,
                 facts={"deviating": deviating})


FINE = [check("control_limit:auc_roc", OK), check("threshold:error_rate", OK),
        check("control_limit:f1", INSUFFICIENT_LABELS)]


def switch(previous_metric: float, current_metric: float = 0.86, intervals_live: int = 2) -> VersionSwitch:
    return VersionSwitch(
        version="4", previous="3", live_since=START - (intervals_live - 1) * DAY, intervals_live=intervals_live,
        metric="auc_roc", previous_metric=previous_metric, current_metric=current_metric, same_requests=True,
    )


def assert_names_its_checks(decision) -> None:
    """Every check behind the decision appears in its reason, so a person sees what drove it."""
    assert decision.checks
    for name in decision.checks:
        check_name, _, day = name.partition("@")
        assert check_name in decision.reason
        assert day == START.date().isoformat()


# --- halt


def test_a_critical_data_quality_failure_halts_even_when_quality_is_breached():
    facts = RunFacts(critical_failure=True, failed_critical=["prediction_in_set"], drifted_features=["income"],
                     new_labels=5000, min_new_labels=1000, switch=switch(previous_metric=0.95))
    decision = decide([accuracy_drop(), latency_spike(), *FINE], facts)
    assert (decision.action, decision.problem, decision.severity) == ("halt", DATA_PROBLEM, "critical")
    assert decision.checks == ["data_quality:prediction_in_set"]
    assert "critical data-quality failure (prediction_in_set)" in decision.reason
    assert "no model decision is taken on bad data" in decision.reason


# --- rollback


def test_quality_alerting_soon_after_a_switch_to_a_worse_version_rolls_back():
    facts = RunFacts(switch=switch(previous_metric=0.91), rollback_window=3,
                     drifted_features=["income"], new_labels=5000, min_new_labels=1000)
    decision = decide([accuracy_drop(), *FINE], facts)
    assert (decision.action, decision.problem) == ("rollback", MODEL_PROBLEM)
    assert decision.checks == [f"control_limit:accuracy@{START.date()}"]
    assert "2 interval(s) after version 4 went live" in decision.reason
    assert "version 3 did better on the same requests (auc_roc 0.91 against 0.86): roll back to 3" in decision.reason
    assert_names_its_checks(decision)


def test_no_rollback_when_the_previous_version_did_worse_and_the_alert_says_why():
    facts = RunFacts(switch=switch(previous_metric=0.84), rollback_window=3)
    decision = decide([accuracy_drop(), *FINE], facts)
    assert (decision.action, decision.problem) == ("alert", MODEL_PROBLEM)
    assert "version 4 is new, but 3 did not do better" in decision.reason
    assert_names_its_checks(decision)


def test_no_rollback_outside_the_rollback_window():
    facts = RunFacts(switch=switch(previous_metric=0.91, intervals_live=4), rollback_window=3)
    decision = decide([accuracy_drop()], facts)
    assert decision.action == "alert"
    assert "version 4" not in decision.reason  # old news: the switch is not what is missing


def test_no_rollback_when_rollback_is_disabled():
    facts = RunFacts(switch=switch(previous_metric=0.91), rollback_enabled=False)
    decision = decide([accuracy_drop()], facts)
    assert decision.action == "alert" and "rollback is disabled" in decision.reason


# --- retrain


def test_quality_alerting_with_drift_and_enough_labels_retrains():
    facts = RunFacts(drifted_features=["income", "country"], new_labels=5000, min_new_labels=1000)
    decision = decide([accuracy_drop(), auc_below_min(severity="critical"), *FINE], facts)
    assert (decision.action, decision.problem, decision.severity) == ("retrain", MODEL_PROBLEM, "critical")
    assert "quality breached with drift (income, country) and 5000 new labels (at least 1000)" in decision.reason
    assert_names_its_checks(decision)


def test_an_alerting_drift_check_counts_as_drift_and_is_named():
    drift = check("control_limit:drifted_feature_share", observed=0.6, limit_high=0.2, score=12.0)
    decision = decide([accuracy_drop(), drift], RunFacts(new_labels=5000, min_new_labels=1000))
    assert decision.action == "retrain"
    assert f"control_limit:drifted_feature_share@{START.date()}" in decision.checks
    assert_names_its_checks(decision)


def test_too_few_labels_to_retrain_alerts_saying_how_many():
    facts = RunFacts(drifted_features=["income"], new_labels=300, min_new_labels=1000)
    decision = decide([accuracy_drop(), *FINE], facts)
    assert (decision.action, decision.problem) == ("alert", MODEL_PROBLEM)
    assert "only 300 new labels since the champion was trained (1000 needed to retrain)" in decision.reason
    assert_names_its_checks(decision)


def test_quality_alerting_without_drift_alerts_rather_than_retrains():
    decision = decide([accuracy_drop()], RunFacts(new_labels=5000, min_new_labels=1000))
    assert decision.action == "alert" and "no drift" in decision.reason


def test_retraining_disabled_alerts():
    facts = RunFacts(drifted_features=["income"], new_labels=5000, min_new_labels=1000, retrain_enabled=False)
    decision = decide([accuracy_drop()], facts)
    assert decision.action == "alert" and "retraining is disabled" in decision.reason


# --- the other alerts


def test_only_system_kpis_alerting_is_an_environment_problem():
    errors = check("threshold:error_rate", observed=0.05, limit_high=0.02, severity="critical")
    decision = decide([latency_spike(), errors, *FINE], RunFacts(drifted_features=[], new_labels=5000))
    assert (decision.action, decision.problem, decision.severity) == ("alert", ENVIRONMENT_PROBLEM, "critical")
    assert "no model change" in decision.reason
    assert decision.checks == [f"control_limit:latency_p99_ms@{START.date()}", f"threshold:error_rate@{START.date()}"]
    assert_names_its_checks(decision)


def test_an_anomaly_led_by_a_system_kpi_is_an_environment_problem():
    decision = decide([anomaly("system", "latency_p99_ms"), *FINE], RunFacts())
    assert (decision.action, decision.problem) == ("alert", ENVIRONMENT_PROBLEM)
    assert_names_its_checks(decision)


def test_an_anomaly_led_by_a_quality_metric_is_a_model_problem():
    decision = decide([anomaly("quality", "auc_roc")], RunFacts(drifted_features=["income"], new_labels=5000))
    assert (decision.action, decision.problem) == ("retrain", MODEL_PROBLEM)
    assert_names_its_checks(decision)


def test_data_quality_alerting_is_a_data_problem():
    quarantined = check("control_limit:quarantined_share", observed=0.2, limit_high=0.01, score=30.0)
    decision = decide([quarantined, *FINE], RunFacts())
    assert (decision.action, decision.problem) == ("alert", DATA_PROBLEM)
    assert_names_its_checks(decision)


def test_drift_alone_is_input_drift():
    drift = check("control_limit:drifted_feature_share", observed=0.6, limit_high=0.2, score=12.0)
    decision = decide([drift, *FINE], RunFacts(drifted_features=["income"]))
    assert (decision.action, decision.problem) == ("alert", INPUT_DRIFT)
    assert_names_its_checks(decision)


# --- healthy


def test_nothing_alerting_is_healthy():
    decision = decide(FINE, RunFacts(drifted_features=["income"], new_labels=5000))
    assert (decision.action, decision.problem, decision.checks, decision.severity) == ("healthy", "none", [], None)


def test_breaches_short_of_their_streak_drive_nothing():
    first_breaches = [accuracy_drop(alerting=False, consecutive=2), latency_spike(alerting=False, consecutive=2),
                      anomaly("system", "latency_p99_ms").but(alerting=False, streak=1)]
    assert all(row.breached and row.streak < row.consecutive for row in first_breaches)
    assert decide([*first_breaches, *FINE], RunFacts(drifted_features=["income"], new_labels=5000)).action == (
        "healthy")


def test_quality_outranks_system_kpis_which_the_reason_still_names():
    decision = decide([latency_spike(), accuracy_drop()], RunFacts())
    assert decision.problem == MODEL_PROBLEM
    assert decision.checks == [f"control_limit:accuracy@{START.date()}", f"control_limit:latency_p99_ms@{START.date()}"]
    assert "Also alerting: control_limit:latency_p99_ms" in decision.reason


# --- notifications


def condition(rows: list[CheckRow]) -> dict:
    return condition_of(rows, decide(rows, RunFacts()))


def test_condition_of_gives_each_driving_check_its_severity_and_excess():
    current = condition([accuracy_drop(), auc_below_min(severity="critical"), latency_spike(), *FINE])
    assert current["control_limit:accuracy"] == {"severity": "warning", "excess": 6.1}  # standard errors
    assert current["threshold:auc_roc"] == {"severity": "critical", "excess": pytest.approx(0.025)}  # 0.02 below 0.8
    assert current["control_limit:latency_p99_ms"]["severity"] == "warning"  # alerting beside the quality drop
    assert current["problem:model problem"]["severity"] == "critical"


def test_a_halt_is_a_critical_condition():
    rows = [accuracy_drop()]
    decision = decide(rows, RunFacts(critical_failure=True, failed_critical=["prediction_in_set"]))
    current = condition_of(rows, decision)
    assert current["data_quality:prediction_in_set"] == {"severity": "critical", "excess": 0.0}
    assert "control_limit:accuracy" not in current


def test_a_new_condition_is_notified():
    current = condition([accuracy_drop()])
    assert notification_due(current, None, None) == (True, "new condition")
    # A different condition replacing the last one is new too.
    assert notification_due(current, condition([latency_spike()]), condition([latency_spike()]))[0]


def test_the_same_condition_no_worse_is_not_notified_again():
    current = condition([accuracy_drop(score=6.5)])
    notified = condition([accuracy_drop()])
    due, why = notification_due(current, notified, notified)
    assert not due
    assert why.startswith("already notified: ") and "control_limit:accuracy" in why


def test_a_check_joining_the_condition_is_notified():
    notified = condition([accuracy_drop()])
    current = condition([accuracy_drop(), auc_below_min()])
    assert notification_due(current, notified, notified) == (True, "joined by threshold:auc_roc")


def test_escalation_from_warning_to_critical_is_notified():
    notified = condition([auc_below_min()])
    current = condition([auc_below_min(severity="critical")])
    due, why = notification_due(current, notified, notified)
    assert due and why.startswith("escalated to critical: ") and "threshold:auc_roc" in why


@pytest.mark.parametrize(("score", "due"), [(9.2, True), (12.0, True), (9.1, False)])
def test_an_excess_grown_by_half_is_notified(score, due):
    notified = condition([accuracy_drop()])  # excess 6.1 standard errors; half as much again: 9.15
    current = condition([accuracy_drop(score=score)])
    assert notification_due(current, notified, notified)[0] is due
    if due:
        assert notification_due(current, notified, notified) == (True, "worse: control_limit:accuracy")


def test_nothing_open_is_not_notified():
    assert notification_due(condition(FINE), condition([accuracy_drop()]), None) == (False, "nothing open")
