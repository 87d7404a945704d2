"""Writing one monitoring run into the warehouse, and reading back what runs need.

`load_run` writes everything a run produced in one transaction: the run's row
in `monitoring_runs`, its metrics, drift, profiles, data-quality results and
quarantined records. Loading the same bundle again leaves the same contents;
two loads of the same model never interleave.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Executable,
    Integer,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from modelwatch.batch import safe_text
from modelwatch.warehouse import schema
from modelwatch.warehouse.engine import locked_transaction
from modelwatch.warehouse.schema import UtcDateTime

log = logging.getLogger(__name__)

FRAME_TABLES = (
    "model_metrics",
    "feature_drift",
    "feature_profiles",
    "data_quality_results",
    "quarantined_records",
)
"""Tables a bundle carries as DataFrames, in the order they are written."""

INTERVAL_TABLES = FRAME_TABLES[1:]
"""Tables whose rows for the run's interval are replaced as a whole."""

RUN_KEYS = ("model_name", "interval_start", "interval_end", "run_id")
JSON_COLUMNS = ("damaged_files", "missing_partitions", "history")
UNFINISHED_STATUSES = ("running", "retrying")
LOADED_STATUSES = ("success", "halted")
FAILURE_REASON_CHARS = 4000
LOAD_ATTEMPTS = 5
RETRY_DELAY_S = 0.2
INSERT_CHUNK_ROWS = 5_000

_TRANSIENT_SQLSTATES = {"23505", "40001", "40P01"}  # unique violation, serialization, deadlock
_TRANSIENT_SQLITE_MESSAGES = ("unique constraint failed", "database is locked")


class LoadError(RuntimeError):
    """The warehouse refused a run's rows; nothing of the run was written."""


@dataclass
class RunBundle:
    """Everything one monitoring run writes to the warehouse.

    Parameters
    ----------
    model_name, interval_start, interval_end, run_id:
        The run: a model and its data interval `[interval_start, interval_end)`
        (timezone-aware), and the Airflow run id.
    run:
        Further `monitoring_runs` columns (`status` defaults to 'success';
        `damaged_files` and `missing_partitions` may be lists).
    model_metrics:
        Metric rows. They may cover earlier intervals (quality metrics
        recomputed as late labels arrive). The rows of one interval and kind
        replace every stored row of that interval and kind, keys that no longer
        occur included; the run's own interval is replaced for both kinds even
        when the frame holds none of its rows. Quality rows are the exception
        when the stored ones came from later labels (a larger `labels_as_of`):
        those stay, and the bundle's rows of that interval are dropped.
    labels_as_of:
        When the bundle's quality metrics were computed from the labels known
        (default `interval_end`); fills `labels_as_of` where a metric row has none.
    feature_drift, feature_profiles, data_quality_results, quarantined_records:
        Rows of the run's own interval; they replace all rows of that interval.

    A frame may leave out `model_name`, `interval_start` and `interval_end`
    (taken from the bundle) and any nullable column. None and empty frames
    write nothing (and still clear the interval's rows in the interval tables).
    """

    model_name: str
    interval_start: datetime
    interval_end: datetime
    run_id: str
    run: dict[str, Any] = field(default_factory=dict)
    model_metrics: pd.DataFrame | None = None
    labels_as_of: datetime | None = None
    feature_drift: pd.DataFrame | None = None
    feature_profiles: pd.DataFrame | None = None
    data_quality_results: pd.DataFrame | None = None
    quarantined_records: pd.DataFrame | None = None

    def describe(self) -> str:
        """`model [start, end) run run_id`, for messages."""
        return (
            f"{self.model_name} [{self.interval_start.isoformat()}, "
            f"{self.interval_end.isoformat()}) run {self.run_id}"
        )


