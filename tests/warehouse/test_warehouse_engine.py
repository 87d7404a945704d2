"""Where the warehouse is, and how each backend is connected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import StatementError

from modelwatch.warehouse import engine as warehouse
from modelwatch.warehouse import schema


@pytest.fixture
def no_airflow_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MODELWATCH_WAREHOUSE", raising=False)
    monkeypatch.delenv(warehouse.ENV_VAR, raising=False)


def test_explicit_url_wins(monkeypatch):
    monkeypatch.setenv(warehouse.ENV_VAR, "sqlite:////elsewhere.db")
    assert warehouse.warehouse_url("sqlite:////explicit.db") == "sqlite:////explicit.db"


def test_airflow_connection_comes_before_the_environment(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_WAREHOUSE", "postgresql://ana:secret@db:5433/mw")
    monkeypatch.setenv(warehouse.ENV_VAR, "sqlite:////elsewhere.db")
    assert warehouse.warehouse_url() == "postgresql+psycopg://ana:secret@db:5433/mw"


def test_environment_then_data_folder(no_airflow_connection, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))
    assert warehouse.warehouse_url() == f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}"
    monkeypatch.setenv(warehouse.ENV_VAR, "postgres://ana@db/mw")
    assert warehouse.warehouse_url() == "postgresql+psycopg://ana@db/mw"


def test_default_sqlite_file_gets_its_folder(no_airflow_connection, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "new" / "data"))
    engine = warehouse.get_engine()
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert (
                connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                == warehouse.SQLITE_BUSY_TIMEOUT_MS
            )
        assert (tmp_path / "new" / "data" / "warehouse.db").exists()
    finally:
        engine.dispose()


def test_unsupported_backend_is_named():
    with pytest.raises(ValueError, match="unsupported warehouse backend 'mysql'"):
        warehouse.get_engine("mysql://db/mw")


@pytest.mark.postgres
def test_postgres_sessions_use_utc(postgres_database):
    engine = warehouse.get_engine(
        postgres_database.replace("postgresql+psycopg://", "postgresql://")
    )
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.execute(text("SHOW timezone")).scalar() == "UTC"
    finally:
        engine.dispose()


def test_timestamps_come_back_aware_in_utc(warehouse_engine):
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 1, 2, 0, tzinfo=plus_two)
    with warehouse_engine.begin() as connection:
        connection.execute(
            insert(schema.monitoring_runs),
            {
                "model_name": "m",
                "interval_start": start,
                "interval_end": start + timedelta(days=1),
                "run_id": "r",
                "status": "success",
            },
        )
    with warehouse_engine.connect() as connection:
        stored = connection.execute(select(schema.monitoring_runs.c.interval_start)).scalar_one()
        as_text = connection.execute(
            text("SELECT CAST(interval_start AS VARCHAR(40)) FROM monitoring_runs")
        ).scalar_one()
    assert stored == datetime(2026, 1, 1, tzinfo=UTC)
    assert stored.tzinfo == UTC
    assert as_text.startswith("2026-01-01 00:00:00")


def test_naive_timestamps_are_refused(warehouse_engine):
    with (
        pytest.raises(StatementError, match="expected a timezone-aware datetime"),
        warehouse_engine.begin() as connection,
    ):
        connection.execute(
            insert(schema.monitoring_runs),
            {
                "model_name": "m",
                "interval_start": datetime(2026, 1, 1),
                "interval_end": datetime(2026, 1, 2, tzinfo=UTC),
                "run_id": "r",
                "status": "success",
            },
        )
