"""The simulator's incidents on consecutive days, through real `dag.test()` runs of both monitor DAGs.

Each day gives the expected decision, with real effects in a real MLflow
registry and notifications delivered to a real SMTP server and a real HTTP
endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pendulum
import pytest
import yaml
from servers import smtp_connection

from modelwatch import settings

pytestmark = pytest.mark.slow

START = date(2026, 3, 1)
DAYS = 7
INCIDENTS = [
    ("latency_spike", 1, "delivery_time", 1, {"factor": 6.0}),
    ("concept_drift", 1, "delivery_time", None, {"strength": 0.6}),
    ("data_quality_break", 2, "credit_risk", 1, {}),
    ("error_burst", 3, "credit_risk", 1, {"rate": 0.2}),
    ("sudden_drift", 4, "delivery_time", None, {"feature": "distance_km", "factor": 1.8}),
    ("bad_version", 5, "credit_risk", None, {"mode": "dropped_features"}),
]
# Labels arrive over the following days: a quality drop shows on the run after it starts.
EXPECTED = {
    "credit_risk": ["healthy", "healthy", "halt", "alert", "healthy", "healthy", "rollback"],
    "delivery_time": ["healthy", "alert", "alert", "alert", "retrain", "alert", "alert"],
}
ONCALL = "oncall@example.com"


@pytest.fixture
def world(tmp_path, monkeypatch, warehouse_url, dagbag_for, smtp_server, endpoint):
    """Both shipped models, simulated over a week of incidents, alerting to the test's servers."""
    from modelwatch import registry
    from modelwatch.config import load_config
    from modelwatch.simulation import Incident, simulate

    port, inbox = smtp_server
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_SMTP", smtp_connection(port))
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_WEBHOOK", json.dumps({"conn_type": "http", "password": endpoint.url}))
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    for model in raw["models"]:
        model["label_maturity_intervals"] = 3
        model["retrain"] = {"min_new_labels": 500, "training_window_intervals": 7}
        model["alerts"] = {"emails": [ONCALL], "smtp_connection": "modelwatch_smtp",
                           "webhook_connection": "modelwatch_webhook"}
    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    registry.configure()
    summary = simulate(
        config, start=START, days=DAYS, requests_per_day=3000, seed=5,
        incidents=[Incident(kind, day, model, duration, params) for kind, day, model, duration, params in INCIDENTS],
    )
    bag = dagbag_for(config_path)
    assert bag.import_errors == {}
    return bag, summary, inbox, endpoint


def run(dag, day: int, conf: dict | None = None, hours_late: int = 0) -> str:
    """Run the DAG for the `day`-th interval; returns the branch taken (every other task succeeds).

    A manual run at any time of the next day covers the interval as well; `hours_late` makes it
    another run than the one at the interval's end (`dag.test` reuses a run of the same logical date).
    """
    from modelwatch.decision import ACTIONS

    end = pendulum.datetime(START.year, START.month, START.day + day + 1, tz="UTC")
    # Params named every time: a `dag.test` run without conf sees the Params of the previous test run.
    dag_run = dag.test(logical_date=end.add(hours=hours_late), run_conf={"actions": "on"} | (conf or {}))
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success", states
    (taken,) = [action for action in ACTIONS if states[action] == "success"]
    assert {state for task, state in states.items() if task not in ACTIONS} == {"success"}, states
    return taken


def decisions(url: str, mode: str = "on"):
    from modelwatch.warehouse.engine import get_engine
    from modelwatch.warehouse.load import read_frame

    engine = get_engine(url)
    try:
        frame = read_frame(engine, "SELECT * FROM model_actions WHERE mode = :mode ORDER BY model_name, interval_start",
                           {"mode": mode})
    finally:
        engine.dispose()
    frame["day"] = frame["interval_start"].astype(str).str[:10]
    return frame.set_index(["model_name", "day"])


def day(offset: int) -> str:
    return datetime(START.year, START.month, START.day + offset, tzinfo=UTC).date().isoformat()


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