@dataclass(frozen=True)
class _Rows:
    """Rows ready for one table: column names and tuples of plain Python values."""

    table: Table
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def load_run(engine: Engine, bundle: RunBundle) -> dict[str, int]:
    """Write a run's results in one transaction, replacing any earlier load of them.

    The rows are checked and converted first (a bad frame raises `ValueError`
    naming the table and column, before the database is touched). The write
    then holds the model's load lock; if it still meets a conflict, a
    serialization failure or a deadlock it is retried from the start, up to
    `LOAD_ATTEMPTS` times.

    Returns
    -------
    Rows written per table (`monitoring_runs` is always 1).

    Raises
    ------
    LoadError
        The database rejected the rows (e.g. a NOT NULL violation); nothing of
        the run was written.
    """
    _check_bundle(bundle)
    run_row = _run_row(bundle)
    frames = {name: _prepare(bundle, name) for name in FRAME_TABLES}
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        try:
            with locked_transaction(engine, f"load:{bundle.model_name}") as connection:
                metrics_written = _write(connection, bundle, run_row, frames)
            break
        except DBAPIError as exc:
            if attempt == LOAD_ATTEMPTS or not _is_transient(exc):
                raise LoadError(
                    f"could not load {bundle.describe()} (attempt {attempt}): {exc.orig}"
                ) from exc
            log.warning("load of %s failed (%s); retrying", bundle.describe(), exc.orig)
            time.sleep(RETRY_DELAY_S * attempt)
    counts = {"monitoring_runs": 1} | {name: len(frames[name].rows) for name in FRAME_TABLES}
    counts["model_metrics"] = metrics_written
    log.info("loaded %s: %s", bundle.describe(), counts)
    return counts


def mark_run_started(
    engine: Engine, model_name: str, start: datetime, end: datetime, run_id: str
) -> None:
    """Record that a run of `model_name` over `[start, end)` began (status 'running').

    Creates the `monitoring_runs` row or resets an existing one's run id,
    status, start and finish times; its counts stay until the run loads.
    """
    _mark_run(
        engine, RunBundle(model_name, start, end, run_id),
        status="running", started_at=datetime.now(UTC), finished_at=None, failure_reason=None,
    )


def mark_run_retrying(
    engine: Engine, model_name: str, start: datetime, end: datetime, run_id: str, reason: str
) -> None:
    """Record that a task of the run failed and waits for its next try, and why.

    Only a run that is still under way changes: when another task of the run
    has already failed it for good, or a newer run owns the interval, the row
    keeps saying so.
    """
    _check_bundle(RunBundle(model_name, start, end, run_id))
    runs = schema.monitoring_runs
    with engine.begin() as connection:
        connection.execute(
            runs.update()
            .where(
                runs.c.model_name == model_name,
                runs.c.interval_start == start,
                runs.c.run_id == run_id,
                runs.c.status.in_(UNFINISHED_STATUSES),
            )
            .values(status="retrying", failure_reason=safe_text(reason)[:FAILURE_REASON_CHARS], finished_at=None)
        )


def mark_run_failed(
    engine: Engine, model_name: str, start: datetime, end: datetime, run_id: str, reason: str
) -> None:
    """Record that a run of `model_name` over `[start, end)` failed, and why.

    A run that failed after its load (while judging, deciding, acting or
    notifying) keeps its `success` or `halted` status: its results are in the
    warehouse and stay history for later intervals; the row says why it ended.
    """
    _check_bundle(RunBundle(model_name, start, end, run_id))
    reason = safe_text(reason)[:FAILURE_REASON_CHARS]
    runs = schema.monitoring_runs
    with engine.begin() as connection:
        ended_after_load = connection.execute(
            runs.update()
            .where(runs.c.model_name == model_name, runs.c.interval_start == start, runs.c.run_id == run_id,
                   runs.c.status.in_(LOADED_STATUSES))
            .values(failure_reason=reason, finished_at=datetime.now(UTC))
        ).rowcount
    if not ended_after_load:
        _mark_run(engine, RunBundle(model_name, start, end, run_id),
                  status="failed", failure_reason=reason, finished_at=datetime.now(UTC))


def _mark_run(engine: Engine, run: RunBundle, **fields: Any) -> None:
    """Upsert the run's `monitoring_runs` row with the given columns, counts untouched."""
    _check_bundle(run)
    row = {name: getattr(run, name) for name in RUN_KEYS} | fields
    with engine.begin() as connection:
        _upsert(connection, schema.monitoring_runs, row)


