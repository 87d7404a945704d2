"""Shared fixtures: a real warehouse on SQLite and on PostgreSQL.

The PostgreSQL server is `MODELWATCH_TEST_PG_URL` (an admin URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres). Each test gets a fresh
database there, dropped afterwards. Without a reachable server the PostgreSQL
cases are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

# The SMTP server and HTTP endpoint fixtures, for every test that sends notifications.
pytest_plugins = ["servers"]

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str:
    return os.environ.get("MODELWATCH_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)


def _pg_admin_engine() -> Engine:
    """An autocommit engine on the server's admin database, or skip/fail if unreachable."""
    url = make_url(_pg_admin_url())
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        message = f"PostgreSQL not reachable at {url.host}:{url.port or 5432}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return engine


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory) -> Iterator[None]:
    """Relative roots (logs, staging, reference datasets) land in a temporary folder, never ./data."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MODELWATCH_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    yield
    patch.undo()


@pytest.fixture
def postgres_databases() -> Iterator:
    """A function that makes fresh, uniquely named PostgreSQL databases and returns their URLs.

    Every database it made is dropped after the test.
    """
    admin = _pg_admin_engine()
    made = []

    def make() -> str:
        name = f"modelwatch_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_database(postgres_databases) -> str:
    """URL of a fresh, uniquely named PostgreSQL database, dropped after the test."""
    return postgres_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty warehouse database: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def warehouse_engine(warehouse_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty warehouse."""
    from modelwatch.warehouse.engine import get_engine, migrate

    engine = get_engine(warehouse_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A real MLflow store for the module; the registry is pointed back afterwards."""
    from modelwatch import registry

    folder = tmp_path_factory.mktemp("mlflow")
    previous = dict(registry._state)
    registry.configure(f"sqlite:///{folder / 'mlflow.db'}")
    yield folder
    registry._state.update(previous)
