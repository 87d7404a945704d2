"""Control limits: limits from the model's own history that follow each interval's sample size."""

from __future__ import annotations

import numpy as np
import pytest

from modelwatch.checks import control_limits
from modelwatch.checks.rows import BREACHED, INSUFFICIENT_HISTORY, INSUFFICIENT_LABELS, NOT_MEASURED, OK

from .builders import binomial, history, interval, model

HISTORY = 30


def judged(intervals: list[dict], metric: str, halted=(), **checks):
    """The control-limit row of `metric` for the last of `intervals`."""
    configured = model(checks={"metrics": [metric], **checks})
    start, end = interval(len(intervals) - 1)
    (row,) = control_limits.evaluate(configured, start, end, history(intervals, halted))
    return row


def accuracy_history(rate: float = 0.90, labels: int = 1000, count: int = HISTORY, seed: int = 0) -> list[dict]:
    """`count` intervals of accuracy measured on `labels` labels each, with binomial noise."""
    rng = np.random.default_rng(seed)
    return [{"accuracy": binomial(rng, rate, labels)} for _ in range(count)]


def latency_history(count: int = HISTORY, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"latency_p99_ms": (rng.normal(250, 12), 50_000)} for _ in range(count)]


# --- no verdict


def test_fewer_than_min_history_earlier_intervals_give_no_limits():
    row = judged([*accuracy_history(count=6), {"accuracy": (0.5, 1000)}], "accuracy")  # min_history is 7
    assert row.status == INSUFFICIENT_HISTORY and not row.breached
    assert "6 earlier intervals with accuracy; limits need 7 (checks.min_history)" in row.reason
    assert judged([*accuracy_history(count=7), {"accuracy": (0.5, 1000)}], "accuracy").status == BREACHED


def test_earlier_intervals_with_too_few_labels_are_not_history():
    row = judged([*accuracy_history(labels=150), {"accuracy": (0.5, 1000)}], "accuracy")
    assert row.status == INSUFFICIENT_HISTORY
    assert "0 earlier intervals" in row.reason


def test_an_interval_with_fewer_labels_than_min_labels_is_not_judged():
    row = judged([*accuracy_history(), {"accuracy": (0.5, 150)}], "accuracy")
    assert row.status == INSUFFICIENT_LABELS and not row.breached
    assert "accuracy from 150 labels; judged from 200 (checks.min_labels)" in row.reason


def test_a_metric_the_interval_lacks_is_not_measured():
    row = judged([*accuracy_history(), {"f1": (0.5, 1000)}], "accuracy")
    assert row.status == NOT_MEASURED


# --- sample size


def test_the_same_drop_breaches_with_30000_labels_but_not_with_300():
    past = accuracy_history(0.90, labels=1000)  # 30,000 labels of history around 0.90
    many = judged([*past, {"accuracy": (0.87, 30_000)}], "accuracy")
    few = judged([*past, {"accuracy": (0.87, 300)}], "accuracy")
    assert many.status == BREACHED
    assert few.status == OK
    # Both centred on the same history; the smaller sample is allowed to wander further.
    assert many.baseline == few.baseline == pytest.approx(0.90, abs=0.005)
    assert few.limit_low < 0.87 < many.limit_low < many.baseline
    assert (many.limit_high, few.limit_high) == (None, None)  # higher is better: only a lower limit
    assert "30000 labels" in many.reason and "300 labels" in few.reason
    assert many.score > control_limits.widened(3.5, HISTORY) > few.score > 0


def test_the_limits_follow_the_sample_size_as_one_over_root_n():
    past = accuracy_history(0.90, labels=1000)
    widths = {n: judged([*past, {"accuracy": (0.90, n)}], "accuracy") for n in (400, 1600)}
    # Accuracy is judged on the log-odds scale, where the limits are k * sqrt(v (1/n + 1/30000)) wide:
    # four times the labels, close to half the width.
    half_400, half_1600 = (logit(row.baseline) - logit(row.limit_low) for row in widths.values())
    assert half_400 / half_1600 == pytest.approx(np.sqrt((1 / 400 + 1 / 30_000) / (1 / 1600 + 1 / 30_000)))


# --- system metrics


def test_a_latency_spike_breaches_and_a_usual_value_does_not():
    spike = judged([*latency_history(), {"latency_p99_ms": (600.0, 50_000)}], "latency_p99_ms")
    usual = judged([*latency_history(), {"latency_p99_ms": (260.0, 50_000)}], "latency_p99_ms")
    assert spike.status == BREACHED and spike.limit_low is None  # lower is better: only an upper limit
    assert spike.observed == 600.0 and spike.limit_high < 600.0
    assert "outside its control limits" in spike.reason
    assert usual.status == OK and usual.limit_high == spike.limit_high


