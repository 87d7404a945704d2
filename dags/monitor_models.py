"""
### Monitor a deployed model: `monitor_<model>`

One DAG per model in the models file (`MODELWATCH_CONFIG`). Each run covers one
data interval `[data_interval_start, data_interval_end)` of the model's schedule:

1. **wait_for_logs**: waits until every prediction partition of the interval
   has arrived; past `log_wait_minutes` it fails naming the missing path.
2. **extract**: reads the interval's predictions and feedback as the log
   contract says, quarantines bad records with reasons, and stages the batch
   in a folder of its own attempt, published when complete. XCom carries
   only the folder and counts.
3. **wait_for_history**: waits until the previous interval's run has come
   this far and every earlier interval that this one's results depend on is
   finished, so that backfills judge intervals in order (Airflow refuses a
   backward one) while the extracts of many intervals run at once.
4. **validate**: Great Expectations suite built from the model's config; a
   critical failure marks the interval so no model decision is taken on it.
5. **measure**: model-quality metrics (this interval and the earlier ones whose
   labels are still maturing), system KPIs, drift against the reference.
6. **load**: one warehouse transaction per run; re-runs replace, never duplicate.
7. **check**: thresholds, control limits on the model's history (limits that
   follow each interval's sample size) and IsolationForest; earlier intervals
   whose labels this run refreshed are judged again.
8. **decide**: one branch, recorded in `model_actions` with its reason:
   **halt** (critical data-quality failure), **rollback** (a new version did
   worse than the one before it), **retrain** (quality dropped with drift and
   enough new labels), **alert** (anything else that needs a person) or
   **healthy**.
9. **notify**: email and webhook through Airflow connections, unless the
   same condition was already told and is no worse.
10. **publish_metrics**: when a Pushgateway is configured, pushes the
    interval's KPIs, quality metrics, drift share and decision as Prometheus
    gauges (docs/prometheus.md), after whichever action ran, also a failed
    one; a gateway that is down only gives a warning.

The `actions` Param set to `dry_run` decides and records without changing the
registry or notifying anyone; the push still happens, its decision labelled
`mode="dry_run"`.

Every task has an `execution_timeout` from the model's `timeouts`. Transient
failures (I/O, the warehouse) are retried with backoff; a deterministic one (a
bad config, a damaged staged batch) fails at once. `monitoring_runs` says
`retrying` or `failed` with the task and its exception.

A run's logical date names its interval however the run starts: a manual
run, a backfill or a scheduled run for 2026-11-20 (any time of that day, for
a daily model) covers [2026-11-20, 2026-11-21). Backfills need a reprocess
behavior other than "missing runs only" (Airflow's rule for ordered DAGs).
Runbook and warehouse tables: `docs/`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Label, Param, PokeReturnValue, dag, task

from modelwatch.config import ModelConfig, load_config

IO_RETRIES = {"retries": 3, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True}
HISTORY_WAIT = timedelta(hours=6)
# A refresh reads every label partition of the window: bounded, so that one run cannot read a year.
MAX_LABEL_REFRESH = 90


def _mark(context, mark) -> None:
    from modelwatch import airflow_adapter

    dag_run = context["dag_run"]
    mark(
        context["dag"].dag_id.removeprefix("monitor_"),
        dag_run.data_interval_start,
        dag_run.data_interval_end,
        dag_run.run_id,
        airflow_adapter.describe_failure(context),
    )


def record_failure(context) -> None:
    """Mark the interval failed in the warehouse, naming the task and its exception."""
    from modelwatch import pipeline

    _mark(context, pipeline.mark_failed)


def record_run_end(context) -> None:
    """End the interval's run in the warehouse however the DAG run ended (also when tasks were marked by hand)."""
    from modelwatch import pipeline

    dag_run = context["dag_run"]
    pipeline.mark_finished(context["dag"].dag_id.removeprefix("monitor_"), dag_run.data_interval_start,
                           dag_run.run_id)


def record_retry(context) -> None:
    """Mark the interval as waiting for a task's next try, naming the task and its exception."""
    from modelwatch import pipeline

    _mark(context, pipeline.mark_retrying)


