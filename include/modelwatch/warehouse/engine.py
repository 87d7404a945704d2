"""Connecting to the warehouse and bringing its schema up to date.

The warehouse is PostgreSQL in production and an SQLite file by default; the
same code serves both. `warehouse_url` decides where it is, `get_engine`
connects with the settings each backend needs, and `migrate` applies the
Alembic migrations shipped in this package.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from modelwatch import airflow_adapter, settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ENV_VAR = "MODELWATCH_WAREHOUSE_URL"
SQLITE_BUSY_TIMEOUT_MS = 30_000

_SQLITE_BEGIN_OPTION = "modelwatch_sqlite_begin"
_POSTGRES_ALIASES = ("postgres://", "postgresql://")


def warehouse_url(explicit: str | None = None) -> str:
    """Where the warehouse is, as an SQLAlchemy URL.

    Parameters
    ----------
    explicit:
        A URL to use as is (after normalisation).

    Returns
    -------
    The first of: `explicit`; the Airflow connection `modelwatch_warehouse`;
    the environment variable `MODELWATCH_WAREHOUSE_URL`; an SQLite file in the
    project's data folder. PostgreSQL URLs are rewritten to use psycopg 3.
    """
    url = (
        explicit
        or airflow_adapter.connection_url()
        or os.environ.get(ENV_VAR)
        or settings.default_warehouse_url()
    )
    return normalize_url(url)


def normalize_url(url: str) -> str:
    """Point `postgres://` and `postgresql://` URLs at the psycopg 3 driver."""
    for alias in _POSTGRES_ALIASES:
        if url.startswith(alias):
            return "postgresql+psycopg://" + url.removeprefix(alias)
    return url


def get_engine(url: str | None = None) -> Engine:
    """An engine for the warehouse at `url` (resolved by `warehouse_url`).

    SQLite connections use WAL journaling, a busy timeout and foreign keys,
    and their transactions are begun explicitly so that `locked_transaction`
    can take the write lock up front. The parent folder of an SQLite file is
    created if missing. PostgreSQL sessions run in UTC.
    """
    parsed = make_url(warehouse_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise ValueError(
        f"unsupported warehouse backend {backend!r} in {parsed.render_as_string()}; "
        "expected an sqlite:// or postgresql:// URL"
    )


def _sqlite_engine(url: URL) -> Engine:
    """SQLite engine with WAL, busy timeout, foreign keys and explicit BEGIN."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL journaling (a no-op once it is).

    The switch needs an exclusive lock and SQLite reports a clash with another
    connection doing the same as "database is locked" without waiting, so it
    is retried for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _postgres_engine(url: URL) -> Engine:
    """PostgreSQL engine over psycopg 3 whose sessions use UTC."""
    connect_args = {} if "options" in url.query else {"options": "-c timezone=UTC"}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def locked_transaction(engine: Engine, lock_name: str) -> Iterator[Connection]:
    """A transaction that holds an exclusive lock until it ends.

    On PostgreSQL the lock is a transaction-level advisory lock named
    `lock_name`, so only callers using the same name wait for each other. On
    SQLite it is the database write lock (`BEGIN IMMEDIATE`), taken before the
    first read so that a concurrent writer makes this one wait rather than fail.
    Commits when the block ends, rolls back if it raises.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(lock_name)}
                )
            yield connection


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    digest = hashlib.blake2b(f"modelwatch:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(engine_or_url: Engine | str | None = None) -> str:
    """Upgrade the warehouse schema to the latest migration.

    Safe to call at the start of every run: an up-to-date warehouse is left
    alone, and concurrent callers wait for each other (PostgreSQL advisory
    lock, SQLite write lock) so the migration runs once.

    Parameters
    ----------
    engine_or_url:
        An engine, a URL, or None for `warehouse_url()`.

    Returns
    -------
    The revision the warehouse is at afterwards.
    """
    from alembic import command

    engine, owned = _engine_for(engine_or_url)
    try:
        with locked_transaction(engine, "migrate") as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        revision = current_revision(engine)
    finally:
        if owned:
            engine.dispose()
    if revision is None:
        raise RuntimeError(f"migration of {engine.url.render_as_string()} left no revision")
    return revision


def current_revision(engine: Engine) -> str | None:
    """The migration revision the warehouse is at, or None if never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The latest migration revision shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _alembic_config():
    """An Alembic configuration pointing at the migrations in this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def _engine_for(engine_or_url: Engine | str | None) -> tuple[Engine, bool]:
    """The engine to use, and whether this call created it (and must dispose it)."""
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return get_engine(engine_or_url), True
