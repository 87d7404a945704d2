"""The monitor DAGs under Airflow's real scheduler (LocalExecutor): backfills from the REST API and the CLI.

One Airflow, as `make airflow` starts it, over the week of incidents of
`scenarios`. The demo's way of running first processes three days with
`dag.test()`; then backfills through the REST API and `airflow backfill
create` cover the week, re-process part of it, dry-run part of it, and a
manual run with Params re-runs one day. Each step is checked in the
warehouse, the registry and the inbox, and in the order Airflow ran the tasks.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import scenarios
from airflow_cluster import ApiError, run_with_dag_test
from pipelines import assert_same_contents, warehouse_contents
from scenarios import DAYS, DECISION_COLUMNS, EXPECTED, JUDGED, START, day, registry_state
from servers import smtp_connection

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 30 * 60
DEMO_DAYS = 3


def on_day(offset: int) -> date:
    return START + timedelta(days=offset)


def started_at(cluster, dag_id: str, run_id: str) -> dict[str, tuple[datetime, datetime]]:
    """Each task's start and end in one run."""
    return {ti["task_id"]: (pd.Timestamp(ti["start_date"]), pd.Timestamp(ti["end_date"]))
            for ti in cluster.task_instances(dag_id, run_id) if ti["start_date"]}


def test_backfills_from_rest_and_cli_under_the_scheduler_judge_in_order_replace_and_dry_run(
        week, start_airflow, postgres_databases, smtp_server, endpoint, use_week_here):
    port, inbox = smtp_server
    url = f"sqlite:///{week / 'warehouse.db'}"
    # Backfills while the scheduler writes need PostgreSQL: SQLite refuses a second writer at once.
    metadata = postgres_databases()
    env = scenarios.environment(week, url, smtp_connection(port), endpoint.url) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata}
    use_week_here(env)

    def demo_first(home, full_env):
        run_with_dag_test(full_env, "monitor_delivery_time", [on_day(k) for k in range(DEMO_DAYS)])

    cluster = start_airflow(env, before_start=demo_first)
    cluster.wait_for_dags(["monitor_credit_risk", "monitor_delivery_time"])
    demo_runs = scenarios.monitoring_runs(url)
    assert sorted(demo_runs.index) == [("delivery_time", day(k)) for k in range(DEMO_DAYS)]

    # A backfill that would judge days before their history is refused at once.
    with pytest.raises(ApiError, match="reverse") as refused:
        cluster.backfill("monitor_credit_risk", on_day(0), on_day(DAYS - 1), backwards=True)
    assert refused.value.status in (409, 422)

    # The whole week of credit_risk through the REST API.
    cluster.backfill("monitor_credit_risk", on_day(0), on_day(DAYS - 1), max_active_runs=4)
    # Days 1.. of delivery_time through the CLI: "missing runs only" is refused with the reason, then
    # re-processing completed runs covers the demo's days 1 and 2 and adds the rest.
    missing_only = cluster.cli("backfill", "create", "--dag-id", "monitor_delivery_time", "--from-date",
                               on_day(1).isoformat(), "--to-date", on_day(DAYS - 1).isoformat(), check=False)
    assert missing_only.returncode != 0
    assert "reprocess" in (missing_only.stdout + missing_only.stderr).lower()
    cluster.cli("backfill", "create", "--dag-id", "monitor_delivery_time", "--from-date", on_day(1).isoformat(),
                "--to-date", on_day(DAYS - 1).isoformat(), "--reprocess-behavior", "completed",
                "--max-active-runs", "4")

    credit_runs = cluster.wait_for_runs(
        "monitor_credit_risk", cluster.run_ids_between("monitor_credit_risk", on_day(0), on_day(DAYS - 1)),
        RUN_TIMEOUT_S)
    delivery_runs = cluster.wait_for_runs(
        "monitor_delivery_time", cluster.run_ids_between("monitor_delivery_time", on_day(1), on_day(DAYS - 1)),
        RUN_TIMEOUT_S)
    assert {run["run_type"] for run in [*credit_runs.values(), *delivery_runs.values()]} == {"backfill"}

    # Exactly the named days, each once: a backfill's run has its day as logical date and covers it.
    for runs, days in [(credit_runs, range(DAYS)), (delivery_runs, range(1, DAYS))]:
        covered = sorted(pd.Timestamp(run["data_interval_start"]).date() for run in runs.values())
        assert covered == [on_day(k) for k in days]
        for run in runs.values():
            start = pd.Timestamp(run["data_interval_start"])
            assert pd.Timestamp(run["logical_date"]) == start
            assert pd.Timestamp(run["data_interval_end"]) - start == pd.Timedelta(days=1)
    recorded = scenarios.monitoring_runs(url)
    assert len(recorded) == 2 * DAYS and recorded.index.is_unique
    assert set(recorded["status"]) <= {"success", "halted"} and recorded["finished_at"].notna().all()
    # The demo's day 0 is untouched; its days 1 and 2 were run again, as runs of the backfill.
    assert recorded.loc[("delivery_time", day(0)), "started_at"] == demo_runs.loc[("delivery_time", day(0)),
                                                                                   "started_at"]
    for k in (1, 2):
        assert recorded.loc[("delivery_time", day(k)), "started_at"] > demo_runs.loc[("delivery_time", day(k)),
                                                                                      "finished_at"]

    decisions = scenarios.decisions(url)
    for model, expected in EXPECTED.items():
        assert [decisions.loc[(model, day(k)), "decision"] for k in range(DAYS)] == expected, model
    assert decisions.loc[("credit_risk", day(6)), "outcome"] == "rolled_back"
    assert decisions.loc[("delivery_time", day(4)), "outcome"] == "promoted"
    # Each condition told once, by e-mail and webhook: the demo told delivery_time's alert of day 1, and
    # the backfill's re-run of that day, judged on the same labels, found it told.
    subjects = [message["Subject"] for _, _, message in inbox.messages]
    told = decisions[decisions["notified"].astype(bool)]
    assert len(subjects) == len(endpoint.received) == len(told) > 0
    for model, told_day in told.index:
        # The subject reads "[ModelWatch <severity>] <model> <decision>: <day>: <title>".
        assert sum(f" {model} " in subject and f": {told_day}:" in subject for subject in subjects) == 1, subjects
    assert (decisions.loc[("delivery_time", day(1)), "notification"]
            == "not notified (already notified by an earlier run of this interval)")

    # Judged in order: each day's checks start after the day before has finished; extracts do not wait.
    for dag_id, runs in [("monitor_credit_risk", credit_runs), ("monitor_delivery_time", delivery_runs)]:
        ordered = sorted(runs.values(), key=lambda run: run["logical_date"])
        tasks = [started_at(cluster, dag_id, run["dag_run_id"]) for run in ordered]
        for before, after in itertools.pairwise(tasks):
            assert after["check"][0] >= before["notify"][1], dag_id
        assert any(after["extract"][0] < before["notify"][1] for before, after in itertools.pairwise(tasks)), dag_id

    # Re-processing days 4..6 of credit_risk replaces them: each day judged on the labels its first run
    # knew, so the same checks and decisions, no row twice, nothing sent or moved again.
    first_pass, first_decisions = warehouse_contents(url), decisions[DECISION_COLUMNS]
    registry_after_first = registry_state("credit_risk")
    told_before = len(inbox.messages)
    cluster.backfill("monitor_credit_risk", on_day(4), on_day(6), conf={"actions": "on"})
    reprocessed = cluster.run_ids_between("monitor_credit_risk", on_day(4), on_day(6))
    cluster.wait_for_runs("monitor_credit_risk", reprocessed, RUN_TIMEOUT_S)
    second = scenarios.monitoring_runs(url)
    assert len(second) == 2 * DAYS
    changed = second.index[second["started_at"] != recorded["started_at"]]
    assert sorted(changed) == [("credit_risk", day(k)) for k in (4, 5, 6)]
    second_pass = warehouse_contents(url)
    assert_same_contents({t: first_pass[t] for t in JUDGED}, {t: second_pass[t] for t in JUDGED})
    pd.testing.assert_frame_equal(scenarios.decisions(url)[DECISION_COLUMNS], first_decisions)
    assert registry_state("credit_risk") == registry_after_first
    assert len(inbox.messages) == len(endpoint.received) == told_before

    # A dry run of the same days decides as the real runs did, records it apart, changes and sends nothing.
    cluster.backfill("monitor_credit_risk", on_day(4), on_day(6), conf={"actions": "dry_run"})
    cluster.wait_for_runs("monitor_credit_risk", reprocessed, RUN_TIMEOUT_S)
    dry_decisions = scenarios.decisions(url, "dry_run")
    assert sorted(dry_decisions.index) == [("credit_risk", day(k)) for k in (4, 5, 6)]
    assert dry_decisions["decision"].tolist() == EXPECTED["credit_risk"][4:7]
    assert dry_decisions.loc[("credit_risk", day(6)), "outcome"] == "dry_run"
    assert registry_state("credit_risk") == registry_after_first
    assert len(inbox.messages) == told_before
    pd.testing.assert_frame_equal(scenarios.decisions(url)[DECISION_COLUMNS], first_decisions)

    registry_state_before_manual = registry_state("delivery_time")
    # A manual run with Params, at any time of day 3, gives the rows of the backfill's run of day 3.
    manual = cluster.trigger("monitor_delivery_time", datetime(2026, 3, 4, 15, 30, tzinfo=UTC),
                             {"actions": "on", "wait_for_logs": False, "label_refresh_intervals": 3})
    (run,) = cluster.wait_for_runs("monitor_delivery_time", {manual}, RUN_TIMEOUT_S).values()
    assert (run["data_interval_start"][:10], run["data_interval_end"][:10]) == ("2026-03-04", "2026-03-05")
    assert scenarios.monitoring_runs(url).loc[("delivery_time", "2026-03-04"), "run_id"] == manual
    third_pass = warehouse_contents(url)
    assert_same_contents({t: first_pass[t] for t in JUDGED}, {t: third_pass[t] for t in JUDGED})
    pd.testing.assert_frame_equal(scenarios.decisions(url)[DECISION_COLUMNS], first_decisions)
    assert registry_state("delivery_time") == registry_state_before_manual
    assert len(inbox.messages) == told_before
