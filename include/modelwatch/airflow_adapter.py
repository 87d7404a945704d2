"""The one place the library touches Airflow; everything else runs without it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

WAREHOUSE_CONN_ID = "modelwatch_warehouse"


def connection_url(conn_id: str = WAREHOUSE_CONN_ID) -> str | None:
    """SQLAlchemy URL of an Airflow connection, or None when Airflow or the connection is absent."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises several types for "not defined here"
        log.debug("Airflow connection %s not available: %s", conn_id, exc)
        return None
    uri = connection.get_uri()
    # Airflow writes PostgreSQL as postgres://, which SQLAlchemy 2 no longer accepts.
    if uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgres://")
    elif uri.startswith("postgresql://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgresql://")
    return uri


def run_links(dag_id: str, run_id: str) -> dict[str, str]:
    """A link to the DAG run in the Airflow UI, from `[api] base_url`."""
    from urllib.parse import quote

    from airflow.sdk import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return {"Airflow run": f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"}


def is_transient(error: BaseException) -> bool:
    """Whether another try could succeed: I/O, the warehouse or the network, not the data or the code.

    An error raised from a transient one (e.g. a load that gave up on a lost
    connection) is transient too.
    """
    from sqlalchemy.exc import InterfaceError, OperationalError

    from modelwatch.pipeline import HistoryIncomplete
    from modelwatch.warehouse.engine import WarehouseUnavailable

    transient = (OSError, TimeoutError, OperationalError, InterfaceError, WarehouseUnavailable, HistoryIncomplete)
    return isinstance(error, transient) or (error.__cause__ is not None and is_transient(error.__cause__))


@contextmanager
def retry_only_transient() -> Iterator[None]:
    """Let transient errors take the task's retries; fail a deterministic error at once.

    A bad record, a bad config or a damaged staged batch gives the same error
    on every try, so retrying it with backoff only delays the alert.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except AirflowFailException:
        raise
    except Exception as error:
        if is_transient(error):
            raise
        raise AirflowFailException(
            f"{type(error).__name__}: {error} (not retried: another try would fail alike)"
        ) from error


def describe_failure(context) -> str:
    """`<task> (try n of m): <exception type>: <message>` for the run's failure reason."""
    ti = context["task_instance"]
    from airflow.sdk.exceptions import AirflowFailException

    error = context.get("exception")
    # `retry_only_transient` wraps deterministic errors: the reason names the original.
    cause = error.__cause__ if isinstance(error, AirflowFailException) and error.__cause__ is not None else error
    what = f"{type(cause).__name__}: {cause}" if cause is not None else "ended without an exception (killed?)"
    tries = f" (try {ti.try_number} of {ti.max_tries + 1})" if getattr(ti, "max_tries", None) is not None else ""
    return f"{ti.task_id}{tries}: {what}"


def earlier_runs_in_progress(ti, dag_run, intervals: int) -> int:
    """How many runs of this DAG over the `intervals` intervals before this one are running.

    Every way of starting a run gives a run for a named interval the
    interval's start as logical date (`modelwatch.timetable`), so runs are
    asked for by those dates. Queued runs do not count: waiting for them could
    hold every active slot while they wait for one. A manual run started with
    another time inside its interval as logical date is seen once its extract
    marks the interval in the warehouse (`pipeline.pending_history`).
    """
    start = dag_run.data_interval_start
    length = dag_run.data_interval_end - start
    earlier = [start - length * k for k in range(1, intervals + 1)]
    if not earlier:
        return 0
    pending = ti.get_dr_count(dag_id=dag_run.dag_id, logical_dates=earlier, states=["running"])
    if pending:
        log.info("waiting for %d earlier run(s) of %s to finish", pending, dag_run.dag_id)
    return pending


def run_dag(dag_id: str, logical_date, dags_folder: str) -> tuple[str, dict[str, str]]:
    """Run one DAG in-process with `dag.test()`; returns the run state and each task's state.

    `dag.test()` logs a failing task instead of raising, so callers must read the states.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    if bag.import_errors:
        raise RuntimeError(f"DAG files failed to import: {bag.import_errors}")
    run = bag.dags[dag_id].test(logical_date=logical_date)
    return str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
