"""A model's monitoring history as TensorBoard scalars: one run per model version.

`export_model` reads what the warehouse holds about one model and writes it
under ``<out>/<model>/`` as TensorBoard event files:

Runs
    ``<out>/<model>/<version>/`` for every version with rows of its own in
    `model_metrics` (a numeric registry version ``3`` becomes ``v3``); a
    blank version goes to ``unversioned``. ``<out>/<model>/all/`` holds the
    rows of all versions together (``model_version = 'all'``: the overall and
    per-segment metrics) and what has no version at all: drift and decisions.
    TensorBoard overlays the runs, so one chart compares the versions with
    the whole.
Tags
    ``quality/<metric>`` and ``kpi/<metric>`` (``kind`` quality / system),
    with ``/segment=<key>=<value>`` for a segment row;
    ``drift/<feature>`` (the PSI, the statistic the drift decision
    thresholds), ``drift/<feature>/<method>`` (the other tests' statistic),
    ``drift/share_drifted`` (drifted features / features tested);
    ``decision/action`` (`DECISION_CODES`, real decisions only, no dry runs).
    Undefined values (SQL NULL) are left out. TensorBoard keeps scalars as
    32-bit floats.
Steps and wall times
    The step is the interval's index since the Unix epoch in units of the
    shortest interval exported: days since 1970-01-01 for a daily model. The
    wall time is the interval's start, so TensorBoard's wall-time axis shows
    dates.

A re-export replaces the model's folder as a whole: the new runs are written
into a staging folder beside ``<out>`` and renamed into place, so
``<out>/<model>`` holds either the previous export or the new one, never a
mix and never a point twice. A TensorBoard started before a re-export keeps
showing what it had read (it does not notice a run's files being replaced):
restart it.
"""

from __future__ import annotations

import difflib
import logging
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import ColumnElement, Engine, Table, inspect, make_url, select, union

from modelwatch import catalogue, settings
from modelwatch.batch import ALL
from modelwatch.warehouse import schema
from modelwatch.warehouse.engine import get_engine, warehouse_url
from modelwatch.warehouse.load import read_frame

log = logging.getLogger(__name__)

DEFAULT_FOLDER = "tensorboard"
"""The export folder's name inside the data folder."""

ALL_VERSIONS_RUN = "all"
UNVERSIONED_RUN = "unversioned"
HEADLINE_DRIFT_METHOD = "psi"
SHARE_DRIFTED_TAG = "drift/share_drifted"
DECISION_TAG = "decision/action"

DECISION_CODES = {"healthy": 0, "alert": 1, "retrain": 2, "rollback": 3, "halt": 4}
"""`decision/action` values: the further from normal operation, the higher."""

POINT_COLUMNS = ["run", "tag", "interval_start", "step", "wall_time", "value", "description"]
"""The columns of `history_points`."""

EPOCH = pd.Timestamp(0, tz=UTC)
Window = tuple[datetime | None, datetime | None]
"""The first interval start included and the first left out; None for no bound."""
# A decision recorded before model_actions stored interval_end, alone in an export, has no length.
FALLBACK_INTERVAL = timedelta(days=1)
# Anything but letters, digits, '.', '_' and '-' in a version would make a strange or unsafe folder name.
_UNSAFE_IN_RUN_NAME = re.compile(r"[^A-Za-z0-9._-]")

if set(DECISION_CODES) != set(schema.DECISIONS):
    raise RuntimeError(f"DECISION_CODES {sorted(DECISION_CODES)} must cover schema.DECISIONS {schema.DECISIONS}")


class ExportError(ValueError):
    """The export cannot be made: no such model, no history, or no warehouse. The message says which."""


@dataclass(frozen=True)
class Export:
    """What `export_model` wrote.

    Attributes
    ----------
    out_dir : Path
        The folder to point TensorBoard at; it holds one folder per exported model.
    model_dir : Path
        ``out_dir / model``, holding one folder per run.
    points : dict of str to int
        Points written per run, by run name.
    first, last : datetime
        Start of the first and of the last interval exported.
    """

    out_dir: Path
    model_dir: Path
    points: dict[str, int]
    first: datetime
    last: datetime

    def summary(self) -> str:
        """Where the export went and how to open it, for the command line."""
        runs = ", ".join(f"{run} ({count} point{'' if count == 1 else 's'})" for run, count in self.points.items())
        return (
            f"wrote {len(self.points)} TensorBoard runs of intervals {self.first:%Y-%m-%d %H:%M} to "
            f"{self.last:%Y-%m-%d %H:%M} UTC into {self.model_dir}: {runs}\n"
            f"open it with: tensorboard --logdir {shlex.quote(str(self.out_dir))}"
        )


