"""Streaks: a check alerts once it has breached `consecutive` intervals in a row."""

from __future__ import annotations

import pandas as pd

from modelwatch import checks
from modelwatch.checks.rows import BREACHED, OK, CheckRow
from modelwatch.checks.streaks import Streaks

from .builders import DAY, STORED_COLUMNS, history, interval, model, only, stored

NAME = "threshold:error_rate"
# error_rate 0.03 breaches `max: 0.02`; 0.01 does not.
BAD, GOOD = 0.03, 0.01


def run(error_rates: list[float | None], consecutive: int = 2) -> list[CheckRow]:
    """Judge interval after interval as the DAG does, each run continuing from the rows stored before it.

    None: no run for that interval (no row is stored).
    """
    configured = model(thresholds={"error_rate": {"max": 0.02, "consecutive": consecutive}},
                       checks={"isolation_forest": {"enabled": False}})
    intervals = [{"error_rate": (rate, 50_000)} if rate is not None else {} for rate in error_rates]
    measured = history(intervals)
    written: list[CheckRow] = []
    for i, rate in enumerate(error_rates):
        if rate is None:
            continue
        start, end = interval(i)
        rows = checks.judge(configured, start, end, measured, stored(written), {})
        written.append(only(rows, NAME))
    return written


def test_the_first_breach_does_not_alert_and_the_second_in_a_row_does():
    first, second, third = run([BAD, BAD, BAD])
    assert (first.status, first.streak, first.alerting) == (BREACHED, 1, False)
    assert (second.streak, second.alerting) == (2, True)
    assert (third.streak, third.alerting) == (3, True)


def test_breached_since_is_the_first_breach_of_the_run():
    rows = run([GOOD, BAD, BAD, BAD])
    assert [row.breached_since for row in rows] == [None, *[interval(1)[0]] * 3]


def test_a_passing_interval_resets_the_streak():
    rows = run([BAD, GOOD, BAD, BAD])
    assert [(row.status, row.streak, row.alerting) for row in rows] == [
        (BREACHED, 1, False), (OK, 0, False), (BREACHED, 1, False), (BREACHED, 2, True),
    ]
    assert rows[3].breached_since == interval(2)[0]  # the new run's first breach, not the old one's


def test_a_missing_interval_resets_the_streak():
    rows = run([BAD, None, BAD, BAD])  # no run for interval 1: its breach cannot continue interval 0's
    assert [(row.streak, row.alerting) for row in rows] == [(1, False), (1, False), (2, True)]


def test_consecutive_1_alerts_on_the_first_breach():
    (row,) = run([BAD], consecutive=1)
    assert (row.streak, row.alerting, row.breached_since) == (1, True, interval(0)[0])


def test_a_re_judged_interval_replaces_its_stored_verdict():
    # Interval 0 was stored as breached; re-judged with later labels it passes, so interval 1 starts afresh.
    start0, end0 = interval(0)
    start1, end1 = interval(1)
    earlier = CheckRow(start0, end0, NAME, "threshold", "error_rate", BREACHED, "warning", "", consecutive=2,
                       streak=1, breached_since=start0)
    streaks = Streaks(stored([earlier]), DAY)
    streaks.continue_with(earlier.but(status=OK))
    now = streaks.continue_with(CheckRow(start1, end1, NAME, "threshold", "error_rate", BREACHED, "warning", "",
                                         consecutive=2))
    assert (now.streak, now.alerting, now.breached_since) == (1, False, start1)


def test_a_stored_breach_without_breached_since_starts_at_its_own_interval():
    start0, _ = interval(0)
    start1, end1 = interval(1)
    frame = pd.DataFrame([[start0, NAME, BREACHED, 1, None]], columns=STORED_COLUMNS)
    now = Streaks(frame, DAY).continue_with(
        CheckRow(start1, end1, NAME, "threshold", "error_rate", BREACHED, "warning", "", consecutive=2))
    assert (now.streak, now.alerting, now.breached_since) == (2, True, start0)


def test_an_earlier_interval_re_judged_with_matured_labels_continues_into_this_one():
    configured = model(thresholds={"accuracy": {"min": 0.85, "consecutive": 2}},
                       checks={"isolation_forest": {"enabled": False}})
    start0, end0 = interval(0)
    start1, end1 = interval(1)
    # Run 0 saw 150 labels of interval 0: no verdict.
    (first_run,) = [row for row in checks.judge(configured, start0, end0, history([{"accuracy": (0.80, 150)}]),
                                                 stored([]), {}) if row.check_name == "threshold:accuracy"]
    assert first_run.status == "insufficient_labels"
    # Run 1: interval 0's labels have matured, and interval 1 is as bad.
    matured = history([{"accuracy": (0.80, 1000)}, {"accuracy": (0.80, 1000)}])
    rows = checks.judge(configured, start1, end1, matured, stored([first_run]), {}, refreshed=[(start0, end0)])
    earlier, now = [row for row in rows if row.check_name == "threshold:accuracy"]
    assert (earlier.interval_start, earlier.streak, earlier.alerting) == (start0, 1, False)
    assert (now.interval_start, now.streak, now.alerting, now.breached_since) == (start1, 2, True, start0)
