"""After the demo, a backfill of days inside its range re-runs exactly those days, as a new user would try it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import scenarios

pytestmark = pytest.mark.slow

DEMO_DAYS = 3
RUN_TIMEOUT_S = 20 * 60


def test_a_cli_backfill_of_days_the_demo_processed_reruns_exactly_those_days(tmp_path, start_airflow,
                                                                           postgres_databases):
    data = tmp_path / "data"
    warehouse = f"sqlite:///{data / 'warehouse.db'}"
    first_day = datetime.now(UTC).date() - timedelta(days=DEMO_DAYS)
    demo_days = [(first_day + timedelta(days=k)).isoformat() for k in range(DEMO_DAYS)]
    after_demo = {}

    def demo(home, env):
        done = subprocess.run([sys.executable, "-m", "modelwatch", "demo", "--no-loop", "--days", str(DEMO_DAYS),
                               "--requests-per-day", "2000"], env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        after_demo["runs"] = scenarios.monitoring_runs(warehouse)

    env = {"MODELWATCH_DATA_DIR": str(data), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_databases()}
    cluster = start_airflow(env, before_start=demo)
    runs = after_demo["runs"]
    # The demo's runs cover the days it names, one interval per day.
    assert sorted(runs.index) == sorted((m, d) for m in ("credit_risk", "delivery_time") for d in demo_days)
    assert (pd.to_datetime(runs["interval_end"]) - pd.to_datetime(runs["interval_start"]) == pd.Timedelta(days=1)).all()

    cluster.wait_for_dags(["monitor_credit_risk", "monitor_delivery_time"])
    named = demo_days[1:]
    cluster.cli("backfill", "create", "--dag-id", "monitor_credit_risk", "--from-date", named[0],
                "--to-date", named[-1], "--reprocess-behavior", "completed")
    backfilled = {run["dag_run_id"] for run in cluster.runs("monitor_credit_risk") if run["run_type"] == "backfill"}
    cluster.wait_for_runs("monitor_credit_risk", backfilled, RUN_TIMEOUT_S)

    # One run per day: the backfill re-ran the demo's runs of the named days, and added none beside them.
    logical_days = sorted(run["logical_date"][:10] for run in cluster.runs("monitor_credit_risk")
                          if run["logical_date"][:10] in demo_days)
    assert logical_days == demo_days
    assert sorted(run["logical_date"][:10] for run in cluster.runs("monitor_credit_risk")
                  if run["dag_run_id"] in backfilled) == named
    after_backfill = scenarios.monitoring_runs(warehouse)
    assert sorted(after_backfill.index) == sorted(runs.index)
    rerun = after_backfill.index[after_backfill["started_at"] != runs["started_at"]]
    assert sorted(rerun) == [("credit_risk", day) for day in named]