BRANCH_LABELS = {
    "halt": "critical data-quality failure",
    "rollback": "new version worse than the one before",
    "retrain": "quality down, drift, enough labels",
    "alert": "needs a person, no model change",
    "healthy": "nothing alerts",
}


def dag_failure_notifiers(model: ModelConfig) -> list:
    """The notifiers told when a run of the model's DAG fails (none when no target is configured)."""
    from modelwatch_notifiers import ModelWatchEmailNotifier, ModelWatchWebhookNotifier

    notifiers = []
    if model.alerts.emails:
        notifiers.append(ModelWatchEmailNotifier(to=model.alerts.emails, smtp_conn_id=model.alerts.smtp_connection,
                                                 model_name=model.name))
    if model.alerts.webhook_connection:
        notifiers.append(ModelWatchWebhookNotifier(webhook_conn_id=model.alerts.webhook_connection,
                                                   model_name=model.name))
    return notifiers


def build_monitor_dag(model: ModelConfig):
    """The `monitor_<model>` DAG for one configured model."""
    from modelwatch.timetable import IntervalOfLogicalDate

    @dag(
        dag_id=f"monitor_{model.name}",
        schedule=IntervalOfLogicalDate(model.cron, timezone="UTC"),
        start_date=pendulum.instance(model.start),
        catchup=False,
        max_active_runs=4,
        doc_md=__doc__,
        tags=["modelwatch", "monitoring", model.task, model.name],
        on_success_callback=record_run_end,
        on_failure_callback=[record_run_end, *dag_failure_notifiers(model)],
        default_args={
            "owner": model.owner,
            "retries": 1,
            "retry_delay": timedelta(minutes=1),
            "on_failure_callback": record_failure,
            "on_retry_callback": record_retry,
        },
        params={
            "actions": Param(
                "on", enum=["on", "dry_run"], title="Actions",
                description="on: retrain, roll back and notify as decided. dry_run: decide and record "
                            "the decision only; the registry and the inboxes stay untouched.",
            ),
            "wait_for_logs": Param(
                True, type="boolean", title="Wait for logs",
                description="Wait for prediction partitions that have not arrived, up to the model's "
                            f"log_wait_minutes ({model.log_wait_minutes:g}) after the interval's end. "
                            "Off: fail at once, naming the missing partitions.",
            ),
            "label_refresh_intervals": Param(
                None, type=["null", "integer"], minimum=0, maximum=MAX_LABEL_REFRESH, title="Label refresh",
                description="Recompute the label metrics of this many earlier intervals with the labels known now "
                            "(for labels that arrived late), and judge them again. Empty: the model's "
                            f"label_maturity_intervals ({model.label_maturity_intervals}).",
            ),
        },
    )
    def monitor():
        # The sensor does its own waiting; a retry would only repeat the same verdict.
        @task.sensor(
            poke_interval=300, timeout=int(model.log_wait_minutes * 60) + 3600, mode="reschedule", retries=0,
            execution_timeout=model.execution_timeout("wait_for_logs"),
        )
        def wait_for_logs(data_interval_start=None, data_interval_end=None, params=None):
            from modelwatch import pipeline

            missing = pipeline.missing_partitions(model.name, data_interval_start, data_interval_end)
            if not missing:
                return PokeReturnValue(is_done=True)
            deadline = data_interval_end + timedelta(minutes=model.log_wait_minutes)
            if not params["wait_for_logs"] or pendulum.now("UTC") >= deadline:
                raise FileNotFoundError(
                    f"prediction logs never arrived for {model.name} "
                    f"{data_interval_start}..{data_interval_end}: missing {', '.join(missing)}"
                )
            return PokeReturnValue(is_done=False)

        @task(**IO_RETRIES, execution_timeout=model.execution_timeout("extract"))
        def extract(data_interval_start=None, data_interval_end=None, run_id=None, ti=None, params=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                pipeline.mark_started(model.name, data_interval_start, data_interval_end, run_id)
                return pipeline.extract(
                    model.name, data_interval_start, data_interval_end, attempt=f"{run_id}.try{ti.try_number}",
                    label_refresh=params["label_refresh_intervals"],
                )

        # depends_on_past: the previous interval's run passed this point before this one starts waiting,
        # so every earlier run it waits for is already running, never queued behind it, and Airflow
        # refuses a backward backfill, which would judge intervals before their history. all_done: an
        # interval whose logs never came still passes here, and so does not hold up the next.
        @task.sensor(
            poke_interval=15, timeout=int(HISTORY_WAIT.total_seconds()), mode="reschedule", retries=0,
            execution_timeout=model.execution_timeout("wait_for_logs"), depends_on_past=True,
            trigger_rule="all_done",
        )
        def wait_for_history(data_interval_start=None, dag_run=None, ti=None, params=None):
            from modelwatch import airflow_adapter, pipeline

            refresh = params["label_refresh_intervals"]
            pending = airflow_adapter.earlier_runs_in_progress(
                ti, dag_run, pipeline.history_intervals(model, refresh)
            ) or pipeline.pending_history(model.name, data_interval_start, label_refresh=refresh)
            return PokeReturnValue(is_done=not pending)

        @task(execution_timeout=model.execution_timeout("validate"))
        def validate(staged: dict, data_interval_start=None, data_interval_end=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.validate(model.name, staged["folder"], data_interval_start, data_interval_end)

        @task(execution_timeout=model.execution_timeout("measure"))
        def measure(staged: dict, data_interval_start=None, data_interval_end=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.measure(model.name, staged["folder"], data_interval_start, data_interval_end)

        @task(**IO_RETRIES, execution_timeout=model.execution_timeout("load"))
        def load(staged: dict, quality: dict, measured: dict,
                 data_interval_start=None, data_interval_end=None, run_id=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.load(
                    model.name, staged["folder"], data_interval_start, data_interval_end, run_id
                )

        @task(execution_timeout=model.execution_timeout("check"))
        def check(loaded: dict, data_interval_start=None, data_interval_end=None, run_id=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.check(model.name, data_interval_start, data_interval_end, run_id, loaded)

        @task.branch(execution_timeout=model.execution_timeout("decide"))
        def decide(loaded: dict, checked: dict, data_interval_start=None, data_interval_end=None, run_id=None,
                   params=None) -> str:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                decided = pipeline.decide(model.name, data_interval_start, data_interval_end, run_id, loaded,
                                          checked, mode=params["actions"])
            return decided["action"]

        def act(action: str):
            @task(task_id=action, execution_timeout=model.execution_timeout("act"))
            def carry_out(data_interval_start=None, data_interval_end=None, run_id=None, params=None) -> dict:
                from modelwatch import airflow_adapter, pipeline

                with airflow_adapter.retry_only_transient():
                    return pipeline.act(model.name, action, data_interval_start, data_interval_end, run_id,
                                        mode=params["actions"])

            return carry_out()

        # After a branch only one action runs; notify follows whichever it was.
        @task(trigger_rule="none_failed_min_one_success", execution_timeout=model.execution_timeout("notify"))
        def notify(data_interval_start=None, data_interval_end=None, run_id=None, dag=None, params=None) -> dict:
            from modelwatch_notifiers import send

            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.notify(model.name, data_interval_start, data_interval_end, run_id, send,
                                       mode=params["actions"], links=airflow_adapter.run_links(dag.dag_id, run_id))

        # one_done: after the action that ran, whether it succeeded or failed, since the decision stands either way.
        @task(trigger_rule="one_done", execution_timeout=model.execution_timeout("publish_metrics"))
        def publish_metrics(data_interval_start=None, data_interval_end=None) -> dict:
            from modelwatch import airflow_adapter, pipeline

            with airflow_adapter.retry_only_transient():
                return pipeline.publish_metrics(model.name, data_interval_start, data_interval_end)

        staged = extract()
        history = wait_for_history()
        wait_for_logs() >> staged >> history
        quality, measured = validate(staged), measure(staged)
        history >> [quality, measured]
        loaded = load(staged, quality, measured)
        decision = decide(loaded, check(loaded))
        told, published = notify(), publish_metrics()
        for action, label in BRANCH_LABELS.items():
            decision >> Label(label) >> act(action) >> [told, published]

    return monitor()


for _model in load_config().models:
    globals()[f"monitor_{_model.name}"] = build_monitor_dag(_model)
