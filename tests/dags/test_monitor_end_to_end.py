"""Real `dag.test()` runs of monitor_credit_risk over simulated days, into a real warehouse."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pendulum
import pytest
import yaml

from modelwatch import settings

pytestmark = pytest.mark.slow

DAYS = [2, 3, 4]  # March 2026; the simulated data-quality break falls on the 3rd
VOLATILE = {"run_id", "started_at", "finished_at", "computed_at", "checked_at", "decided_at"}
TABLES = [
    "monitoring_runs", "model_metrics", "feature_drift", "feature_profiles",
    "data_quality_results", "quarantined_records", "check_results", "model_actions",
]


@pytest.fixture
def monitored_world(tmp_path, monkeypatch, warehouse_url, dagbag_for):
    """Four simulated days of credit_risk logs, a models file, and the parsed DAG."""
    from modelwatch import registry
    from modelwatch.config import load_config
    from modelwatch.simulation import Incident, simulate

    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # This test's own registry, whatever store an earlier test of the process left configured.
    monkeypatch.setitem(registry._state, "uri", registry._state["uri"])
    registry.configure()
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    raw["models"] = [m | {"label_maturity_intervals": 2} for m in raw["models"] if m["name"] == "credit_risk"]
    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    simulate(
        config, start=date(2026, 3, 1), days=4, requests_per_day=1500, seed=11,
        incidents=[Incident(kind="data_quality_break", start=date(2026, 3, 3), model="credit_risk", duration_days=1)],
    )
    bag = dagbag_for(config_path)
    assert bag.import_errors == {}
    return bag.dags["monitor_credit_risk"], config.models[0]


def run_day(dag, day: int, conf: dict | None = None):
    """Run the DAG for [day, day + 1) of March 2026; every task succeeds but the branches not taken."""
    from modelwatch.decision import ACTIONS

    # Params named every time: a `dag.test` run without conf sees the Params of the previous test run.
    params = {"actions": "on", "wait_for_logs": True} | (conf or {})
    run = dag.test(logical_date=pendulum.datetime(2026, 3, day, tz="UTC"), run_conf=params)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    taken = [action for action in ACTIONS if states[action] == "success"]
    assert len(taken) == 1 and all(states[a] == "skipped" for a in ACTIONS if a not in taken), states
    assert {state for task, state in states.items() if task not in ACTIONS} == {"success"}, states
    return run, taken[0]


def snapshot(url: str) -> dict:
    from modelwatch.warehouse.engine import get_engine
    from modelwatch.warehouse.load import read_frame

    engine = get_engine(url)
    out = {}
    for table in TABLES:
        frame = read_frame(engine, f"SELECT * FROM {table}")
        frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE or c == "id"])
        out[table] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    engine.dispose()
    return out


def test_three_days_then_a_rerun(monitored_world, warehouse_url):
    from modelwatch import drift, validation

    dag, model = monitored_world
    taken = {day: run_day(dag, day)[1] for day in DAYS}
    first = snapshot(warehouse_url)
    # The broken day halts: no model decision on bad data, and the branch taken is the recorded one.
    assert taken[3] == "halt"
    actions = first["model_actions"].set_index(first["model_actions"]["interval_start"].astype(str).str[:10])
    assert actions["decision"].to_dict() == {f"2026-03-0{day}": taken[day] for day in DAYS}
    assert actions.loc["2026-03-03", "reason"].startswith("data problem: critical data-quality failure")
    assert set(first["check_results"]["interval_start"].astype(str).str[:10]) == {f"2026-03-0{d}" for d in DAYS}

    runs = first["monitoring_runs"].set_index(first["monitoring_runs"]["interval_start"].astype(str).str[:10])
    assert list(runs.index) == ["2026-03-02", "2026-03-03", "2026-03-04"]
    # The shipped config makes null incomes critical: the broken day is halted, not lost.
    assert runs["status"].to_dict() == {"2026-03-02": "success", "2026-03-03": "halted", "2026-03-04": "success"}
    assert runs["critical_failure"].astype(bool).to_dict() == {
        "2026-03-02": False, "2026-03-03": True, "2026-03-04": False
    }
    assert (runs["rows_valid"] + runs["rows_quarantined"] + runs["duplicates_dropped"] <= runs["rows_read"]).all()

    quarantine = first["quarantined_records"]
    assert len(quarantine) == runs.loc["2026-03-03", "rows_quarantined"] == 61
    assert set(quarantine["interval_start"].astype(str).str[:10]) == {"2026-03-03"}
    reasons = set(quarantine["reason"].str.split(":").str[0])
    assert {
        "invalid_json", "conflicting_duplicate", "model_name_mismatch", "timestamp_outside_partition",
        "score_out_of_range", "negative_latency", "non_finite", "wrong_type",
    } <= reasons
    assert runs.loc["2026-03-03", "duplicates_dropped"] == 12

    monitored = len(drift.monitored_columns(model))
    assert len(first["feature_profiles"]) == 3 * monitored
    # The first interval has no reference; the next two compare every monitored column twice.
    assert len(first["feature_drift"]) == 2 * 2 * monitored
    expectations = len(validation.build_expectations(model, expected_volume=None, interval_end=pendulum.now()))
    assert len(first["data_quality_results"]) == 3 * expectations
    failed = first["data_quality_results"].query("success == False")
    assert set(failed["interval_start"].astype(str).str[:10]) >= {"2026-03-03"}
    assert {"null_fraction:feature__income", "range:feature__income", "allowed_values:feature__country"} <= set(
        failed["expectation"]
    )

    metrics = first["model_metrics"]
    keys = ["model_version", "interval_start", "segment", "metric"]
    assert not metrics.duplicated(keys).any()
    overall = metrics.query("model_version == 'all' and segment == 'all'")
    per_day = overall.groupby(overall["interval_start"].astype(str).str[:10])["metric"].apply(set)
    assert {"auc_roc", "f1", "log_loss", "latency_p99_ms", "error_rate", "request_count"} <= per_day["2026-03-02"]
    auc = overall.query("metric == 'auc_roc'")
    coverage = auc.set_index(auc["interval_start"].astype(str).str[:10])
    # The first day was recomputed by the two later runs: its coverage grew past the last day's.
    assert coverage.loc["2026-03-02", "label_coverage"] > coverage.loc["2026-03-04", "label_coverage"]

    run_day(dag, 3)
    second = snapshot(warehouse_url)
    for table in TABLES:
        assert len(second[table]) == len(first[table]), table
        pd.testing.assert_frame_equal(second[table], first[table], obj=table)


def test_missing_logs_fail_the_run_naming_the_path(tmp_path, monkeypatch, dagbag_for, capfd):
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    raw["models"] = [m for m in raw["models"] if m["name"] == "delivery_time"]
    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    dag = dagbag_for(config_path).dags["monitor_delivery_time"]

    run = dag.test(logical_date=pendulum.datetime(2026, 3, 2, tz="UTC"), run_conf={"wait_for_logs": False})

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    assert states["wait_for_logs"] == "failed"
    assert states["extract"] == "upstream_failed"
    missing = tmp_path / "data" / "logs" / "delivery_time" / "predictions" / "dt=2026-03-02"
    assert f"missing {missing}" in capfd.readouterr().out
    recorded = read_runs(f"sqlite:///{tmp_path / 'warehouse.db'}")
    assert recorded["status"].tolist() == ["failed"]
    reason = recorded["failure_reason"].iloc[0]
    assert reason.startswith("wait_for_logs (try 1 of 1): FileNotFoundError: prediction logs never arrived"), reason
    assert str(missing) in reason


def read_runs(url: str):
    from modelwatch.warehouse.engine import get_engine
    from modelwatch.warehouse.load import read_frame

    engine = get_engine(url)
    try:
        return read_frame(engine, "SELECT status, failure_reason FROM monitoring_runs")
    finally:
        engine.dispose()


def test_a_deterministic_error_fails_at_once_naming_task_and_exception(tmp_path, monkeypatch, dagbag_for):
    from logfiles import partition, prediction, write_records

    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    raw["models"] = [m | {"reference": {"dataset": "reference/broken.parquet"}}
                     for m in raw["models"] if m["name"] == "credit_risk"]
    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    logs = str(tmp_path / "data" / "logs")
    write_records(partition(logs, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction(f"r{i}", "2026-03-02T10:00:00Z") for i in range(20)])
    (tmp_path / "data" / "reference").mkdir(parents=True)
    (tmp_path / "data" / "reference" / "broken.parquet").write_bytes(b"this is not parquet")
    dag = dagbag_for(config_path).dags["monitor_credit_risk"]

    run = dag.test(logical_date=pendulum.datetime(2026, 3, 2, tz="UTC"))

    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    # One try although measure may retry: the same file gives the same error every time.
    assert (str(tis["measure"].state), tis["measure"].try_number) == ("failed", 1)
    assert str(tis["load"].state) == "upstream_failed"
    reason = read_runs(f"sqlite:///{tmp_path / 'warehouse.db'}")["failure_reason"].iloc[0]
    assert reason.startswith("measure (try 1 of 2): ArrowInvalid: "), reason
