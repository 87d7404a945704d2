"""Threshold checks: absolute and relative bounds from the models file, and their config errors."""

from __future__ import annotations

import pytest

from modelwatch.checks import thresholds
from modelwatch.checks.rows import BREACHED, INSUFFICIENT_HISTORY, INSUFFICIENT_LABELS, NO_BASELINE, NOT_MEASURED, OK
from modelwatch.config import ConfigError

from .builders import history, interval, model

LABELS = 1000


def judged(rule: dict, metric: str, value: float, size: int = LABELS, past: list[float] = (),
           champion: dict | None = None, past_size: int = LABELS):
    """The threshold row of `metric` for an interval measuring `value`, after intervals measuring `past`."""
    configured = model(thresholds={metric: rule})
    intervals = [{metric: (v, past_size)} for v in past] + [{metric: (value, size)}]
    start, end = interval(len(past))
    (row,) = thresholds.evaluate(configured, start, end, history(intervals), champion or {})
    return row


# Nine earlier intervals around 0.90: median 0.90.
AROUND_090 = [0.89, 0.90, 0.91, 0.90, 0.895, 0.905, 0.90, 0.91, 0.89]


# --- absolute bounds


@pytest.mark.parametrize("severity", ["warning", "critical"])
def test_a_value_below_min_breaches_and_carries_the_severity(severity):
    row = judged({"min": 0.80, "severity": severity}, "auc_roc", 0.78)
    assert (row.status, row.severity, row.limit_low, row.limit_high) == (BREACHED, severity, 0.80, None)
    assert row.check_name == "threshold:auc_roc" and row.check_kind == "threshold"
    assert "auc_roc 0.78 below its threshold 0.8" in row.reason


def test_a_value_above_min_passes():
    row = judged({"min": 0.80}, "auc_roc", 0.85)
    assert row.status == OK and not row.breached
    assert "within [0.8, -]" in row.reason


def test_max_bounds_from_above():
    assert judged({"max": 0.02}, "error_rate", 0.03).status == BREACHED
    assert "above its threshold 0.02" in judged({"max": 0.02}, "error_rate", 0.03).reason
    assert judged({"max": 0.02}, "error_rate", 0.01).status == OK


def test_consecutive_is_carried_for_the_streaks():
    assert judged({"min": 0.80, "consecutive": 3}, "auc_roc", 0.78).consecutive == 3


# --- relative to the trailing median


def test_relative_to_the_trailing_median_breaches_when_more_than_max_worse_worse():
    rule = {"relative_to": "trailing_median", "max_worse": 0.05}  # 5% below 0.90: 0.855
    breached = judged(rule, "auc_roc", 0.85, past=AROUND_090)
    assert breached.status == BREACHED
    assert breached.baseline == pytest.approx(0.90)
    assert breached.limit_low == pytest.approx(0.855)
    assert "trailing median 0.9, at most 5% worse" in breached.reason
    assert judged(rule, "auc_roc", 0.86, past=AROUND_090).status == OK


def test_relative_to_the_trailing_median_for_a_lower_is_better_metric_bounds_from_above():
    row = judged({"relative_to": "trailing_median", "max_worse": 0.10}, "brier_score", 0.09,
                 past=[0.08] * 9)
    assert (row.status, row.limit_low, row.limit_high) == (BREACHED, None, pytest.approx(0.088))


def test_the_trailing_median_needs_min_history_intervals():
    rule = {"relative_to": "trailing_median", "max_worse": 0.05}
    row = judged(rule, "auc_roc", 0.50, past=AROUND_090[:6])  # checks.min_history is 7
    assert row.status == INSUFFICIENT_HISTORY and not row.breached
    assert "6 earlier intervals with auc_roc, 7 needed (checks.min_history)" in row.reason
    assert judged(rule, "auc_roc", 0.50, past=AROUND_090[:7]).status == BREACHED


def test_earlier_intervals_with_too_few_labels_are_no_history_for_a_quality_median():
    # Nine earlier intervals, but from 150 labels each (checks.min_labels is 200): none counts.
    row = judged({"relative_to": "trailing_median", "max_worse": 0.05}, "auc_roc", 0.50,
                 past=AROUND_090, past_size=150)
    assert row.status == INSUFFICIENT_HISTORY


# --- relative to the champion


def test_relative_to_the_champion_without_its_value_has_no_baseline():
    row = judged({"relative_to": "champion", "max_worse": 0.02}, "auc_roc", 0.50, champion={"accuracy": 0.9})
    assert row.status == NO_BASELINE and not row.breached
    assert "the registry holds no auc_roc for the champion" in row.reason


