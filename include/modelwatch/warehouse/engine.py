"""Connecting to the warehouse and bringing its schema up to date.

The warehouse is PostgreSQL in production and an SQLite file by default; the
same code serves both. `warehouse_url` decides where it is, `get_engine`
connects with the settings each backend needs, and `migrate` applies the
Alembic migrations shipped in this package.

Every engine has a connect timeout and a statement timeout, so a warehouse that
accepts connections but never answers fails a run instead of hanging it: not
connecting raises `WarehouseUnavailable`, a statement cancelled by the timeout
raises `WarehouseStatementTimeout`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import OperationalError

from modelwatch import airflow_adapter, settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ENV_VAR = "MODELWATCH_WAREHOUSE_URL"
CONNECT_TIMEOUT_ENV = "MODELWATCH_WAREHOUSE_CONNECT_TIMEOUT"
STATEMENT_TIMEOUT_ENV = "MODELWATCH_WAREHOUSE_STATEMENT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# Well above the longest statement of a run: the COPY of a large load, or a migration.
DEFAULT_STATEMENT_TIMEOUT_S = 600.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite virtual-machine steps between two checks of the statement deadline.
SQLITE_PROGRESS_STEPS = 1_000

_SQLITE_BEGIN_OPTION = "modelwatch_sqlite_begin"
_POSTGRES_ALIASES = ("postgres://", "postgresql://")
_DEFAULT_PORTS = {"postgresql": 5432}
_STATEMENT_STARTED = "modelwatch_statement_started"
_PG_QUERY_CANCELED = "57014"  # SQLSTATE of a statement timeout, and of a cancel request
_PG_SETTING = re.compile(r"(?:-c\s*|--)([\w.-]+)=(\S*)")
_PG_DURATION = re.compile(r"(\d+(?:\.\d*)?)(us|ms|s|min|h|d)?")
_PG_DURATION_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


class WarehouseUnavailable(RuntimeError):
    """The warehouse could not be connected to: unreachable, refusing, or silent past the connect timeout."""


class WarehouseStatementTimeout(OperationalError):
    """A warehouse statement ran longer than the statement timeout and was cancelled.

    It is an `sqlalchemy.exc.OperationalError` whose `orig` is the driver's
    error, so code that handles database errors (such as the loader, which
    reports them as `LoadError` and retries only races) treats it as one.
    """


@dataclass(frozen=True)
class _Timeout:
    """A timeout and where it was set, for error messages."""

    seconds: float
    source: str


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

    Connecting waits at most `MODELWATCH_WAREHOUSE_CONNECT_TIMEOUT` seconds
    (PostgreSQL only; default 10) and a statement runs at most
    `MODELWATCH_WAREHOUSE_STATEMENT_TIMEOUT` seconds (default 600). On
    PostgreSQL, `connect_timeout` and `options=-c statement_timeout=...` in the
    URL win over the environment.

    Raises
    ------
    ValueError
        The backend is not SQLite or PostgreSQL, or a timeout variable is not
        a positive number.

    Notes
    -----
    Opening a connection (at any checkout, not only the first) raises
    `WarehouseUnavailable` when it fails; a statement cancelled by the
    statement timeout raises `WarehouseStatementTimeout`.
    """
    parsed = make_url(warehouse_url(url))
    backend = parsed.get_backend_name()
    connect_s = _env_seconds(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S)
    statement_s = _env_seconds(STATEMENT_TIMEOUT_ENV, DEFAULT_STATEMENT_TIMEOUT_S)
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, statement_s)
        _watch_timeouts(engine, None, _Timeout(statement_s, STATEMENT_TIMEOUT_ENV))
    elif backend == "postgresql":
        engine, connect, statement = _postgres_engine(parsed, connect_s, statement_s)
        _watch_timeouts(engine, connect, statement)
    else:
        raise ValueError(
            f"unsupported warehouse backend {backend!r} in {parsed.render_as_string()}; "
            "expected an sqlite:// or postgresql:// URL"
        )
    return engine


