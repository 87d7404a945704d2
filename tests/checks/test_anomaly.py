"""IsolationForest over each interval's vector of monitored metrics, fitted on the history only."""

from __future__ import annotations

import numpy as np
import pytest

from modelwatch.checks import anomaly
from modelwatch.checks.rows import BREACHED, INSUFFICIENT_HISTORY, JUDGED, NOT_MEASURED, OK

from .builders import history, interval, model, typical_day

HISTORY = 30
MODEL = model()


@pytest.fixture(scope="module")
def past() -> list[dict]:
    rng = np.random.default_rng(7)
    return [typical_day(rng) for _ in range(HISTORY)]


def median_day(past: list[dict]) -> dict:
    """An interval at the median of every metric of `past`: as typical as an interval gets."""
    return {metric: (float(np.median([day[metric][0] for day in past])), size)
            for metric, (_, size) in past[0].items()}


def broken_day(past: list[dict]) -> dict:
    """A broken serving day: tail latency eight times its usual value, and everything else off with it."""
    return median_day(past) | {
        "latency_p99_ms": (2000.0, 40_000), "latency_p95_ms": (400.0, 40_000), "error_rate": (0.01, 40_000),
        "request_count": (40_000, 40_000), "accuracy": (0.85, 900), "f1": (0.80, 900), "auc_roc": (0.90, 900),
        "brier_score": (0.12, 900),
    }


def judged(intervals: list[dict], at: int | None = None, configured=MODEL, halted=()):
    """The anomaly row of interval `at` (default: the last one)."""
    at = len(intervals) - 1 if at is None else at
    start, end = interval(at)
    (row,) = anomaly.evaluate(configured, start, end, history(intervals, halted))
    return row


def test_a_very_anomalous_interval_is_flagged(past):
    row = judged([*past, broken_day(past)])
    assert row.status == BREACHED and row.check_name == "isolation_forest" and row.metric is None
    assert row.score == row.observed < row.limit_low
    assert row.sample_size == HISTORY  # the intervals it learnt from
    assert row.reason.startswith(f"anomalous against {HISTORY} earlier intervals")
    assert row.consecutive == 2 and row.severity == "warning"  # checks.isolation_forest defaults


def test_a_typical_interval_is_not_flagged(past):
    row = judged([*past, median_day(past)])
    assert row.status == OK and row.score > row.limit_low
    assert row.reason.startswith("not anomalous")


def test_the_reason_names_the_most_deviating_metrics_with_value_and_typical_range(past):
    row = judged([*past, broken_day(past)])
    deviating = row.facts["deviating"]
    # latency_p99_ms is far more spreads out than anything else (capped alike for the trees, not for the reason).
    assert deviating[0]["metric"] == "latency_p99_ms"
    assert abs(deviating[0]["z"]) > abs(deviating[1]["z"]) > anomaly.MAX_Z
    assert len(deviating) == anomaly.SHOWN_METRICS == 3
    assert deviating[0]["kind"] == "system" and deviating[0]["value"] == 2000.0
    p99 = [day["latency_p99_ms"][0] for day in past]
    low, high = np.percentile(p99, [5, 95])
    assert deviating[0]["low"] == pytest.approx(low) and deviating[0]["high"] == pytest.approx(high)
    furthest = row.reason.split("furthest from their history: ")[1]
    assert furthest.startswith(f"latency_p99_ms 2000 (typical {low:.4g} to {high:.4g}); ")
    for d in deviating:
        assert f"{d['metric']} {d['value']:.4g} (typical" in furthest


def test_the_forest_is_fitted_on_the_history_only(past):
    broken = judged([*past, broken_day(past)])
    usual = judged([*past, median_day(past)])
    # The same 30 earlier intervals give the same threshold and typical ranges whatever the judged interval
    # holds; had it been part of the fit, an interval this far out would have moved both.
    assert broken.limit_low == usual.limit_low
    ranges = [{d["metric"]: (d["low"], d["high"]) for d in row.facts["deviating"]} for row in (broken, usual)]
    shared = ranges[0].keys() & ranges[1].keys()
    assert all(ranges[0][metric] == ranges[1][metric] for metric in shared)
    # Later intervals in the frame change nothing either: re-judging an interval gives the same verdict.
    later = [broken_day(past)] * 5
    assert judged([*past, median_day(past), *later], at=HISTORY) == usual
    assert judged([*past, broken_day(past), *later], at=HISTORY) == broken


def test_a_halted_interval_is_no_history(past):
    with_halted = [*past[:10], broken_day(past), *past[10:], median_day(past)]
    row, clean = judged(with_halted, halted=[10]), judged([*past, median_day(past)])
    assert (row.score, row.limit_low, row.sample_size, row.reason) == (
        clean.score, clean.limit_low, clean.sample_size, clean.reason)


def test_the_score_is_deterministic(past):
    first = judged([*past, broken_day(past)])
    again = judged([*past, broken_day(past)])
    assert (first.score, first.limit_low, first.reason) == (again.score, again.limit_low, again.reason)


def test_fewer_than_min_history_intervals_give_no_verdict(past):
    row = judged([*past[:13], broken_day(past)])  # checks.isolation_forest.min_history is 14
    assert row.status == INSUFFICIENT_HISTORY and not row.breached
    assert "13 earlier intervals with every monitored metric; the forest needs 14" in row.reason
    assert judged([*past[:14], broken_day(past)]).status in JUDGED


def test_a_quality_metric_from_too_few_labels_is_left_out_of_the_vector(past):
    few_labels = median_day(past) | {"accuracy": (0.10, 150)}
    row = judged([*past, few_labels])
    assert "accuracy" not in [d["metric"] for d in row.facts["deviating"]]
    assert row.status == OK


def test_an_interval_without_monitored_metrics_is_not_measured(past):
    assert judged([*past, {"log_loss": (0.2, 1000)}]).status == NOT_MEASURED


def test_a_switched_off_detector_writes_no_row(past):
    configured = model(checks={"isolation_forest": {"enabled": False}})
    start, end = interval(HISTORY)
    assert anomaly.evaluate(configured, start, end, history([*past, broken_day(past)])) == []
