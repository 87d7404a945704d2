"""Two full pipelines of one interval at the same moment: never a wrong `success`.

Each round starts both runs in two worker processes at one wall-clock moment
(a retry beside a stuck attempt, a CLI extract during a scheduled run). Every
round must leave the warehouse equal to one clean run of the interval, and
each run must either succeed or fail loudly.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
from logfiles import label, make_model, partition, prediction, write_lines, write_records
from pipelines import assert_same_contents, run_interval, run_interval_at, warehouse_contents

from modelwatch.config import ProjectConfig

ROUNDS = 30
DAY = 2


def _write_day(root: str) -> int:
    """A day of 400 requests with labels, a few bad lines and a critical data-quality failure."""
    records = [
        prediction(f"r{i}", f"2026-03-02T{i % 24:02d}:{i % 60:02d}:00Z", score=(i % 10) / 10,
                   prediction=int(i % 10 >= 5), model_version=str(1 + i % 2))
        for i in range(400)
    ]
    for record in records[:40]:  # a tenth of incomes missing: the critical null check fails
        record["features"] = {**record["features"], "income": None}
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", records[:200])
    write_records(partition(root, "predictions", "2026-03-02") + "/b.parquet", records[200:])
    write_lines(partition(root, "predictions", "2026-03-02") + "/c.jsonl", ["{not json", '{"request_id": 1}'])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl",
                  [label(f"r{i}", i % 2, "2026-03-02T23:00:00Z") for i in range(0, 400, 3)])
    return len(records) + 2


@pytest.fixture(scope="module")
def workers():
    """Two worker processes, started once: each round only pays for the pipeline."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        yield pool


def test_two_runs_of_one_interval_at_once_leave_the_warehouse_of_one_clean_run(
    tmp_path, warehouse_url, workers
):
    root = str(tmp_path / "logs")
    lines = _write_day(root)
    model = make_model(
        root, label_maturity_intervals=0, data_quality={"severities": {"null_fraction": "critical"}}
    )
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_interval(ProjectConfig(staging_root=str(tmp_path / "clean-staging"), models=[model]), DAY, clean_url, "clean")
    expected = warehouse_contents(clean_url)
    run = expected["monitoring_runs"].iloc[0]
    assert (run["status"], run["rows_read"], run["critical_failure"]) == ("halted", lines, True)

    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    outcomes = []
    for round_number in range(ROUNDS):
        moment = time.time() + 0.5
        pending = [
            workers.apply_async(run_interval_at, (moment, config, DAY, warehouse_url, f"round{round_number}-{side}"))
            for side in ("a", "b")
        ]
        results = [p.get(timeout=300) for p in pending]
        outcomes.append(results)
        assert any(result == "success" for result in results), f"round {round_number}: {results}"
        assert_same_contents(expected, warehouse_contents(warehouse_url))
    failed = [r for pair in outcomes for r in pair if r != "success"]
    # Separate attempt folders leave nothing for the two runs to break in each other.
    assert failed == [], failed