def test_relative_to_the_champion_breaches_against_its_value():
    rule = {"relative_to": "champion", "max_worse": 0.02}  # 2% below 0.90: 0.882
    breached = judged(rule, "auc_roc", 0.87, champion={"auc_roc": 0.90})
    assert (breached.status, breached.baseline) == (BREACHED, 0.90)
    assert breached.limit_low == pytest.approx(0.882)
    assert "champion 0.9" in breached.reason
    assert judged(rule, "auc_roc", 0.885, champion={"auc_roc": 0.90}).status == OK


def test_absolute_bounds_still_apply_when_the_champion_has_no_value():
    row = judged({"min": 0.80, "relative_to": "champion", "max_worse": 0.02}, "auc_roc", 0.78)
    assert (row.status, row.limit_low) == (BREACHED, 0.80)
    assert "relative bound not applied" in row.reason


# --- no verdict


def test_a_quality_metric_from_fewer_labels_than_min_labels_is_not_judged():
    row = judged({"min": 0.80}, "auc_roc", 0.10, size=150)
    assert row.status == INSUFFICIENT_LABELS and not row.breached
    assert "auc_roc from 150 labels; judged from 200 (checks.min_labels)" in row.reason


def test_a_system_metric_is_judged_whatever_its_sample_size():
    assert judged({"max": 0.02}, "error_rate", 0.5, size=10).status == BREACHED


def test_a_metric_the_interval_lacks_is_not_measured():
    configured = model(thresholds={"auc_roc": {"min": 0.8}})
    start, end = interval(0)
    (row,) = thresholds.evaluate(configured, start, end, history([{"accuracy": (0.9, LABELS)}]), {})
    assert (row.status, row.observed) == (NOT_MEASURED, None)
    assert "auc_roc was not measured" in row.reason


# --- direction and combination


@pytest.mark.parametrize(("requests", "status", "side"), [
    (30_000, BREACHED, "below"), (70_000, BREACHED, "above"), (50_000, OK, "within"),
])
def test_a_metric_better_neither_way_breaches_on_both_sides(requests, status, side):
    absolute = judged({"min": 40_000, "max": 60_000}, "request_count", requests, size=requests)
    relative = judged({"relative_to": "trailing_median", "max_worse": 0.3}, "request_count", requests,
                      size=requests, past=[50_000] * 9)
    assert (absolute.status, relative.status) == (status, status)
    assert (relative.limit_low, relative.limit_high) == (pytest.approx(35_000), pytest.approx(65_000))
    assert side in absolute.reason and side in relative.reason


@pytest.mark.parametrize(("minimum", "low"), [(0.80, 0.855), (0.88, 0.88)])
def test_the_tightest_of_absolute_and_relative_bounds_applies(minimum, low):
    rule = {"min": minimum, "relative_to": "trailing_median", "max_worse": 0.05}  # relative: 0.855
    row = judged(rule, "auc_roc", 0.87, past=AROUND_090)
    assert row.limit_low == pytest.approx(low)
    assert row.status == (BREACHED if 0.87 < low else OK)


def test_only_thresholds_on_the_given_metrics_are_judged():
    configured = model(thresholds={"auc_roc": {"min": 0.8}, "error_rate": {"max": 0.02}})
    start, end = interval(0)
    measured = history([{"auc_roc": (0.9, LABELS), "error_rate": (0.01, 50_000)}])
    rows = thresholds.evaluate(configured, start, end, measured, {}, metrics=["auc_roc"])
    assert [row.check_name for row in rows] == ["threshold:auc_roc"]


# --- config errors


def test_a_misspelt_threshold_key_names_the_model_the_key_and_the_metric_meant():
    with pytest.raises(ConfigError) as caught:
        model(thresholds={"auc": {"min": 0.8}})
    message = str(caught.value)
    assert "models[credit_risk].thresholds" in message
    assert "unknown metric 'auc' (did you mean 'auc_roc'?)" in message


def test_a_regression_metric_on_a_classifier_is_refused_naming_the_task():
    with pytest.raises(ConfigError) as caught:
        model(thresholds={"mae": {"max": 3.0}})
    message = str(caught.value)
    assert "models[credit_risk].thresholds" in message
    assert "metric 'mae' exists for regression models, not binary_classification" in message


def test_a_champion_bound_on_a_system_metric_is_refused():
    with pytest.raises(ConfigError, match="relative_to 'champion' applies to quality metrics only"):
        model(thresholds={"error_rate": {"relative_to": "champion", "max_worse": 0.1}})
