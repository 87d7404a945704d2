"""Every DAG parses, carries its docs, tags and retries, and the folder stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from modelwatch import settings

HEAVY_MODULES = ["pandas", "pyarrow", "sklearn", "great_expectations", "mlflow", "scipy"]
IO_TASKS = {"extract", "load"}
WAITING_TASKS = {"wait_for_logs", "wait_for_history"}  # they wait by poking; retrying would repeat it


@pytest.fixture
def shipped(dagbag_for):
    return dagbag_for(settings.SHIPPED_CONFIG)


def test_no_import_errors_and_one_dag_per_model(shipped):
    assert shipped.import_errors == {}
    names = [m["name"] for m in yaml.safe_load(settings.SHIPPED_CONFIG.read_text())["models"]]
    assert sorted(shipped.dag_ids) == sorted(f"monitor_{n}" for n in names)


def test_every_dag_has_docs_tags_retries_and_whole_intervals(shipped):
    from modelwatch.timetable import IntervalOfLogicalDate

    for dag in shipped.dags.values():
        assert dag.doc_md and "monitor_<model>" in dag.doc_md
        assert "modelwatch" in dag.tags
        assert dag.catchup is False
        assert isinstance(dag.timetable, IntervalOfLogicalDate)
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id} has no execution_timeout"
            assert task.on_failure_callback and task.on_retry_callback, f"{dag.dag_id}.{task.task_id}"
            if task.task_id in WAITING_TASKS:
                assert task.mode == "reschedule" and task.timeout > 0
                continue
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"
            if task.task_id in IO_TASKS:
                assert task.retries >= 3 and task.retry_exponential_backoff


def test_history_dependent_tasks_wait_for_earlier_intervals_and_extract_does_not(shipped):
    for dag in shipped.dags.values():
        history = dag.get_task("wait_for_history")
        assert history.upstream_task_ids == {"extract"}
        assert history.depends_on_past and history.trigger_rule == "all_done"
        assert not any(dag.get_task(t).depends_on_past for t in ("wait_for_logs", "extract"))
        assert {"validate", "measure"} <= history.downstream_task_ids
        assert dag.get_task("extract").upstream_task_ids == {"wait_for_logs"}


def test_timeouts_come_from_the_models_file(dagbag_for, tmp_path):
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    raw["models"][0]["timeouts"] = {"extract": 7, "load": 3}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    dag = dagbag_for(path).dags[f"monitor_{raw['models'][0]['name']}"]
    assert dag.get_task("extract").execution_timeout.total_seconds() == 7 * 60
    assert dag.get_task("load").execution_timeout.total_seconds() == 3 * 60


def test_a_bad_models_file_is_an_import_error_naming_model_and_field(dagbag_for, tmp_path):
    broken = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    broken["models"][1]["features"][0]["min"] = "lots"
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(broken))
    bag = dagbag_for(path)
    (message,) = bag.import_errors.values()
    assert "models[delivery_time].features[0].min" in message


def test_dags_folder_parses_without_heavy_imports_within_two_seconds():
    """Parse in a fresh interpreter, as the DAG processor does, and report what it loaded."""
    probe = f"""
import json, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
start = time.perf_counter()
bag = DagBag(dag_folder={str(settings.PROJECT_ROOT / 'dags')!r})
seconds = time.perf_counter() - start
loaded = sorted({{m.split('.')[0] for m in set(sys.modules) - before}})
print(json.dumps({{"seconds": seconds, "loaded": loaded, "errors": list(bag.import_errors)}}))
"""
    env = {"MODELWATCH_CONFIG": str(settings.SHIPPED_CONFIG)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert not set(HEAVY_MODULES) & set(report["loaded"]), report["loaded"]
    assert report["seconds"] < 2.0, report


def test_every_decision_is_a_labelled_branch_that_joins_at_notify(shipped):
    from modelwatch.decision import ACTIONS

    for dag in shipped.dags.values():
        decide = dag.get_task("decide")
        assert decide.upstream_task_ids == {"load", "check"}
        assert decide.downstream_task_ids == set(ACTIONS)
        for action in ACTIONS:
            assert dag.get_task(action).downstream_task_ids == {"notify", "publish_metrics"}
            label = dag.get_edge_info("decide", action).get("label")
            assert label, f"{dag.dag_id}: the edge decide -> {action} has no label"
        assert dag.get_task("notify").trigger_rule == "none_failed_min_one_success"
        # Whichever action ran, and also when it failed: the decision was recorded either way.
        assert dag.get_task("publish_metrics").trigger_rule == "one_done"
        assert dag.params["actions"] == "on"
        assert dag.params.get_param("actions").schema["enum"] == ["on", "dry_run"]


def test_every_dag_tells_the_alert_targets_when_a_run_fails(shipped):
    from modelwatch_notifiers import ModelWatchEmailNotifier

    for dag in shipped.dags.values():
        notifiers = dag.on_failure_callback
        assert notifiers, f"{dag.dag_id} has no DAG-level failure callback"
        assert any(isinstance(n, ModelWatchEmailNotifier) for n in notifiers)
        # However the run ends, the interval's run ends in the warehouse, and later intervals stop waiting.
        assert any(getattr(n, "__name__", "") == "record_run_end" for n in notifiers)
        assert dag.on_success_callback.__name__ == "record_run_end"


@pytest.mark.parametrize("logical_date", ["2026-11-20T00:00:00", "2026-11-20T13:45:10", "2026-11-20T23:59:59"])
def test_a_named_day_means_that_days_interval_for_manual_and_scheduled_runs(shipped, logical_date):
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in shipped.dags.values():
        # As the scheduler and the API server see it: serialized through the registered plugin.
        serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        manual = serialized.timetable.infer_manual_data_interval(run_after=pendulum.parse(logical_date))
        assert (manual.start, manual.end) == (pendulum.datetime(2026, 11, 20), pendulum.datetime(2026, 11, 21))
        # A backfill of 2026-11-20..2026-11-20 makes this run.
        day_start = pendulum.datetime(2026, 11, 20)
        (backfilled,) = serialized.iter_dagrun_infos_between(day_start, day_start)
        assert (backfilled.logical_date, backfilled.data_interval) == (day_start, manual)


def test_params_explain_themselves_in_the_trigger_form(shipped):
    for dag in shipped.dags.values():
        params = dag.params
        assert set(params) == {"actions", "wait_for_logs", "label_refresh_intervals"}
        for name in params:
            assert len(params.get_param(name).description) > 40, name
        assert params.get_param("actions").schema["enum"] == ["on", "dry_run"]
        assert params["label_refresh_intervals"] is None
