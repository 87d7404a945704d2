"""Decide, act and notify through the pipeline's task functions, for a model the registry does not know."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from logfiles import model_spec
from modelwatch_notifiers import send
from servers import smtp_connection

from modelwatch import pipeline
from modelwatch.checks import CheckRow
from modelwatch.checks.rows import to_message
from modelwatch.config import parse_config
from modelwatch.warehouse import queries

START, END = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)


@pytest.fixture
def logs_only(tmp_path, mlflow_store):
    """A model monitored from its logs only: its registered name is unknown to the (real) registry."""
    spec = model_spec(registered_model="never_registered", retrain={"min_new_labels": 0})
    return parse_config({"staging_root": str(tmp_path / "staging"), "models": [spec]})


def auc_drop() -> CheckRow:
    return CheckRow(
        START, END, "threshold:auc_roc", "threshold", "auc_roc", "breached", "critical",
        "auc_roc 0.61 below its threshold 0.75", observed=0.61, limit_low=0.75, sample_size=900, streak=1,
        breached_since=START, alerting=True,
    )


def test_a_model_without_a_registry_entry_is_decided_and_its_retrain_says_why_not(logs_only, warehouse_engine):
    url = warehouse_engine.url.render_as_string(hide_password=False)
    loaded = {"critical_failure": False, "failed_critical": [], "drifted_features": ["income"],
              "recomputed_intervals": []}
    checked = {"rows": [to_message(auc_drop())]}

    decided = pipeline.decide("credit_risk", START, END, "run-1", loaded, checked, config=logs_only,
                              warehouse_url=url)
    outcome = pipeline.act("credit_risk", decided["action"], START, END, "run-1", config=logs_only,
                           warehouse_url=url)
    told = pipeline.notify("credit_risk", START, END, "run-1", send, config=logs_only, warehouse_url=url)

    assert decided["action"] == "retrain"
    assert "threshold:auc_roc@2026-03-02" in decided["checks"] and "income" in decided["reason"]
    assert outcome["outcome"] == "not_possible"
    row = queries.decision(warehouse_engine, "credit_risk", START)
    assert (row["decision"], row["outcome"], row["from_version"], row["to_version"]) == (
        "retrain", "not_possible", None, None
    )
    assert "no `champion` in the MLflow registry" in row["detail"] and "never_registered" in row["detail"]
    # No target is configured: the decision is logged, and the run has ended.
    assert told == {"notified": False, "notification": row["notification"]}
    assert "logged only" in row["notification"]
    runs = queries.decisions(warehouse_engine, "credit_risk", START, END)
    assert len(runs) == 1


def test_an_unknown_mode_is_refused_before_anything_is_recorded(logs_only, warehouse_engine):
    url = warehouse_engine.url.render_as_string(hide_password=False)
    with pytest.raises(ValueError, match=r"actions: expected one of \['on', 'dry_run'\] \(got 'off'\)"):
        pipeline.decide("credit_risk", START, END, "run-1", {}, {"rows": []}, mode="off", config=logs_only,
                        warehouse_url=url)
    assert queries.decision(warehouse_engine, "credit_risk", START) is None


def test_of_two_runs_of_an_interval_only_the_one_that_decided_last_acts(logs_only, warehouse_engine):
    url = warehouse_engine.url.render_as_string(hide_password=False)
    loaded = {"critical_failure": False, "failed_critical": [], "drifted_features": [], "recomputed_intervals": []}
    checked = {"rows": [to_message(auc_drop())]}
    for run_id in ("run-1", "run-2"):  # a scheduled run and a manual one of the same interval
        decided = pipeline.decide("credit_risk", START, END, run_id, loaded, checked, config=logs_only,
                                  warehouse_url=url)

    deferred = pipeline.act("credit_risk", decided["action"], START, END, "run-1", config=logs_only,
                            warehouse_url=url)
    assert deferred["outcome"] == "deferred"
    assert deferred["detail"] == "run run-2 of the interval decided since and acts on it; run run-1 did nothing"
    assert queries.decision(warehouse_engine, "credit_risk", START)["outcome"] == "decided"  # untouched
    done = pipeline.act("credit_risk", decided["action"], START, END, "run-2", config=logs_only, warehouse_url=url)
    # A retry of the run that owns the decision may act again: its action is idempotent on the interval.
    again = pipeline.act("credit_risk", decided["action"], START, END, "run-2", config=logs_only, warehouse_url=url)
    assert done == again


@pytest.fixture
def alerting(tmp_path, mlflow_store, warehouse_engine, smtp_server, monkeypatch):
    """A model that alerts by e-mail to the test's SMTP server: its config, the warehouse URL, the inbox."""
    port, inbox = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_SMTP", smtp_connection(port))
    spec = model_spec(alerts={"emails": ["oncall@example.com"], "smtp_connection": "modelwatch_smtp"})
    config = parse_config({"staging_root": str(tmp_path / "staging"), "models": [spec]})
    return config, warehouse_engine.url.render_as_string(hide_password=False), inbox


