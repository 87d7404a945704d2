"""The task functions end to end on hand-written logs: orphans, label maturity, failures."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from logfiles import label, make_model, partition, prediction, write_records
from pipelines import interval, run_interval

from modelwatch import pipeline
from modelwatch.config import ProjectConfig
from modelwatch.warehouse.load import read_frame


@pytest.fixture
def world(tmp_path):
    root = str(tmp_path / "logs")
    model = make_model(root, label_maturity_intervals=1)
    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    return root, config


def test_orphans_are_counted_once_every_interval_of_the_window_is_staged(world, warehouse_url):
    root, config = world
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction("a", "2026-03-02T08:00:00Z"),
                   prediction("b", "2026-03-02T09:00:00Z", prediction=0, score=0.2)])
    write_records(partition(root, "predictions", "2026-03-03") + "/a.jsonl",
                  [prediction("c", "2026-03-03T08:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl", [label("a", 1, "2026-03-02T20:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-03") + "/a.jsonl",
                  [label("b", 1, "2026-03-03T10:00:00Z"), label("c", 0, "2026-03-03T11:00:00Z"),
                   label("nobody", 1, "2026-03-03T12:00:00Z")])

    first = run_interval(config, 2, warehouse_url)
    assert first["orphan_labels"] is None  # 1 March was never staged: an orphan count would be a guess
    second = run_interval(config, 3, warehouse_url)
    assert second["orphan_labels"] == 1
    assert second["labels_joined"] == 1
    assert second["recomputed_intervals"] == ["2026-03-02T00:00:00+00:00"]

    runs = read_frame(pipeline.warehouse_engine(warehouse_url),
                      "SELECT interval_start, orphan_labels, labels_joined FROM monitoring_runs "
                      "ORDER BY interval_start")
    assert runs["orphan_labels"].tolist()[1] == 1
    coverage = read_frame(
        pipeline.warehouse_engine(warehouse_url),
        "SELECT interval_start, label_coverage, sample_size FROM model_metrics "
        "WHERE metric = 'accuracy' AND model_version = 'all' AND segment = 'all' ORDER BY interval_start",
    )
    # 2 March: one label known by its own run, both after 3 March's run recomputed it.
    assert coverage["label_coverage"].tolist() == [1.0, 1.0]
    assert coverage["sample_size"].tolist() == [2, 1]


def test_a_label_refresh_recomputes_intervals_past_the_configured_maturity(world, warehouse_url):
    root, config = world
    for day in ("2026-03-02", "2026-03-03", "2026-03-04"):
        write_records(partition(root, "predictions", day) + "/a.jsonl",
                      [prediction(f"{day}-a", f"{day}T08:00:00Z"), prediction(f"{day}-b", f"{day}T09:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl",
                  [label("2026-03-02-a", 1, "2026-03-02T20:00:00Z")])
    # A label of 2 March that arrives two days late: past label_maturity_intervals = 1.
    write_records(partition(root, "feedback", "2026-03-04") + "/a.jsonl",
                  [label("2026-03-02-b", 0, "2026-03-04T10:00:00Z")])

    def march_2_sample():
        return read_frame(
            pipeline.warehouse_engine(warehouse_url),
            "SELECT sample_size FROM model_metrics WHERE metric = 'accuracy' AND model_version = 'all' "
            "AND segment = 'all' AND interval_start = (SELECT MIN(interval_start) FROM model_metrics)",
        )["sample_size"].tolist()

    for day in (2, 3):
        run_interval(config, day, warehouse_url)
    assert run_interval(config, 4, warehouse_url)["recomputed_intervals"] == ["2026-03-03T00:00:00+00:00"]
    assert march_2_sample() == [1]

    refreshed = run_interval(config, 4, warehouse_url, run_id="refresh-4", label_refresh=2)

    assert refreshed["recomputed_intervals"] == ["2026-03-03T00:00:00+00:00", "2026-03-02T00:00:00+00:00"]
    assert march_2_sample() == [2]


def test_an_older_rerun_keeps_metrics_made_from_later_labels(world, warehouse_url):
    root, config = world
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction("a", "2026-03-02T08:00:00Z"), prediction("b", "2026-03-02T09:00:00Z")])
    write_records(partition(root, "predictions", "2026-03-03") + "/a.jsonl", [prediction("c", "2026-03-03T08:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl", [label("a", 1, "2026-03-02T20:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-03") + "/a.jsonl", [label("b", 0, "2026-03-03T10:00:00Z")])
    run_interval(config, 2, warehouse_url)
    run_interval(config, 3, warehouse_url)
    run_interval(config, 2, warehouse_url)
    accuracy = read_frame(
        pipeline.warehouse_engine(warehouse_url),
        "SELECT value, sample_size FROM model_metrics WHERE metric = 'accuracy' AND model_version = 'all' "
        "AND segment = 'all' ORDER BY interval_start",
    )
    assert accuracy.to_dict("records")[0] == {"value": 0.5, "sample_size": 2}


def test_an_older_rerun_is_judged_on_the_labels_its_interval_knew(tmp_path, warehouse_url):
    root = str(tmp_path / "logs")
    model = make_model(root, label_maturity_intervals=1, thresholds={"accuracy": {"min": 0.9}},
                       checks={"min_labels": 1})
    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction("a", "2026-03-02T08:00:00Z"), prediction("b", "2026-03-02T09:00:00Z")])
    write_records(partition(root, "predictions", "2026-03-03") + "/a.jsonl", [prediction("c", "2026-03-03T08:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl", [label("a", 1, "2026-03-02T20:00:00Z")])
    # 2 March's second answer was wrong, as a label that comes on 3 March shows.
    write_records(partition(root, "feedback", "2026-03-03") + "/a.jsonl",
                  [label("b", 0, "2026-03-03T10:00:00Z"), label("c", 1, "2026-03-03T11:00:00Z")])
    engine = pipeline.warehouse_engine(warehouse_url)

    def march_2() -> tuple[dict, dict]:
        check = read_frame(engine, "SELECT observed, breached, judged_in FROM check_results WHERE "
                                   "check_name = 'threshold:accuracy' AND interval_start < '2026-03-03'")
        decided = read_frame(engine, "SELECT decision, reason, checks FROM model_actions WHERE "
                                     "interval_start < '2026-03-03'")
        return check.iloc[0].to_dict(), decided.iloc[0].to_dict()

    run_interval(config, 2, warehouse_url)
    first_check, first_decision = march_2()
    assert (first_check["observed"], bool(first_check["breached"]), first_decision["decision"]) == (
        1.0, False, "healthy")
    run_interval(config, 3, warehouse_url)
    later_check, _ = march_2()
    assert (later_check["observed"], bool(later_check["breached"])) == (0.5, True)

    measured = run_interval(config, 2, warehouse_url, run_id="rerun-2")

    assert measured["labels_joined"] == 1
    check, decision = march_2()
    # The warehouse keeps what the later labels show; the interval's decision is what its first run decided.
    assert check == later_check
    assert decision == first_decision


def test_a_failed_run_is_recorded_with_its_reason(world, warehouse_url):
    _, config = world
    start, end = interval(5)
    engine = pipeline.warehouse_engine(warehouse_url)
    query = "SELECT status, failure_reason, finished_at IS NULL AS unfinished FROM monitoring_runs"
    pipeline.mark_started("credit_risk", start, end, "run-x", warehouse_url=warehouse_url)
    pipeline.mark_retrying("credit_risk", start, end, "run-x", "load (try 1 of 4): OperationalError: reset\x00",
                           warehouse_url=warehouse_url)
    assert read_frame(engine, query).to_dict("records") == [
        {"status": "retrying", "failure_reason": "load (try 1 of 4): OperationalError: reset\\u0000", "unfinished": 1}
    ]
    assert pipeline.pending_history("credit_risk", end, config, warehouse_url) == [start]
    pipeline.mark_failed("credit_risk", start, end, "run-x", "extract: disk full", warehouse_url=warehouse_url)
    # A task of the same run that fails later, transiently, does not hide the verdict.
    pipeline.mark_retrying("credit_risk", start, end, "run-x", "measure (try 1 of 2): OSError: busy",
                           warehouse_url=warehouse_url)
    assert read_frame(engine, query).to_dict("records") == [
        {"status": "failed", "failure_reason": "extract: disk full", "unfinished": 0}
    ]


def test_naive_interval_bounds_are_refused(world):
    _, config = world
    with pytest.raises(ValueError, match="no time zone"):
        pipeline.extract("credit_risk", datetime(2026, 3, 2), datetime(2026, 3, 3), config=config)


def test_a_rerun_after_a_misrouted_file_is_removed_leaves_no_rows_of_its_version_or_segment(world, warehouse_url):
    root, config = world
    day = partition(root, "predictions", "2026-03-02")
    write_records(day + "/a.jsonl", [prediction(f"a{i}", "2026-03-02T08:00:00Z") for i in range(6)])
    misrouted = [prediction(f"b{i}", "2026-03-02T09:00:00Z", model_version="9", context={"channel": "partner"})
                 for i in range(4)]
    write_records(day + "/misrouted.jsonl", misrouted)
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl",
                  [label(r, 1, "2026-03-02T20:00:00Z") for r in ["a0", "a1", "b0", "b1"]])
    engine = pipeline.warehouse_engine(warehouse_url)
    stray = ("SELECT COUNT(*) AS n FROM model_metrics "
             "WHERE model_version = '9' OR segment = 'channel=partner'")

    run_interval(config, 2, warehouse_url)
    assert read_frame(engine, stray)["n"].iloc[0] > 0
    Path(day, "misrouted.jsonl").unlink()
    run_interval(config, 2, warehouse_url)

    assert read_frame(engine, stray)["n"].iloc[0] == 0
    versions = read_frame(engine, "SELECT DISTINCT model_version FROM model_metrics")["model_version"]
    assert sorted(versions) == ["3", "all"]
    runs = read_frame(engine, "SELECT rows_read, status FROM monitoring_runs")
    assert runs.to_dict("records") == [{"rows_read": 6, "status": "success"}]