def read_frame(
    engine: Engine, sql: str | Executable, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run a query and return its rows as a DataFrame (columns as the query names them).

    `sql` is SQL text with `:name` parameters, or an SQLAlchemy statement.
    Timestamps come back as aware UTC values when the statement selects typed
    table columns; plain SQL text on SQLite returns them as text.
    """
    statement = text(sql) if isinstance(sql, str) else sql
    with engine.connect() as connection:
        result = connection.execute(statement, params or {})
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def previous_profiles(engine: Engine, model_name: str, before: datetime, n: int) -> pd.DataFrame:
    """Feature profiles of the `n` latest intervals before `before`, for a drift reference.

    Only intervals whose run succeeded count: a halted or failed run's data is
    no reference. Rows are ordered by interval and feature.
    """
    if n < 1:
        raise ValueError(f"expected n >= 1 intervals (got {n})")
    profiles, runs = schema.feature_profiles, schema.monitoring_runs
    latest = (
        select(runs.c.interval_start)
        .where(
            runs.c.model_name == model_name,
            runs.c.interval_start < before,
            runs.c.status == "success",
            select(profiles.c.feature)
            .where(
                profiles.c.model_name == runs.c.model_name,
                profiles.c.interval_start == runs.c.interval_start,
            )
            .exists(),
        )
        .order_by(runs.c.interval_start.desc())
        .limit(n)
    )
    statement = (
        select(profiles)
        .where(profiles.c.model_name == model_name, profiles.c.interval_start.in_(latest))
        .order_by(profiles.c.interval_start, profiles.c.feature)
    )
    return read_frame(engine, statement)


def unfinished_runs(engine: Engine, model_name: str, since: datetime, before: datetime) -> list[datetime]:
    """Starts of the intervals in `[since, before)` whose run has begun and not ended.

    A run ends when it fails or when its decision is recorded and notified
    (`finished_at` set); a run that has loaded its results but not yet judged
    them is still under way.
    """
    runs = schema.monitoring_runs
    statement = (
        select(runs.c.interval_start)
        .where(
            runs.c.model_name == model_name,
            runs.c.interval_start >= since,
            runs.c.interval_start < before,
            or_(
                runs.c.status.in_(UNFINISHED_STATUSES),
                and_(runs.c.status.in_(LOADED_STATUSES), runs.c.finished_at.is_(None)),
            ),
        )
        .order_by(runs.c.interval_start)
    )
    with engine.connect() as connection:
        return list(connection.execute(statement).scalars())


def mark_run_finished(engine: Engine, model_name: str, start: datetime, run_id: str) -> None:
    """Record that the run of the interval judged, decided and notified: it has ended."""
    runs = schema.monitoring_runs
    with engine.begin() as connection:
        connection.execute(
            runs.update()
            .where(runs.c.model_name == model_name, runs.c.interval_start == start, runs.c.run_id == run_id,
                   runs.c.finished_at.is_(None))
            .values(finished_at=datetime.now(UTC))
        )


def recent_volumes(engine: Engine, model_name: str, before: datetime, n: int) -> list[int]:
    """`rows_read` of the `n` latest successful runs before `before`, oldest first."""
    if n < 1:
        raise ValueError(f"expected n >= 1 intervals (got {n})")
    runs = schema.monitoring_runs
    statement = (
        select(runs.c.rows_read)
        .where(
            runs.c.model_name == model_name,
            runs.c.interval_start < before,
            runs.c.status == "success",
            runs.c.rows_read.is_not(None),
        )
        .order_by(runs.c.interval_start.desc())
        .limit(n)
    )
    with engine.connect() as connection:
        volumes = connection.execute(statement).scalars().all()
    return [int(volume) for volume in reversed(volumes)]


def _check_bundle(bundle: RunBundle) -> None:
    """Refuse a bundle whose identifying fields are missing or inconsistent."""
    for name in ("model_name", "run_id"):
        value = getattr(bundle, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"RunBundle.{name}: expected a non-empty string (got {value!r})")
    for name in ("interval_start", "interval_end"):
        value = getattr(bundle, name)
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(
                f"RunBundle.{name}: expected a timezone-aware datetime (got {value!r})"
            )
    if bundle.labels_as_of is not None and (
        not isinstance(bundle.labels_as_of, datetime) or bundle.labels_as_of.utcoffset() is None
    ):
        raise ValueError(f"RunBundle.labels_as_of: expected a timezone-aware datetime (got {bundle.labels_as_of!r})")
    if bundle.interval_end <= bundle.interval_start:
        raise ValueError(
            f"RunBundle interval is empty: end {bundle.interval_end.isoformat()} is not after "
            f"start {bundle.interval_start.isoformat()}"
        )


def _run_row(bundle: RunBundle) -> dict[str, Any]:
    """The bundle's `monitoring_runs` row, with defaults filled and values checked."""
    table = schema.monitoring_runs
    misplaced = sorted(set(bundle.run) & set(RUN_KEYS))
    if misplaced:
        raise ValueError(f"RunBundle.run: {misplaced} are set on the bundle itself, not in run")
    unknown = sorted(set(bundle.run) - set(table.c.keys()))
    if unknown:
        raise ValueError(
            f"RunBundle.run: unknown monitoring_runs columns {unknown}; "
            f"expected some of {sorted(set(table.c.keys()) - set(RUN_KEYS))}"
        )
    row: dict[str, Any] = {"status": "success"} | {
        name: _plain(value) for name, value in bundle.run.items()
    }
    row |= {name: getattr(bundle, name) for name in RUN_KEYS}
    if row["status"] not in schema.RUN_STATUSES:
        raise ValueError(
            f"RunBundle.run['status']: expected one of {list(schema.RUN_STATUSES)} "
            f"(got {row['status']!r})"
        )
    for name in JSON_COLUMNS:
        if isinstance(row.get(name), list | tuple | dict):
            row[name] = json.dumps(row[name], default=_json_default)
    if row["status"] not in UNFINISHED_STATUSES:
        row.setdefault("finished_at", datetime.now(UTC))
    row.setdefault("failure_reason", None)
    return row


def _plain(value: Any) -> Any:
    """A numpy scalar as the equivalent Python value; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _prepare(bundle: RunBundle, name: str) -> _Rows:
    """Check one of the bundle's frames and convert it to rows of plain Python values."""
    table = schema.metadata.tables[name]
    frame = getattr(bundle, name)
    if frame is None:
        return _Rows(table, (), [])
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"RunBundle.{name}: expected a pandas DataFrame (got {type(frame).__name__})"
        )
    if frame.empty:
        return _Rows(table, (), [])
    unknown = [column for column in frame.columns if column not in table.c]
    if unknown:
        raise ValueError(
            f"{name}: unknown columns {unknown}; expected some of {list(table.c.keys())}"
        )
    values = {column: _convert(frame[column], table.c[column], name) for column in frame.columns}
    if name == "model_metrics":
        as_of = bundle.labels_as_of or bundle.interval_end
        values["labels_as_of"] = [value or as_of for value in values.get("labels_as_of", [None] * len(frame))]
    identity = {
        "model_name": bundle.model_name,
        "interval_start": bundle.interval_start,
        "interval_end": bundle.interval_end,
    }
    for column, value in identity.items():
        values.setdefault(column, [value] * len(frame))
    _check_identity(name, values, identity)
    _check_vocabulary(name, values)
    columns = tuple(values)
    rows = list(zip(*values.values(), strict=True))
    _check_unique(table, columns, rows)
    return _Rows(table, columns, rows)


