"""The simulator's incidents on consecutive days, through real `dag.test()` runs of both monitor DAGs.

Each day gives the expected decision, with real effects in a real MLflow
registry and notifications delivered to a real SMTP server and a real HTTP
endpoint on 127.0.0.1.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pendulum
import pytest
from pipelines import assert_same_contents, warehouse_contents
from scenarios import (
    DAYS,
    DECISION_COLUMNS,
    EXPECTED,
    JUDGED,
    ONCALL,
    START,
    day,
    decisions,
    environment,
    registry_state,
    simulate_week,
    write_config,
)
from servers import smtp_connection

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path, monkeypatch, warehouse_url, dagbag_for, smtp_server, endpoint):
    """Both shipped models, simulated over a week of incidents, alerting to the test's servers."""
    port, inbox = smtp_server
    for name, value in environment(tmp_path, warehouse_url, smtp_connection(port), endpoint.url).items():
        monkeypatch.setenv(name, value)
    config_path = write_config(tmp_path / "models.yaml")
    summary = simulate_week(config_path)
    bag = dagbag_for(config_path)
    assert bag.import_errors == {}
    return bag, summary, inbox, endpoint


def run(dag, day: int, conf: dict | None = None, hours_late: int = 0) -> str:
    """Run the DAG for the `day`-th interval; returns the branch taken (every other task succeeds).

    A manual run at any time of the day covers the day's interval; `hours_late` makes it another run
    than the one at the interval's start (`dag.test` reuses a run of the same logical date).
    """
    from modelwatch.decision import ACTIONS

    start = pendulum.datetime(START.year, START.month, START.day + day, tz="UTC")
    # Params named every time: a `dag.test` run without conf sees the Params of the previous test run.
    dag_run = dag.test(logical_date=start.add(hours=hours_late), run_conf={"actions": "on"} | (conf or {}))
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states
    (taken,) = [action for action in ACTIONS if states[action] == "success"]
    assert {state for task, state in states.items() if task not in ACTIONS} == {"success"}, states
    return taken