def default_out_dir() -> Path:
    """``<data folder>/tensorboard``: where exports go unless told otherwise."""
    return settings.data_dir() / DEFAULT_FOLDER


def export_model(
    model_name: str,
    out_dir: str | Path | None = None,
    since: date | None = None,
    until: date | None = None,
    url: str | None = None,
) -> Export:
    """Write a model's history from the warehouse as TensorBoard runs, replacing its previous export.

    Parameters
    ----------
    model_name : str
        The model, as named in the warehouse.
    out_dir : str or Path, optional
        The TensorBoard log folder; the runs go to ``out_dir / model_name``.
        Default: `default_out_dir`.
    since, until : date, optional
        First and last UTC day (inclusive) whose intervals are exported; default all.
    url : str, optional
        The warehouse URL; default as resolved by `warehouse_url`.

    Returns
    -------
    Export
        The folders written and the points per run.

    Raises
    ------
    ExportError
        `since` is after `until`, there is no warehouse, the model is unknown
        to it, or it has nothing for the model in the chosen days.
    modelwatch.warehouse.engine.WarehouseUnavailable
        The warehouse could not be connected to.
    """
    if since is not None and until is not None and since > until:
        raise ExportError(f"since ({since}) is after until ({until})")
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else default_out_dir()
    resolved = warehouse_url(url)
    engine = _open_warehouse(resolved)
    try:
        points = history_points(engine, model_name, since, until)
        if points.empty:
            raise ExportError(_nothing_to_export(engine, model_name, since, until))
    finally:
        engine.dispose()
    model_dir = out / model_name
    written = _replace_export(points, model_dir)
    log.info("%s: wrote %d points into %s", model_name, sum(written.values()), model_dir)
    starts = points["interval_start"]
    return Export(out, model_dir, written, starts.min().to_pydatetime(), starts.max().to_pydatetime())


