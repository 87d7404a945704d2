"""The one place the library touches Airflow; everything else runs without it."""

from __future__ import annotations

import logging

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
