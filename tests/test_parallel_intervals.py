"""Four intervals processed at once give the warehouse that the same four give in order.

A backfill with `max_active_runs=4` starts four runs together. Their volume
check, drift reference, label maturity and orphan counts all read earlier
intervals, so each run waits (`pipeline.await_history`) until the earlier
intervals it depends on have loaded.
"""

from __future__ import annotations

import multiprocessing
import time

from logfiles import label, make_model, partition, prediction, write_records
from pipelines import assert_same_contents, interval, run_interval, run_interval_at, warehouse_contents

from modelwatch import pipeline
from modelwatch.config import ProjectConfig

DAYS = [2, 3, 4, 5]


def _write_days(root: str) -> None:
    """Volumes that grow, an income that drifts, and labels that arrive over the next two days."""
    for day in DAYS:
        records = [
            prediction(
                f"d{day}-{i}", f"2026-03-{day:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                features={"income": 1000.0 * (i % 50) * (1 + day / 4), "country": "DE" if i % 3 else "FR",
                          "has_card": bool(i % 2)},
                score=((i * day) % 10) / 10, prediction=int((i * day) % 10 >= 5),
            )
            for i in range(100 * day)
        ]
        write_records(partition(root, "predictions", f"2026-03-{day:02d}") + "/a.jsonl", records)
        for delay in (0, 1, 2):
            labels = [label(r["request_id"], i % 2, f"2026-03-{day + delay:02d}T23:30:00Z")
                      for i, r in enumerate(records) if i % 3 == delay]
            write_records(partition(root, "feedback", f"2026-03-{day + delay:02d}") + f"/from-{day}.jsonl", labels)


def test_four_intervals_at_once_equal_the_same_four_in_order(tmp_path, warehouse_url):
    root = str(tmp_path / "logs")
    _write_days(root)
    model = make_model(
        root, label_maturity_intervals=2, reference={"trailing_intervals": 2},
        data_quality={"volume_history_intervals": 3},
    )
    in_order_url = f"sqlite:///{tmp_path / 'in-order.db'}"
    in_order = ProjectConfig(staging_root=str(tmp_path / "in-order-staging"), models=[model])
    for day in DAYS:
        run_interval(in_order, day, in_order_url)
    expected = warehouse_contents(in_order_url)
    # The history really matters here: later days drift against, and recompute, earlier ones.
    assert expected["feature_drift"]["interval_start"].nunique() == len(DAYS) - 1
    assert len(expected["monitoring_runs"]) == len(DAYS)

    at_once = ProjectConfig(staging_root=str(tmp_path / "at-once-staging"), models=[model])
    # A backfill creates its runs before their tasks start; each run's first step marks it started.
    for day in DAYS:
        pipeline.mark_started(model.name, *interval(day), f"run-{day}", warehouse_url=warehouse_url)
    moment = time.time() + 1.0
    with multiprocessing.get_context("spawn").Pool(len(DAYS)) as pool:
        pending = [
            pool.apply_async(run_interval_at, (moment, at_once, day, warehouse_url, f"run-{day}", 300.0))
            for day in DAYS
        ]
        outcomes = [p.get(timeout=600) for p in pending]
    assert outcomes == ["success"] * len(DAYS)
    assert_same_contents(expected, warehouse_contents(warehouse_url))


def test_an_interval_whose_history_stays_pending_fails_naming_it(tmp_path, warehouse_url):
    root = str(tmp_path / "logs")
    _write_days(root)
    model = make_model(root, label_maturity_intervals=2)
    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    pipeline.mark_started(model.name, *interval(3), "stuck", warehouse_url=warehouse_url)
    started = time.monotonic()
    try:
        pipeline.await_history(model.name, interval(4)[0], 1.0, poll_s=0.2, config=config,
                               warehouse_url=warehouse_url)
    except pipeline.HistoryIncomplete as exc:
        message = str(exc)
    else:
        raise AssertionError("await_history returned while 3 March was still running")
    assert time.monotonic() - started < 10
    assert "2026-03-03T00:00:00+00:00" in message
    assert pipeline.pending_history(model.name, interval(3)[0], config, warehouse_url) == []