LOADED = {"critical_failure": False, "failed_critical": [], "drifted_features": [], "recomputed_intervals": []}


def test_a_rerun_of_an_interval_does_not_tell_people_again(alerting, warehouse_engine):
    config, url, inbox = alerting
    loaded = LOADED
    checked = {"rows": [to_message(auc_drop())]}

    for run_id in ("run-1", "run-2"):
        decided = pipeline.decide("credit_risk", START, END, run_id, loaded, checked, config=config,
                                  warehouse_url=url)
        pipeline.act("credit_risk", decided["action"], START, END, run_id, config=config, warehouse_url=url)
        pipeline.notify("credit_risk", START, END, run_id, send, config=config, warehouse_url=url)

    assert len(inbox.messages) == 1
    _, recipients, message = inbox.messages[0]
    assert recipients == ["oncall@example.com"] and "credit_risk alert: 2026-03-02" in message["Subject"]
    row = queries.decision(warehouse_engine, "credit_risk", START)
    assert row["notified"]
    assert row["notification"] == "not notified (already notified by an earlier run of this interval)"


def test_a_rerun_of_an_older_interval_tells_nothing_the_later_intervals_told(alerting):
    config, url, inbox = alerting
    loaded = LOADED
    next_start, next_end = END, datetime(2026, 3, 4, tzinfo=UTC)
    later = CheckRow(next_start, next_end, "threshold:auc_roc", "threshold", "auc_roc", "breached", "critical",
                     "auc_roc 0.60 below its threshold 0.75", observed=0.60, limit_low=0.75, sample_size=900,
                     streak=2, breached_since=START, alerting=True)

    def run(start, end, run_id, row):
        decided = pipeline.decide("credit_risk", start, end, run_id, loaded, {"rows": [to_message(row)]},
                                  config=config, warehouse_url=url)
        pipeline.act("credit_risk", decided["action"], start, end, run_id, config=config, warehouse_url=url)
        return pipeline.notify("credit_risk", start, end, run_id, send, config=config, warehouse_url=url)

    # The first interval's first run saw no breach yet (its labels had not matured): nothing to tell.
    quiet = CheckRow(START, END, "threshold:auc_roc", "threshold", "auc_roc", "ok", "critical", "auc_roc 0.80",
                     observed=0.80, limit_low=0.75, sample_size=300, streak=0)
    assert not run(START, END, "first", quiet)["notified"]
    assert run(next_start, next_end, "next", later)["notified"]
    # A backfill re-runs the first interval with the matured labels: the breach is the one already told.
    rerun = run(START, END, "backfill", auc_drop())

    assert len(inbox.messages) == 1
    assert rerun == {"notified": False,
                     "notification": "not notified (already told by the runs of later intervals)"}


def test_a_rerun_decides_on_the_champion_its_first_run_saw(warehouse_engine):
    from modelwatch.warehouse import load

    def action(day: int, decision: str, outcome: str, before: str, after: str, mode: str = "on") -> None:
        load.record_decision(warehouse_engine, {
            "model_name": "credit_risk", "interval_start": datetime(2026, 3, day, tzinfo=UTC),
            "interval_end": datetime(2026, 3, day + 1, tzinfo=UTC), "mode": mode, "decision": decision,
            "reason": decision, "run_id": f"run-{day}", "outcome": outcome, "from_version": before,
            "to_version": after,
        })

    action(2, "healthy", "none", "2", "2")
    action(3, "rollback", "rolled_back", "2", "1")
    action(4, "retrain", "promoted", "1", "3")
    action(5, "rollback", "dry_run", "3", "3", mode="dry_run")

    # Days up to the rollback saw v2; the day after it, v1; later days, whatever the registry says now.
    assert [queries.champion_moved_since(warehouse_engine, "credit_risk", datetime(2026, 3, day, tzinfo=UTC))
            for day in (1, 2, 3, 4, 5)] == ["2", "2", "2", "1", None]