def _env_seconds(name: str, default: float) -> float:
    """The positive number of seconds in the environment variable `name`; `default` if unset or blank."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:  # also refuses nan
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return seconds


def _sqlite_engine(url: URL, statement_s: float) -> Engine:
    """SQLite engine with WAL, busy timeout, statement timeout, foreign keys and explicit BEGIN."""
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
        cursor.close()
        # SQLite has no statement timeout: abort a statement that runs past its
        # deadline (its start is stamped by `_watch_timeouts`), which SQLite
        # reports as "interrupted".
        info = record.info
        dbapi_connection.set_progress_handler(
            lambda: time.monotonic() - info.get(_STATEMENT_STARTED, math.inf) > statement_s,
            SQLITE_PROGRESS_STEPS,
        )

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


def _postgres_engine(url: URL, connect_s: float, statement_s: float) -> tuple[Engine, _Timeout, _Timeout | None]:
    """PostgreSQL engine over psycopg 3 whose sessions use UTC and both timeouts.

    Returns
    -------
    The engine, its connect timeout and its statement timeout (None if the
    URL turns it off). Settings in the URL's `connect_timeout` and `options`
    are kept; the others are added to `options`.
    """
    from psycopg.conninfo import timeout_from_conninfo

    connect_args: dict[str, object] = {}
    if "connect_timeout" in url.query:
        connect = _Timeout(timeout_from_conninfo(dict(url.query)), "connect_timeout in the URL")
    else:
        connect_args["connect_timeout"] = math.ceil(connect_s)  # libpq takes whole seconds
        connect = _Timeout(timeout_from_conninfo(connect_args), CONNECT_TIMEOUT_ENV)

    options = url.query.get("options", "")
    given = {name.replace("-", "_").lower(): value for name, value in _PG_SETTING.findall(options)}
    added = [] if "timezone" in given else ["-c timezone=UTC"]
    if "statement_timeout" in given:
        statement = _pg_duration(given["statement_timeout"])
    else:
        # A wait for an advisory lock is part of a statement, so this bounds lock waits too.
        added.append(f"-c statement_timeout={math.ceil(statement_s * 1000)}")
        statement = _Timeout(statement_s, STATEMENT_TIMEOUT_ENV)
    connect_args["options"] = " ".join([options, *added]).strip()
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    return engine, connect, statement


def _pg_duration(value: str) -> _Timeout | None:
    """The URL's `statement_timeout` setting (milliseconds unless a unit is given); None if off or unreadable."""
    match = _PG_DURATION.fullmatch(value)
    if match is None or float(match[1]) == 0:  # 0 turns it off; PostgreSQL refuses a bad value at connect
        return None
    seconds = float(match[1]) * _PG_DURATION_UNITS_S[match[2] or "ms"]
    return _Timeout(seconds, "statement_timeout in the URL")


def _watch_timeouts(engine: Engine, connect: _Timeout | None, statement: _Timeout | None) -> None:
    """Raise `WarehouseUnavailable` and `WarehouseStatementTimeout` from `engine`'s driver errors."""
    where = _display_url(engine.url)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            raise WarehouseUnavailable(_unavailable_message(where, connect, exc)) from exc

    @event.listens_for(engine, "before_cursor_execute")
    def _stamp(conn, _cursor, _statement, _parameters, _context, _executemany) -> None:
        conn.info[_STATEMENT_STARTED] = time.monotonic()

    @event.listens_for(engine, "handle_error")
    def _name_statement_timeout(context: ExceptionContext) -> OperationalError | None:
        error = context.sqlalchemy_exception
        if statement is None or context.connection is None or not isinstance(error, OperationalError):
            return None
        cancelled = getattr(error.orig, "sqlstate", None) == _PG_QUERY_CANCELED or str(error.orig) == "interrupted"
        started = context.connection.info.get(_STATEMENT_STARTED) if cancelled else None
        # A cancel that came before the timeout was someone else's (e.g. pg_cancel_backend).
        if started is None or time.monotonic() - started < statement.seconds:
            return None
        timeout = WarehouseStatementTimeout(
            error.statement, error.params, error.orig, hide_parameters=error.hide_parameters, ismulti=error.ismulti
        )
        timeout.add_detail(
            f"statement ran longer than the {statement.seconds:g} s statement timeout "
            f"set by {statement.source}, and was cancelled"
        )
        return timeout


def _unavailable_message(where: str, connect: _Timeout | None, exc: Exception) -> str:
    """What `WarehouseUnavailable` says: the server, the timeout if it expired, and the driver's reason."""
    reason = str(exc).strip()
    if connect is not None:
        from psycopg.errors import ConnectionTimeout

        if isinstance(exc, ConnectionTimeout):
            return f"warehouse {where} did not answer within {connect.seconds:g} s ({connect.source}): {reason}"
    return f"could not connect to warehouse {where}: {reason}"


def _display_url(url: URL) -> str:
    """`url` with backend, user, host, port and database only: no password or query, safe to log."""
    backend = url.get_backend_name()
    port = url.port or (_DEFAULT_PORTS.get(backend) if url.host else None)
    shown = URL.create(backend, username=url.username, host=url.host, port=port, database=url.database)
    return shown.render_as_string(hide_password=False)


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

    Raises
    ------
    WarehouseUnavailable
        The warehouse could not be connected to, or did not answer within the
        connect timeout.
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
