"""A warehouse that does not answer fails a run within the timeouts, with an error that says so."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from modelwatch import pipeline
from modelwatch.warehouse import engine as warehouse
from modelwatch.warehouse.engine import WarehouseStatementTimeout, WarehouseUnavailable

# Upper bounds on a hang, not speed targets: each is the timeout plus generous slack.
CONNECT_BOUND_S = 8.0
STATEMENT_BOUND_S = 3.0
NEVER_ENDS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a server accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the thread notices `stop`
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for connection in accepted:
            connection.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_silent_warehouse_fails_the_run_within_the_connect_timeout(silent_port, monkeypatch):
    monkeypatch.setenv(warehouse.CONNECT_TIMEOUT_ENV, "2")
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{silent_port}/x"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    began = time.monotonic()
    with pytest.raises(WarehouseUnavailable) as caught:
        pipeline.mark_started("credit_risk", start, start.replace(day=2), "run-1", warehouse_url=url)
    elapsed = time.monotonic() - began
    message = str(caught.value)
    assert elapsed < CONNECT_BOUND_S, f"took {elapsed:.1f} s"
    assert f"postgresql://postgres@127.0.0.1:{silent_port}/x did not answer within 2 s" in message
    assert warehouse.CONNECT_TIMEOUT_ENV in message
    assert "hunter2" not in message
    assert warehouse.warehouse_url(url) not in pipeline._ENGINES


def test_connect_timeout_in_the_url_wins_over_the_environment(silent_port, monkeypatch):
    monkeypatch.setenv(warehouse.CONNECT_TIMEOUT_ENV, "60")
    engine = warehouse.get_engine(f"postgresql://postgres@127.0.0.1:{silent_port}/x?connect_timeout=2")
    began = time.monotonic()
    try:
        with pytest.raises(WarehouseUnavailable, match=r"within 2 s \(connect_timeout in the URL\)"):
            engine.connect()
    finally:
        engine.dispose()
    assert time.monotonic() - began < CONNECT_BOUND_S


def test_refused_connection_is_unavailable_at_any_checkout(closed_port):
    engine = warehouse.get_engine(f"postgresql://postgres@127.0.0.1:{closed_port}/x")
    try:
        for _ in range(2):
            with pytest.raises(WarehouseUnavailable, match=f"could not connect to warehouse .*:{closed_port}/x: "):
                engine.connect()
    finally:
        engine.dispose()


@pytest.mark.parametrize("variable", [warehouse.CONNECT_TIMEOUT_ENV, warehouse.STATEMENT_TIMEOUT_ENV])
@pytest.mark.parametrize("value", ["0", "-5", "ten", "nan", "inf"])
def test_bad_timeout_is_refused_naming_the_variable(monkeypatch, tmp_path, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be a positive number of seconds, got '{value}'"):
        warehouse.get_engine(f"sqlite:///{tmp_path / 'w.db'}")


@pytest.mark.postgres
def test_postgres_statement_timeout_cancels_a_long_statement(postgres_database, monkeypatch):
    monkeypatch.setenv(warehouse.STATEMENT_TIMEOUT_ENV, "1")
    engine = warehouse.get_engine(postgres_database)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "1s"
            assert connection.execute(text("SHOW timezone")).scalar() == "UTC"
            began = time.monotonic()
            with pytest.raises(WarehouseStatementTimeout) as caught:
                connection.execute(text("SELECT pg_sleep(5)"))
            elapsed = time.monotonic() - began
            connection.rollback()
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert elapsed < STATEMENT_BOUND_S, f"took {elapsed:.1f} s"
    assert isinstance(caught.value, OperationalError)
    assert f"1 s statement timeout set by {warehouse.STATEMENT_TIMEOUT_ENV}" in str(caught.value)


@pytest.mark.postgres
def test_postgres_lock_wait_ends_at_the_statement_timeout(postgres_database, monkeypatch):
    monkeypatch.setenv(warehouse.STATEMENT_TIMEOUT_ENV, "1")
    holder, waiter = warehouse.get_engine(postgres_database), warehouse.get_engine(postgres_database)
    try:
        with warehouse.locked_transaction(holder, "migrate"):
            began = time.monotonic()
            with pytest.raises(WarehouseStatementTimeout), warehouse.locked_transaction(waiter, "migrate"):
                pass
            assert time.monotonic() - began < STATEMENT_BOUND_S
    finally:
        holder.dispose()
        waiter.dispose()


@pytest.mark.postgres
def test_postgres_options_in_the_url_are_kept_and_win(postgres_database, monkeypatch):
    monkeypatch.setenv(warehouse.STATEMENT_TIMEOUT_ENV, "1")
    options = "-c%20statement_timeout%3D2500%20-c%20search_path%3Dpublic"
    engine = warehouse.get_engine(f"{postgres_database}?options={options}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "2500ms"
            assert connection.execute(text("SHOW search_path")).scalar() == "public"
            assert connection.execute(text("SHOW timezone")).scalar() == "UTC"
    finally:
        engine.dispose()


def test_sqlite_statement_timeout_interrupts_a_long_statement(monkeypatch, tmp_path):
    monkeypatch.setenv(warehouse.STATEMENT_TIMEOUT_ENV, "1")
    engine = warehouse.get_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with engine.connect() as connection:
            began = time.monotonic()
            with pytest.raises(WarehouseStatementTimeout) as caught:
                connection.execute(text(NEVER_ENDS))
            elapsed = time.monotonic() - began
            # The next statement gets its own deadline.
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert elapsed < STATEMENT_BOUND_S, f"took {elapsed:.1f} s"
    assert "(sqlite3.OperationalError) interrupted" in str(caught.value)
    assert f"1 s statement timeout set by {warehouse.STATEMENT_TIMEOUT_ENV}" in str(caught.value)
