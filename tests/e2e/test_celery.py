"""CeleryExecutor, as the compose file runs it: a Redis broker, PostgreSQL for Airflow, its results and the warehouse.

Two Celery workers take the tasks of a backfill of two models over three
intervals at once; the warehouse must then hold exactly what one process
running the same intervals one by one with `dag.test()` writes.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from datetime import timedelta

import pandas as pd
import pytest
import scenarios
from airflow_cluster import cluster_env, migrate, require_ci_service, run_with_dag_test
from pipelines import assert_same_contents, warehouse_contents
from scenarios import START
from servers import smtp_connection

pytestmark = pytest.mark.slow

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
WORKERS = ("worker-a", "worker-b")
DAYS = [START + timedelta(days=k) for k in range(3)]
MODELS = ("credit_risk", "delivery_time")
RUN_TIMEOUT_S = 30 * 60
# Where a run's own identity shows: its id, its Airflow links, the worker that ran it.
RUN_SPECIFIC_COLUMNS = {"notification", "links"}


def redis_answers() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=3) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def comparable(contents: dict, folder) -> dict:
    """The tables without what names a run, with the week's folder (in file paths) written as `<week>`."""
    comparable = {}
    for name, frame in contents.items():
        frame = frame.drop(columns=[c for c in frame.columns if c in RUN_SPECIFIC_COLUMNS])
        for column in frame.columns:
            if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
                frame[column] = frame[column].map(
                    lambda v: v.replace(str(folder), "<week>") if isinstance(v, str) else v)
        comparable[name] = frame
    return comparable


def test_two_celery_workers_run_two_models_at_once_and_write_what_one_process_writes(
        pristine_week, week, tmp_path, start_airflow, postgres_databases, smtp_server, endpoint, monkeypatch):
    require_ci_service(redis_answers(), f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}")
    port, _ = smtp_server
    metadata, warehouse, reference_warehouse = (postgres_databases() for _ in range(3))

    # The same intervals in one process, one after the other, into a warehouse of their own.
    reference = tmp_path / "reference"
    shutil.copytree(pristine_week, reference)
    reference_home = tmp_path / "reference-airflow"
    reference_env = cluster_env(reference_home, scenarios.environment(
        reference, reference_warehouse, smtp_connection(port), endpoint.url))
    migrate(reference_home, reference_env)
    for model in MODELS:
        run_with_dag_test(os.environ | reference_env | {"AIRFLOW_HOME": str(reference_home)},
                          f"monitor_{model}", DAYS)

    env = scenarios.environment(week, warehouse, smtp_connection(port), endpoint.url) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
        # A queue of the test's own: tasks never reach another Celery worker on this Redis.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"modelwatch-test-{uuid.uuid4().hex[:8]}",
    }
    cluster = start_airflow(env, executor="CeleryExecutor", celery_workers=WORKERS, parallelism=4)
    cluster.wait_for_dags([f"monitor_{model}" for model in MODELS])
    for model in MODELS:
        cluster.backfill(f"monitor_{model}", DAYS[0], DAYS[-1], max_active_runs=3)

    hosts = set()
    for model in MODELS:
        dag_id = f"monitor_{model}"
        runs = cluster.wait_for_runs(dag_id, cluster.run_ids_between(dag_id, DAYS[0], DAYS[-1]), RUN_TIMEOUT_S)
        assert len(runs) == len(DAYS)
        for run_id in runs:
            hosts |= {ti["hostname"] for ti in cluster.task_instances(dag_id, run_id) if ti["state"] == "success"}
    assert set(WORKERS) <= hosts, hosts
    assert hosts <= set(WORKERS), f"a task ran outside the two workers: {hosts}"

    assert_same_contents(comparable(warehouse_contents(reference_warehouse), reference),
                         comparable(warehouse_contents(warehouse), week))
    decisions = scenarios.decisions(warehouse)
    for model in MODELS:
        expected = scenarios.EXPECTED[model][: len(DAYS)]
        assert [decisions.loc[(model, day.isoformat()), "decision"] for day in DAYS] == expected
