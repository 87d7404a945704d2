"""The launcher's settings for Airflow's parts, without starting them (tests/e2e starts them)."""

from __future__ import annotations

import importlib

from modelwatch.airflow_services import CONNECT_ARGS_KEY, AirflowServices, metadata_database_env

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/airflow"
ASYNC_KEY = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"


def test_sqlite_waits_for_locks_and_psycopg_serves_the_async_engine():
    assert metadata_database_env("sqlite:////tmp/airflow.db") == {
        CONNECT_ARGS_KEY: "modelwatch.airflow_services.SQLITE_CONNECT_ARGS"}
    assert metadata_database_env(PG) == {ASYNC_KEY: PG}
    assert metadata_database_env("mysql+mysqldb://root@127.0.0.1/airflow") == {}
    # What the environment sets itself stays.
    assert metadata_database_env(PG, {ASYNC_KEY: "postgresql+asyncpg://elsewhere/airflow"}) == {}


def test_sqlites_connect_arguments_left_in_a_shell_are_not_handed_to_postgresql():
    shell = {CONNECT_ARGS_KEY: "modelwatch.airflow_services.SQLITE_CONNECT_ARGS"}

    assert metadata_database_env(PG, shell) == {
        CONNECT_ARGS_KEY: "modelwatch.airflow_services.NO_CONNECT_ARGS", ASYNC_KEY: PG}


def test_the_connect_arguments_are_found_by_the_path_airflow_imports():
    from modelwatch import airflow_services

    def import_string(path: str):  # as Airflow resolves `sql_alchemy_connect_args`
        module, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)

    sqlite = metadata_database_env("sqlite:////tmp/airflow.db")[CONNECT_ARGS_KEY]
    other = metadata_database_env(PG, {CONNECT_ARGS_KEY: sqlite})[CONNECT_ARGS_KEY]
    assert import_string(sqlite) is airflow_services.SQLITE_CONNECT_ARGS
    assert import_string(other) is airflow_services.NO_CONNECT_ARGS


def test_every_part_and_the_cli_get_the_same_ports(tmp_path):
    services = AirflowServices(home=tmp_path, port=18080, celery_workers=("a", "b"))

    first, second = services.environment(), services.environment()

    ports = [name for name in first if name.endswith("_PORT")]
    assert {name: first[name] for name in ports} == {name: second[name] for name in ports}
    assert first["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    # No two servers share a port: the workers' log servers included.
    chosen = [int(first[name]) for name in ports] + [services.ports["worker-a"], services.ports["worker-b"]]
    assert len(set(chosen)) == len(chosen) == len(ports) + 2