def _convert(series: pd.Series, column: Column[Any], table_name: str) -> list[Any]:
    """Values of `series` as plain Python values fit for `column`; missing values as None."""
    try:
        if isinstance(column.type, UtcDateTime):
            return _timestamps(series)
        if isinstance(column.type, Boolean):
            return pd.array(series, dtype="boolean").to_numpy(dtype=object, na_value=None).tolist()
        if isinstance(column.type, Integer):
            return pd.array(series, dtype="Int64").to_numpy(dtype=object, na_value=None).tolist()
        if isinstance(column.type, Double):
            return pd.array(series, dtype="Float64").to_numpy(dtype=object, na_value=None).tolist()
        return [_text(value) for value in series.to_numpy(dtype=object)]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{table_name}.{column.name}: {exc}") from None


def _timestamps(series: pd.Series) -> list[datetime | None]:
    """Timezone-aware timestamps as UTC datetimes; naive ones are refused."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        values = series.dt.tz_convert(UTC)
    elif series.dtype == object and all(
        isinstance(value, datetime) and value.utcoffset() is not None for value in series.dropna()
    ):
        values = pd.to_datetime(series, utc=True)
    else:
        raise ValueError(f"expected timezone-aware timestamps (got dtype {series.dtype})")
    return [None if pd.isna(value) else value.to_pydatetime() for value in values]


def _text(value: Any) -> str | None:
    """A text cell: strings made safe (`batch.safe_text`), lists and mappings as JSON, missing as None.

    Values from log records are quarantined upstream when they hold NUL or
    unpaired surrogates; this is the last guard for everything else (e.g.
    failure reasons quoting them), so that both databases store the same text.
    """
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict | list | tuple | np.ndarray):
        return json.dumps(value, default=_json_default)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    """JSON fallback for numpy values and timestamps."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _check_identity(name: str, values: dict[str, list[Any]], identity: dict[str, Any]) -> None:
    """Rows must belong to the bundle's model and, except metrics, to its interval."""
    checked = ("model_name",) if name == "model_metrics" else tuple(identity)
    for column in checked:
        strangers = {value for value in values[column] if value != identity[column]}
        if strangers:
            shown = sorted(str(value) for value in strangers)[:3]
            raise ValueError(
                f"{name}.{column}: every row must have the bundle's {column} "
                f"{identity[column]!s} (found {shown})"
            )
    if name == "model_metrics":
        for column in ("interval_start", "interval_end"):
            if any(value is None for value in values[column]):
                raise ValueError(f"model_metrics.{column}: missing in some rows")