def history_points(
    engine: Engine, model_name: str, since: date | None = None, until: date | None = None
) -> pd.DataFrame:
    """Every scalar point of the model's export, as rows.

    Parameters
    ----------
    engine : Engine
        The warehouse.
    model_name : str
        The model.
    since, until : date, optional
        First and last UTC day (inclusive) of interval starts; default all.

    Returns
    -------
    DataFrame
        `POINT_COLUMNS`: the run and tag, the interval start (aware UTC), its
        step, the wall time (the start in seconds since the epoch), the value
        and the tag's description (the same on each of its rows). Ordered by
        run, step and tag; empty when the warehouse holds nothing.

    Raises
    ------
    ExportError
        Two versions would share a run folder (e.g. ``3`` and ``v3``).
    """
    window = _window(since, until)
    parts = [
        part
        for part in (
            _metric_points(engine, model_name, window),
            _drift_points(engine, model_name, window),
            _decision_points(engine, model_name, window),
        )
        if not part.empty
    ]
    if not parts:
        return pd.DataFrame(columns=POINT_COLUMNS)
    points = pd.concat(parts, ignore_index=True)
    points["interval_start"] = pd.to_datetime(points["interval_start"], utc=True)
    lengths = pd.to_datetime(points["interval_end"], utc=True) - points["interval_start"]
    lengths = lengths[lengths > pd.Timedelta(0)]
    length = lengths.min() if not lengths.empty else pd.Timedelta(FALLBACK_INTERVAL)
    since_epoch = points["interval_start"] - EPOCH
    points["step"] = (since_epoch // length).astype("int64")
    points["wall_time"] = since_epoch / pd.Timedelta(seconds=1)
    points["value"] = points["value"].astype(float)
    return points[POINT_COLUMNS].sort_values(["run", "step", "tag"], ignore_index=True)


def run_name(version: str) -> str:
    """The run folder of a `model_metrics.model_version`.

    ``all`` (every version together) keeps its name, a numeric registry version
    gets a ``v`` (``3`` -> ``v3``), characters unsafe in a folder name become
    ``_`` and a blank version is ``unversioned``.
    """
    if version == ALL:
        return ALL_VERSIONS_RUN
    cleaned = _UNSAFE_IN_RUN_NAME.sub("_", version.strip()).strip(".")  # no '..' and no hidden folder
    if not cleaned:
        return UNVERSIONED_RUN
    return f"v{cleaned}" if cleaned.isdigit() else cleaned


def _window(since: date | None, until: date | None) -> Window:
    """`[since, until]` as UTC day bounds: the first start included and the first start left out."""
    first = datetime.combine(since, datetime.min.time(), tzinfo=UTC) if since is not None else None
    after = datetime.combine(until, datetime.min.time(), tzinfo=UTC) + timedelta(days=1) if until is not None else None
    return first, after


def _in_window(table: Table, model_name: str, window: Window) -> list[ColumnElement[bool]]:
    """Conditions selecting the model's rows of `table` whose interval starts in `window`."""
    first, after = window
    conditions = [table.c.model_name == model_name]
    if first is not None:
        conditions.append(table.c.interval_start >= first)
    if after is not None:
        conditions.append(table.c.interval_start < after)
    return conditions


def _metric_points(engine: Engine, model_name: str, window: Window) -> pd.DataFrame:
    """Quality and system metrics: per version into its run, overall and per segment into ``all``."""
    metrics = schema.model_metrics
    frame = read_frame(engine, select(
        metrics.c.interval_start, metrics.c.interval_end, metrics.c.model_version, metrics.c.segment,
        metrics.c.metric, metrics.c.kind, metrics.c.value,
    ).where(*_in_window(metrics, model_name, window), metrics.c.value.is_not(None)))
    if frame.empty:
        return frame
    names = {version: run_name(version) for version in frame["model_version"].unique()}
    _refuse_shared_runs(names)
    frame["run"] = frame["model_version"].map(names)
    prefix = frame["kind"].map({"quality": "quality", "system": "kpi"})
    segment = ("/segment=" + frame["segment"]).where(frame["segment"] != ALL, "")
    frame["tag"] = prefix + "/" + frame["metric"] + segment
    frame["description"] = frame["metric"].map(
        {name: spec.description for name, spec in catalogue.CATALOGUE.items()}
    ).fillna("")
    return frame


def _refuse_shared_runs(names: dict[str, str]) -> None:
    """Raise `ExportError` when two versions map to one run folder: their points would mix."""
    by_run: dict[str, list[str]] = {}
    for version, run in names.items():
        by_run.setdefault(run, []).append(version)
    shared = {run: versions for run, versions in by_run.items() if len(versions) > 1}
    if shared:
        raise ExportError(f"model versions would share TensorBoard runs: {shared}")


def _drift_points(engine: Engine, model_name: str, window: Window) -> pd.DataFrame:
    """Each drift test's statistic per feature, and the share of features drifted, into ``all``."""
    drift = schema.feature_drift
    frame = read_frame(engine, select(
        drift.c.interval_start, drift.c.interval_end, drift.c.feature, drift.c.method,
        drift.c.statistic, drift.c.drifted,
    ).where(*_in_window(drift, model_name, window)))
    if frame.empty:
        return frame
    frame["drifted"] = frame["drifted"].astype(bool)  # SQLite returns 0/1
    headline = frame["method"] == HEADLINE_DRIFT_METHOD
    frame["tag"] = ("drift/" + frame["feature"]).where(headline, "drift/" + frame["feature"] + "/" + frame["method"])
    frame["value"] = frame["statistic"]
    frame["description"] = frame["method"] + " statistic against the reference"
    # Every test of a feature carries the feature's verdict, so a feature counts once.
    verdicts = frame.drop_duplicates(["interval_start", "feature"])
    share = verdicts.groupby(["interval_start", "interval_end"], as_index=False)["drifted"].mean()
    share["tag"] = SHARE_DRIFTED_TAG
    share["value"] = share["drifted"].astype(float)
    share["description"] = catalogue.metric("drifted_feature_share").description
    points = pd.concat([frame, share], ignore_index=True)
    points["run"] = ALL_VERSIONS_RUN
    return points


def _decision_points(engine: Engine, model_name: str, window: Window) -> pd.DataFrame:
    """The decision of each interval as its `DECISION_CODES` number, into ``all``; dry runs left out."""
    actions = schema.model_actions
    frame = read_frame(engine, select(
        actions.c.interval_start, actions.c.interval_end, actions.c.decision,
    ).where(*_in_window(actions, model_name, window), actions.c.mode == "on"))
    if frame.empty:
        return frame
    frame["run"] = ALL_VERSIONS_RUN
    frame["tag"] = DECISION_TAG
    frame["value"] = frame["decision"].map(DECISION_CODES)
    frame["description"] = "decision: " + ", ".join(f"{code} {name}" for name, code in DECISION_CODES.items())
    return frame


def _open_warehouse(url: str) -> Engine:
    """An engine on an existing, migrated warehouse; `ExportError` when there is none."""
    parsed = make_url(url)
    database = parsed.database or ""
    # Connecting would create an empty SQLite file where none was.
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:") and not Path(database).expanduser().exists():
        raise ExportError(f"no warehouse at {database}: no monitoring run has written one yet "
                          "(or set MODELWATCH_WAREHOUSE_URL to the warehouse to read)")
    engine = get_engine(url)
    if not inspect(engine).has_table(schema.model_metrics.name):
        shown = parsed.render_as_string(hide_password=True)
        engine.dispose()
        raise ExportError(f"warehouse {shown} has no ModelWatch tables: no monitoring run has used it yet")
    return engine


def _nothing_to_export(engine: Engine, model_name: str, since: date | None, until: date | None) -> str:
    """Why the export is empty: an unknown model (naming the known ones) or one without history."""
    shown = engine.url.render_as_string(hide_password=True)
    known = _models_in_warehouse(engine)
    if not known:
        return f"unknown model {model_name!r}: the warehouse {shown} has no model's history yet"
    if model_name not in known:
        close = difflib.get_close_matches(model_name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown model {model_name!r}: the warehouse {shown} has models {known}{hint}"
    days = "" if since is None and until is None else f" from {since or 'the start'} to {until or 'the end'}"
    return f"model {model_name!r} has no metrics, drift or decisions{days} in the warehouse {shown}"


def _models_in_warehouse(engine: Engine) -> list[str]:
    """Every model name any run, metric, drift or decision row names, sorted."""
    tables = (schema.monitoring_runs, schema.model_metrics, schema.feature_drift, schema.model_actions)
    statement = union(*(select(table.c.model_name) for table in tables))
    return sorted(read_frame(engine, statement).iloc[:, 0])


def _replace_export(points: pd.DataFrame, model_dir: Path) -> dict[str, int]:
    """Write the runs into a staging folder, then swap it with `model_dir`; points per run.

    The staging folder is a sibling of the log folder (``model_dir.parent``),
    not inside it, so a TensorBoard watching the log folder never sees a
    half-written export, and on the same file system, so the renames are
    atomic. `model_dir` is missing only between the two renames.
    """
    out_dir = model_dir.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-{model_dir.name}-", dir=out_dir.parent))
    fresh, previous = staging / "export", staging / "previous"
    try:
        written = {run: _write_run(group, fresh / run) for run, group in points.groupby("run", sort=True)}
        if model_dir.exists():
            model_dir.rename(previous)
        try:
            fresh.rename(model_dir)
        except OSError:
            if previous.exists():
                previous.rename(model_dir)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _write_run(points: pd.DataFrame, run_dir: Path) -> int:
    """Write one run's points (one event per step, tags in it) into a new event file; the points written."""
    from tensorboardX import FileWriter
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    writer = FileWriter(str(run_dir))
    try:
        scalars_plugin = SummaryMetadata.PluginData(plugin_name="scalars")
        described: set[str] = set()
        for (step, wall_time), rows in points.groupby(["step", "wall_time"], sort=True):
            values = []
            for tag, value, description in zip(rows["tag"], rows["value"], rows["description"], strict=True):
                # TensorBoard takes a tag's metadata from its first point; later points need none.
                metadata = None if tag in described else SummaryMetadata(
                    display_name=tag, summary_description=description, plugin_data=scalars_plugin
                )
                described.add(tag)
                # A Summary built here keeps the tag as is; tensorboardX's add_scalar turns '=' and '@' into '_'.
                values.append(Summary.Value(tag=tag, simple_value=value, metadata=metadata))
            writer.add_summary(Summary(value=values), global_step=int(step), walltime=float(wall_time))
    finally:
        writer.close()
    return len(points)
