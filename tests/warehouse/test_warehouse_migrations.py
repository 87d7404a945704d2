"""Migrations create the schema of `schema.py`, once, however often they are called."""

from __future__ import annotations

import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from modelwatch.warehouse import engine as warehouse
from modelwatch.warehouse import schema

from .builders import JAN


def test_upgrade_from_empty_creates_every_table_and_view(warehouse_url):
    engine = warehouse.get_engine(warehouse_url)
    try:
        assert warehouse.current_revision(engine) is None
        assert warehouse.migrate(engine) == warehouse.head_revision()
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == set(schema.metadata.tables) | {"alembic_version"}
        assert set(inspector.get_view_names()) == set(schema.VIEWS)
        with engine.connect() as connection:
            for name in (*schema.metadata.tables, *schema.VIEWS):
                assert connection.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar() == 0
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_keeps_data(warehouse_engine):
    row = {
        "model_name": "m",
        "interval_start": JAN[0],
        "interval_end": JAN[1],
        "run_id": "r",
        "status": "success",
    }
    with warehouse_engine.begin() as connection:
        connection.execute(insert(schema.monitoring_runs), row)
    head = warehouse.head_revision()
    assert warehouse.migrate(warehouse_engine) == head
    assert warehouse.migrate(warehouse_engine.url.render_as_string(hide_password=False)) == head
    assert warehouse.current_revision(warehouse_engine) == head
    with warehouse_engine.connect() as connection:
        assert connection.execute(select(schema.monitoring_runs.c.run_id)).scalars().all() == ["r"]


def test_migrated_database_matches_schema_module(warehouse_engine):
    with warehouse_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []


def test_concurrent_first_migrations_run_once(warehouse_url):
    engines = [warehouse.get_engine(warehouse_url) for _ in range(3)]
    start = threading.Barrier(len(engines))
    results: list[str] = []
    errors: list[BaseException] = []

    def run(engine):
        start.wait()
        try:
            results.append(warehouse.migrate(engine))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert results == [warehouse.head_revision()] * len(engines)
        assert set(inspect(engines[0]).get_view_names()) == set(schema.VIEWS)
    finally:
        for engine in engines:
            engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(warehouse_engine):
    with warehouse_engine.begin() as connection:
        config = warehouse._alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    inspector = inspect(warehouse_engine)
    assert set(inspector.get_table_names()) == {"alembic_version"}
    assert inspector.get_view_names() == []
    assert warehouse.migrate(warehouse_engine) == warehouse.head_revision()
    assert set(inspect(warehouse_engine).get_view_names()) == set(schema.VIEWS)