def _check_vocabulary(name: str, values: dict[str, list[Any]]) -> None:
    """Columns with a fixed vocabulary may only hold its words (or NULL)."""
    for (table_name, column), allowed in schema.ALLOWED_VALUES.items():
        if table_name != name or column not in values:
            continue
        wrong = {value for value in values[column] if value is not None and value not in allowed}
        if wrong:
            raise ValueError(
                f"{name}.{column}: expected one of {list(allowed)} (got {sorted(wrong)[:5]})"
            )


def _check_unique(table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """A frame must not repeat a key: the database would refuse the whole run."""
    key = [columns.index(name) for name in schema.key_columns(table)]
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        values = tuple(row[i] for i in key)
        if values in seen:
            shown = dict(zip(schema.key_columns(table), values, strict=True))
            raise ValueError(f"{table.name}: more than one row for key {shown}")
        seen.add(values)


def _write(
    connection: Connection,
    bundle: RunBundle,
    run_row: dict[str, Any],
    frames: dict[str, _Rows],
) -> int:
    """All statements of one load, inside the caller's transaction; returns metric rows written."""
    _upsert(connection, schema.monitoring_runs, run_row)
    written = _replace_metrics(connection, bundle, frames["model_metrics"])
    for name in INTERVAL_TABLES:
        table = schema.metadata.tables[name]
        connection.execute(
            delete(table).where(
                table.c.model_name == bundle.model_name,
                table.c.interval_start == bundle.interval_start,
            )
        )
        _insert(connection, frames[name])
    return written


def _replace_metrics(connection: Connection, bundle: RunBundle, rows: _Rows) -> int:
    """Replace the stored metrics of every (interval, kind) the bundle covers; see `RunBundle`.

    Runs inside the load's locked transaction, so that of two runs recomputing
    one interval the one with the later labels wins whichever loads last.
    """
    table = schema.model_metrics
    at = {name: rows.columns.index(name) for name in ("interval_start", "kind")} if rows.rows else {}
    scopes = {(row[at["interval_start"]], row[at["kind"]]) for row in rows.rows}
    scopes |= {(bundle.interval_start, kind) for kind in schema.METRIC_KINDS}
    quality_starts = sorted(start for start, kind in scopes if kind == "quality")
    stored = _latest_labels_as_of(connection, bundle.model_name, quality_starts)
    as_of = bundle.labels_as_of or bundle.interval_end
    kept_stored = {start for start in quality_starts if start in stored and stored[start] > as_of}
    if kept_stored:
        log.info("kept metrics made from later labels for %s", ", ".join(s.isoformat() for s in sorted(kept_stored)))
    replaced = sorted(scope for scope in scopes if not (scope[1] == "quality" and scope[0] in kept_stored))
    for start, kind in replaced:
        connection.execute(
            delete(table).where(
                table.c.model_name == bundle.model_name, table.c.interval_start == start, table.c.kind == kind
            )
        )
    fresh = [row for row in rows.rows if (row[at["interval_start"]], row[at["kind"]]) in set(replaced)]
    _insert(connection, _Rows(rows.table, rows.columns, fresh))
    return len(fresh)


def _latest_labels_as_of(connection: Connection, model_name: str, starts: list[datetime]) -> dict[datetime, datetime]:
    """For each given interval start, the latest `labels_as_of` of its stored quality metrics."""
    if not starts:
        return {}
    metrics = schema.model_metrics
    statement = (
        select(metrics.c.interval_start, func.max(metrics.c.labels_as_of))
        .where(
            metrics.c.model_name == model_name,
            metrics.c.kind == "quality",
            metrics.c.interval_start.in_(starts),
            metrics.c.labels_as_of.is_not(None),
        )
        .group_by(metrics.c.interval_start)
    )
    return {start: as_of for start, as_of in connection.execute(statement).all()}


def _upsert(connection: Connection, table: Table, row: dict[str, Any]) -> None:
    """Insert `row`, or update the columns it names if its key exists."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    key = schema.key_columns(table)
    statement = insert(table).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=key,
        set_={name: statement.excluded[name] for name in row if name not in key},
    )
    connection.execute(statement)


def _insert(connection: Connection, rows: _Rows) -> None:
    """Bulk-insert rows: COPY on PostgreSQL, chunked executemany elsewhere."""
    if not rows.rows:
        return
    if connection.dialect.name == "postgresql":
        _copy(connection, rows)
        return
    for chunk in _chunks(rows.rows, INSERT_CHUNK_ROWS):
        connection.execute(
            rows.table.insert(), [dict(zip(rows.columns, row, strict=True)) for row in chunk]
        )


def _copy(connection: Connection, rows: _Rows) -> None:
    """Stream rows into a PostgreSQL table with COPY, in the current transaction.

    Driver errors are raised as SQLAlchemy's, like those of any other statement.
    """
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(rows.table.name),
        sql.SQL(", ").join(sql.Identifier(name) for name in rows.columns),
    )
    driver_connection = connection.connection.driver_connection
    dbapi = connection.dialect.loaded_dbapi
    try:
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows.rows:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            statement.as_string(driver_connection), None, exc, dbapi.Error
        ) from exc


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of `items` of at most `size` elements."""
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


def _is_transient(exc: DBAPIError) -> bool:
    """Whether retrying the transaction could succeed: a race, not bad data."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _TRANSIENT_SQLSTATES
    message = str(exc.orig).lower()
    return any(fragment in message for fragment in _TRANSIENT_SQLITE_MESSAGES)


# ---------------------------------------------------------------- checks and decisions

CHECK_COLUMNS = (
    "check_name", "check_kind", "metric", "status", "severity", "reason", "observed", "limit_low", "limit_high",
    "baseline", "score", "sample_size", "streak", "breached_since", "alerting",
)


def write_check_results(
    engine: Engine, model_name: str, interval_start: datetime, run_id: str, rows: Sequence[dict[str, Any]]
) -> int:
    """Store one run's check rows: the interval's replace its earlier rows; earlier intervals' are upserted.

    Rows a later run judged (`judged_in` after this run's interval: quality
    checks re-judged with later labels) stay, whether of this interval or of
    an earlier one, as the metrics made from later labels do.

    Parameters
    ----------
    rows : sequence of dict
        `checks.CheckRow.to_dict()` of every row the run judged, its own
        interval's and those of earlier intervals it re-judged.

    Returns
    -------
    int
        Rows written.
    """
    table = schema.check_results
    stored = [_check_row(model_name, interval_start, run_id, row) for row in rows]
    _check_vocabulary("check_results", {
        name: [row[name] for row in stored] for name in ("check_kind", "status", "severity")
    })
    written = 0
    with locked_transaction(engine, f"judge:{model_name}") as connection:
        connection.execute(
            delete(table).where(
                table.c.model_name == model_name,
                table.c.interval_start == interval_start,
                or_(table.c.judged_in.is_(None), table.c.judged_in <= interval_start),
            )
        )
        later = {
            (start, name)
            for start, name in connection.execute(
                select(table.c.interval_start, table.c.check_name).where(
                    table.c.model_name == model_name, table.c.judged_in > interval_start
                )
            )
        }
        for row in stored:
            if (row["interval_start"], row["check_name"]) in later:
                continue
            _upsert(connection, table, row)
            written += 1
    return written


def _check_row(model_name: str, judged_in: datetime, run_id: str, row: dict[str, Any]) -> dict[str, Any]:
    values = {name: _finite(_plain(row[name])) for name in CHECK_COLUMNS}
    values["reason"] = _text(values["reason"])
    return {
        "model_name": model_name,
        "interval_start": row["interval_start"],
        "interval_end": row["interval_end"],
        **values,
        "breached": row["status"] == "breached",
        "judged_in": judged_in,
        "run_id": run_id,
        "checked_at": datetime.now(UTC),
    }


def record_decision(engine: Engine, row: dict[str, Any]) -> None:
    """Store a decision, replacing the earlier one of its model, interval and mode.

    Parameters
    ----------
    row : dict
        `model_actions` columns: at least ``model_name``, ``interval_start``,
        ``interval_end``, ``mode``, ``decision``, ``reason``, ``run_id``;
        ``checks``, ``condition`` and ``facts`` may be lists or dicts.
    """
    values = {name: _json_text(value) if name in ("checks", "condition", "facts") else value
              for name, value in row.items()}
    values["reason"] = _text(values["reason"])
    values["decided_at"] = datetime.now(UTC)
    _check_vocabulary("model_actions", {name: [values[name]] for name in ("decision", "mode")})
    actions = schema.model_actions
    with locked_transaction(engine, f"judge:{values['model_name']}") as connection:
        statement = (
            actions.update()
            .where(actions.c.model_name == values["model_name"],
                   actions.c.interval_start == values["interval_start"], actions.c.mode == values["mode"])
            .values(**{k: v for k, v in values.items() if k not in ("model_name", "interval_start", "mode")})
        )
        if connection.execute(statement).rowcount == 0:
            connection.execute(actions.insert().values(**values))


def claim_decision(engine: Engine, model_name: str, interval_start: datetime, mode: str, run_id: str) -> bool:
    """Mark the interval's decision as being acted on by `run_id`; False when another run decided it since.

    The run that decided may claim again (a retry, a cleared task): its action is idempotent on the interval.
    """
    actions = schema.model_actions
    with engine.begin() as connection:
        return bool(connection.execute(
            actions.update()
            .where(actions.c.model_name == model_name, actions.c.interval_start == interval_start,
                   actions.c.mode == mode, actions.c.run_id == run_id)
            .values(outcome="acting")
        ).rowcount)


def update_decision(engine: Engine, model_name: str, interval_start: datetime, mode: str, **fields: Any) -> None:
    """Fill in what a decision's action did (outcome, versions, notification) on its stored row."""
    actions = schema.model_actions
    values = {name: _json_text(value) if name in ("checks", "condition", "facts") else value
              for name, value in fields.items()}
    for name in ("detail", "notification"):
        if name in values:
            values[name] = _text(values[name])
    with engine.begin() as connection:
        updated = connection.execute(
            actions.update()
            .where(actions.c.model_name == model_name, actions.c.interval_start == interval_start,
                   actions.c.mode == mode)
            .values(**values)
        ).rowcount
    if updated == 0:
        raise LoadError(f"no decision stored for {model_name} {interval_start.isoformat()} ({mode})")


def _finite(value: Any) -> Any:
    """A float that is not a number or infinite as None: no limit, no score."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return _text(json.dumps(value, sort_keys=True, default=_json_default))