def test_a_week_of_incidents_gives_the_expected_decision_each_day_and_a_dry_run_changes_nothing(world, warehouse_url):
    from modelwatch import registry

    bag, summary, inbox, endpoint = world
    taken = {name: [run(bag.dags[f"monitor_{name}"], offset) for offset in range(DAYS - 1)] for name in EXPECTED}
    # The last day first as a dry run: it decides and records, and changes and tells nothing.
    versions = (registry.list_versions("credit_risk"), registry.champion_version("credit_risk"))
    told = len(inbox.messages)
    assert run(bag.dags["monitor_credit_risk"], DAYS - 1, {"actions": "dry_run"}, hours_late=6) == "rollback"
    assert (registry.list_versions("credit_risk"), registry.champion_version("credit_risk")) == versions
    assert len(inbox.messages) == told
    dry = decisions(warehouse_url, "dry_run").loc[("credit_risk", day(DAYS - 1))]
    assert (dry["decision"], dry["outcome"]) == ("rollback", "dry_run")
    assert dry["notification"].startswith("not notified (dry run")
    assert ("credit_risk", day(DAYS - 1)) not in decisions(warehouse_url).index
    for name in EXPECTED:
        taken[name].append(run(bag.dags[f"monitor_{name}"], DAYS - 1))
    assert taken == EXPECTED

    recorded = decisions(warehouse_url)
    for name, expected in EXPECTED.items():
        assert [recorded.loc[(name, day(k)), "decision"] for k in range(DAYS)] == expected

    # halt: the data-quality break, named; no model decision on bad data.
    halt = recorded.loc[("credit_risk", day(2))]
    assert halt["reason"].startswith("data problem: critical data-quality failure (null_fraction:feature__income)")
    # alert: the error burst is an environment problem; so is the latency spike; no model change.
    assert recorded.loc[("credit_risk", day(3)), "reason"].startswith("environment problem")
    assert "threshold:error_rate" in recorded.loc[("credit_risk", day(3)), "reason"]
    assert "threshold:latency_p99_ms" in recorded.loc[("delivery_time", day(1)), "reason"]
    # Concept drift alone (no input drift): a model problem that retraining on the same inputs would not fix.
    assert "no drift" in recorded.loc[("delivery_time", day(2)), "reason"]

    # retrain: drift with degraded quality and enough labels; the promoted challenger beats the champion.
    retrained = recorded.loc[("delivery_time", day(4))]
    assert retrained["outcome"] == "promoted"
    baseline = summary.models["delivery_time"].baseline_version
    challenger = registry.champion_version("delivery_time")
    assert (retrained["from_version"], retrained["to_version"]) == (baseline, challenger) and challenger != baseline
    holdout = registry.version_metrics("delivery_time", challenger)
    assert holdout["mae"] < 0.8 * holdout["champion_mae"], holdout
    tags = registry.get_version("delivery_time", challenger).tags
    assert tags["modelwatch.source_interval"] == datetime(2026, 3, 5, tzinfo=UTC).isoformat()
    assert tags["modelwatch.parent_version"] == baseline
    # The logs still show the old version serving: the next days say so instead of retraining again.
    assert recorded.loc[("delivery_time", day(5)), "reason"].startswith("environment problem: quality breached, "
                                                                          "but the logs show version")

    # rollback: a worse version went live; the champion is moved back to the version before it.
    rolled = recorded.loc[("credit_risk", day(6))]
    credit = summary.models["credit_risk"]
    assert rolled["outcome"] == "rolled_back"
    assert (rolled["from_version"], rolled["to_version"]) == (credit.champion_version, credit.baseline_version)
    assert registry.champion_version("credit_risk") == credit.baseline_version

    # Notifications: one per new condition or action, none for healthy days, each to both targets.
    subjects = [message["Subject"] for _, _, message in inbox.messages]
    told = recorded[recorded["notified"].astype(bool)]
    assert len(subjects) == len(endpoint.received) == len(told)
    assert all(recipients == [ONCALL] for _, recipients, _ in inbox.messages)
    assert not recorded.loc[recorded["decision"] == "healthy", "notified"].astype(bool).any()
    for name, offset in [("credit_risk", 2), ("credit_risk", 3), ("credit_risk", 6), ("delivery_time", 1),
                         ("delivery_time", 4)]:
        assert recorded.loc[(name, day(offset)), "notified"], (name, offset)
        assert any(name in subject and day(offset) in subject for subject in subjects), (name, offset, subjects)
    # The same open condition on the next day is not told again.
    assert not recorded.loc[("delivery_time", day(3)), "notified"]
    assert "already notified" in recorded.loc[("delivery_time", day(3)), "notification"]
    payload = endpoint.received[0].payload
    assert payload["text"] and payload["blocks"]

    # Re-running days 4..6 of credit_risk (as a backfill over processed days does) judges each day on the
    # labels its first run knew, although later ones have matured since (day 5 would show the worse version):
    # the same checks and decisions, nothing moved in the registry, nothing told again.
    first_pass, registry_before, told = warehouse_contents(warehouse_url), registry_state("credit_risk"), len(subjects)
    for offset in (4, 5, 6):
        assert run(bag.dags["monitor_credit_risk"], offset, hours_late=12) == EXPECTED["credit_risk"][offset]
    second_pass = warehouse_contents(warehouse_url)
    assert_same_contents({t: first_pass[t] for t in JUDGED}, {t: second_pass[t] for t in JUDGED})
    pd.testing.assert_frame_equal(decisions(warehouse_url)[DECISION_COLUMNS], recorded[DECISION_COLUMNS])
    assert registry_state("credit_risk") == registry_before
    assert len(inbox.messages) == len(endpoint.received) == told
    rerun = decisions(warehouse_url).loc[("credit_risk", day(6))]
    assert rerun["notification"] == "not notified (already notified by an earlier run of this interval)"