def test_the_sustained_check_is_for_quality_metrics_only():
    rising = [*latency_history(), {"latency_p99_ms": (280.0, 50_000)}, {"latency_p99_ms": (280.0, 50_000)}]
    assert judged(rising, "latency_p99_ms").facts == {}


# --- halted intervals


@pytest.mark.parametrize(("metric", "past", "bad", "judged_value"), [
    ("latency_p99_ms", latency_history(), 5000.0, 262.0),
    ("accuracy", accuracy_history(), 0.40, 0.895),
])
def test_a_halted_interval_is_not_history(metric, past, bad, judged_value):
    size = past[0][metric][1]
    clean = judged([*past, {metric: (judged_value, size)}], metric)
    # The same history with a halted interval of wild values in the middle and right before the judged one.
    with_halted = [*past[:15], {metric: (bad, size)}, *past[15:], {metric: (bad, size)}, {metric: (judged_value, size)}]
    row = judged(with_halted, metric, halted=[15, len(with_halted) - 2])
    assert row.status == clean.status == OK
    assert (row.limit_low, row.limit_high, row.baseline) == (clean.limit_low, clean.limit_high, clean.baseline)
    assert f"over {HISTORY} intervals" in row.reason
    assert row.facts == clean.facts


# --- sustained shifts


def logit(share: float) -> float:
    return float(np.log(share / (1 - share)))


def steady_accuracy(count: int = HISTORY) -> list[dict]:
    """Accuracy alternating 0.946 and 0.954 on 1,000 labels: mean 0.95, spread below the binomial one."""
    return [{"accuracy": (0.95 + (0.004 if i % 2 else -0.004), 1000)} for i in range(count)]


def test_two_slightly_worse_intervals_breach_together_through_the_pooled_check():
    shifted = [*steady_accuracy(), {"accuracy": (0.92, 1000)}, {"accuracy": (0.92, 1000)}]
    first = judged(shifted[:-1], "accuracy")
    second = judged(shifted, "accuracy")
    # Alone, 0.92 is within its limits: the first interval of the shift passes.
    assert first.status == OK and first.limit_low < 0.92
    assert not first.facts["breached"]
    # Together with the one before, it is a sustained shift: the row shows the pooled value and limits.
    assert second.status == BREACHED
    pooled = second.facts
    assert pooled["breached"] and pooled["intervals"] == 2 and pooled["labels"] == 2000
    assert second.observed == pooled["pooled"] == pytest.approx(0.92)
    assert second.sample_size == 2000 and second.observed < second.limit_low == pooled["low"]
    assert pooled["center"] == pytest.approx(0.95, abs=1e-3)  # the mean on the log-odds scale
    sustained = control_limits.widened(model().checks.sustained_sigma, HISTORY)
    assert pooled["score"] > pooled["limit_sigma"] == pytest.approx(sustained)
    assert "sustained shift" in second.reason and "this interval alone: 0.92" in second.reason


def test_the_pooled_check_learns_from_the_history_before_the_pooled_intervals():
    shifted = [*steady_accuracy(), {"accuracy": (0.93, 1000)}, {"accuracy": (0.93, 1000)}]
    pooled = judged(shifted, "accuracy").facts
    # Its history is the 30 steady intervals; the first shifted one is pooled, not learnt from.
    assert pooled["center"] == pytest.approx(0.95, abs=1e-3)  # the mean on the log-odds scale


def test_sustained_intervals_1_switches_the_pooled_check_off():
    shifted = [*steady_accuracy(), {"accuracy": (0.93, 1000)}, {"accuracy": (0.93, 1000)}]
    row = judged(shifted, "accuracy", sustained_intervals=1)
    assert row.status == OK and row.facts == {}


def test_an_interval_with_too_few_labels_is_not_pooled():
    shifted = [*steady_accuracy(), {"accuracy": (0.93, 150)}, {"accuracy": (0.93, 1000)}]
    row = judged(shifted, "accuracy")
    assert row.status == OK and row.facts == {}


def test_a_sustained_shift_from_a_history_that_never_moved_is_judged_not_crashed():
    # AUC exactly 0.9 for 30 intervals: no spread (but rounding), so the pooled change is extremely far.
    flat = [{"auc_roc": (0.9, 1000)} for _ in range(HISTORY)]
    row = judged([*flat, {"auc_roc": (0.899, 1000)}, {"auc_roc": (0.9, 1000)}], "auc_roc")
    assert row.status == BREACHED and row.facts["breached"]
    assert "standard errors worse than 0.9" in row.reason and "a sustained shift" in row.reason
