"""What one model's health page shows, built from the warehouse reads of `queries`.

The page covers the model's latest intervals (a window of `recent_intervals`):
its decisions, a chart per metric its checks judge (quality, system, data
quality and drift) with control limits, thresholds and breaches, label
coverage, the drift of every feature, and the anomaly detector's scores.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from markupsafe import Markup
from sqlalchemy import Engine

from modelwatch import catalogue
from modelwatch.config import ModelConfig
from modelwatch.health_page import charts, links, queries
from modelwatch.warehouse import schema

# The check vocabulary from the schema: `modelwatch.checks` would import scipy for three names.
THRESHOLD, CONTROL_LIMIT, ISOLATION_FOREST = schema.CHECK_KINDS
VERDICTS = schema.CHECK_STATUSES[:2]
"""Statuses of a check that reached a verdict (``ok``, ``breached``)."""

SAMPLE_UNITS = {"quality": "labels", "system": "requests", "data_quality": "records", "drift": "features tested"}
"""What a metric's ``sample_size`` counts, by catalogue kind."""

SECTIONS = (
    ("quality", "Model quality",
     "The overall value of each interval (all versions and segments), recomputed as labels arrive. "
     "The band is the control limits learnt from the model's own history, the dashed line the models "
     "file's threshold; a red diamond marks a breached check at the value it judged."),
    ("system", "System KPIs", "Volume, latency and errors of every request, from the logs alone."),
    ("data_quality", "Data quality", "Quarantined records and failed data-quality expectations."),
    ("drift", "Drift", "The share of features whose drift tests flagged them, and each feature's tests per "
     "interval (a cell per feature and interval tested)."),
)
"""The metric sections of a model's page: catalogue kind, heading, what it shows."""


@dataclass(frozen=True)
class Figure:
    """A chart and the sentences beneath it."""

    svg: Markup
    captions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """A heading, what its charts show, and the charts."""

    heading: str
    about: str
    figures: list[Figure]


@dataclass(frozen=True)
class DecisionRow:
    """One row of the decision table."""

    interval: str
    interval_label: str
    decision: str
    severity: str | None
    outcome: str | None
    reason: str
    champion_before: str | None
    champion_after: str | None
    run_id: str
    run_href: str


@dataclass(frozen=True)
class BreachRow:
    """One breached check of the window, for the table of breaches."""

    interval_label: str
    check_name: str
    observed: str
    limits: str
    severity: str | None
    reason: str


@dataclass(frozen=True)
class ModelHealth:
    """Everything a model's page shows about its window of intervals."""

    first_label: str
    last_label: str
    interval_count: int
    decision_strip: Markup
    decisions: list[DecisionRow]
    label_coverage: Figure
    sections: list[Section]
    anomaly: Figure | None
    anomaly_pending: str | None
    breaches: list[BreachRow]


@dataclass(frozen=True)
class Overview:
    """A model's line on the index: its latest interval and decision, and its recent decisions as a strip."""

    latest_interval: str
    status: str
    latest_decision: str | None
    latest_decision_reason: str | None
    champion_version: str | None
    decision_strip: Markup


def interval_key(value: datetime) -> str:
    """The ISO 8601 UTC text that names an interval on every chart, whatever type the driver returned."""
    return pd.Timestamp(value).tz_convert("UTC").isoformat()


def model_health(engine: Engine, model: ModelConfig, window: int, airflow_root: str) -> ModelHealth | None:
    """The page of `model` over its latest `window` intervals; None while the model has no run.

    Parameters
    ----------
    engine : Engine
        The warehouse.
    model : ModelConfig
        The configured model.
    window : int
        How many of the latest intervals to show.
    airflow_root : str
        The Airflow UI's root path, for the links to DAG runs (`links.airflow_root`).
    """
    recent, axis, labels = _window(engine, model, window)
    if recent.empty:
        return None
    # Plain datetimes for the drivers: psycopg adapts `datetime`, not pandas' Timestamp.
    since, until = (stamp.to_pydatetime() for stamp in recent["interval_start"].iloc[[0, -1]])
    before = recent["interval_end"].iloc[-1].to_pydatetime()

    checks = _on_axis(queries.check_rows(engine, model.name, since, before), labels)
    values = _on_axis(queries.metric_values(engine, model.name, since, until), labels)
    decisions = _on_axis(queries.decision_timeline(engine, model.name, since), labels)
    drift = _on_axis(queries.drift_tests(engine, model.name, since, until), labels)
    anomaly, anomaly_pending = _anomaly_figure(model, axis, checks)
    return ModelHealth(
        first_label=axis[0].label,
        last_label=axis[-1].label,
        interval_count=len(axis),
        decision_strip=_decision_strip(model, axis, decisions),
        decisions=_decision_rows(model, decisions, airflow_root),
        label_coverage=_label_coverage(model, axis, recent),
        sections=_metric_sections(model, axis, values, checks, _drift_heatmap(model, axis, drift)),
        anomaly=anomaly,
        anomaly_pending=anomaly_pending,
        breaches=_breach_rows(checks),
    )


def overview(engine: Engine, model: ModelConfig, state: dict | None, window: int) -> Overview | None:
    """The index's summary of `model` from its `model_latest_state` row; None while it has no run."""
    if state is None:
        return None
    recent, axis, labels = _window(engine, model, window)
    since = recent["interval_start"].iloc[0].to_pydatetime()
    decisions = _on_axis(queries.decision_timeline(engine, model.name, since), labels)
    return Overview(
        latest_interval=charts.interval_axis([state["latest_interval_start"]])[0].label,
        status=state["status"],
        latest_decision=state["latest_decision"],
        latest_decision_reason=state["latest_decision_reason"],
        champion_version=state["champion_version"],
        decision_strip=_decision_strip(model, axis, decisions),
    )


def _window(engine: Engine, model: ModelConfig, window: int) -> tuple[pd.DataFrame, list[charts.Interval],
                                                                      dict[str, str]]:
    """The model's latest `window` intervals (keyed and labelled, see `_on_axis`), their axis, and its labels."""
    recent = queries.recent_intervals(engine, model.name, window)
    for bound in ("interval_start", "interval_end"):
        recent[bound] = pd.to_datetime(recent[bound], utc=True)
    axis = charts.interval_axis(recent["interval_start"])
    labels = {interval.key: interval.label for interval in axis}
    return _on_axis(recent, labels), axis, labels


def _on_axis(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """`frame`'s rows of intervals on the axis, with their ``interval`` key and axis ``label``."""
    frame = frame.copy()
    frame["interval"] = [interval_key(value) for value in frame["interval_start"]]
    frame = frame[frame["interval"].isin(labels)].reset_index(drop=True)
    frame["label"] = frame["interval"].map(labels)
    return frame


def judged_metrics(model: ModelConfig, checks: pd.DataFrame) -> list[str]:
    """The metrics the model's checks judge, in catalogue order: configured, or found in its check rows."""
    configured = set(model.thresholds) | set(model.checks.metrics or catalogue.monitored(model.task))
    stored = set(checks["metric"].dropna())
    return [name for name in catalogue.names(task=model.task) if name in configured | stored]


def _metric_sections(model: ModelConfig, axis: list[charts.Interval], values: pd.DataFrame,
                     checks: pd.DataFrame, drift_heatmap: Figure | None) -> list[Section]:
    """A section per catalogue kind with a chart per judged metric; the drift heatmap closes the drift section."""
    by_kind: dict[str, list[Figure]] = defaultdict(list)
    for metric in judged_metrics(model, checks):
        spec = catalogue.metric(metric)
        by_kind[spec.kind].append(_metric_figure(model, axis, spec, values, checks[checks["metric"] == metric]))
    if drift_heatmap is not None:
        by_kind["drift"].append(drift_heatmap)
    return [Section(heading, about, by_kind[kind]) for kind, heading, about in SECTIONS if by_kind[kind]]


def _metric_figure(model: ModelConfig, axis: list[charts.Interval], spec: catalogue.MetricSpec,
                   values: pd.DataFrame, checks: pd.DataFrame) -> Figure:
    measured = values[(values["metric"] == spec.name) & values["value"].notna()]
    unit = SAMPLE_UNITS[spec.kind]
    points = [charts.Point(row.interval, float(row.value),
                           f"{row.label}: {spec.name} {charts.number(row.value)} "
                           f"from {row.sample_size:,} {unit}")
              for row in measured.itertuples()]
    svg = charts.line_chart(
        chart_id=f"{model.name}-{spec.name}",
        title=f"{spec.name}: {spec.description}",
        y_label=spec.name,
        axis=axis,
        points=points,
        limits=_limits(checks[checks["check_kind"] == CONTROL_LIMIT], "control limits"),
        thresholds=_limits(checks[checks["check_kind"] == THRESHOLD], "threshold"),
        breaches=_breaches(checks),
        data={"data-metric": spec.name},
    )
    return Figure(svg, _latest_reasons(checks))


def _limits(checks: pd.DataFrame, what: str) -> list[charts.Limits]:
    """The limits of each check row that had any (rows without a verdict often have none)."""
    marks = []
    for row in checks.itertuples():
        low, high = _optional(row.limit_low), _optional(row.limit_high)
        if low is None and high is None:
            continue
        marks.append(charts.Limits(row.interval, low, high, f"{row.label}: {what} {_range(low, high)} ({row.status})"))
    return marks


def _range(low: float | None, high: float | None) -> str:
    """``[0.75, -]``: the allowed range, ``-`` for an open side."""
    return f"[{'-' if low is None else charts.number(low)}, {'-' if high is None else charts.number(high)}]"


def _breaches(checks: pd.DataFrame) -> list[charts.Breach]:
    return [charts.Breach(row.interval, _optional(row.observed), row.check_name, f"{row.check_name}: {row.reason}")
            for row in checks[checks["breached"].astype(bool)].itertuples()]


def _latest_reasons(checks: pd.DataFrame) -> list[str]:
    """Each check's latest verdict in words: why a band or a line is missing, or what it last found."""
    latest = checks.sort_values("interval").groupby("check_name", sort=True).tail(1)
    return [f"{row.check_name} ({row.label}): {row.reason or row.status}" for row in latest.itertuples()]


def _optional(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _label_coverage(model: ModelConfig, axis: list[charts.Interval], recent: pd.DataFrame) -> Figure:
    covered = recent[recent["label_coverage"].notna()]
    points = [charts.Point(row.interval, float(row.label_coverage),
                           f"{row.label}: {charts.percent(row.label_coverage)} of predictions labelled"
                           + ("" if pd.isna(row.labelled_predictions) else f" ({int(row.labelled_predictions):,})"))
              for row in covered.itertuples()]
    svg = charts.line_chart(chart_id=f"{model.name}-label-coverage", title="Label coverage: share of predictions "
                            "with a label so far", y_label="label coverage", axis=axis, points=points,
                            value_format=charts.percent, y_range=(0.0, 1.0), judged=False,
                            data={"data-metric": "label_coverage"})
    return Figure(svg, [f"Labels keep arriving for {model.label_maturity_intervals} intervals after one ends; "
                        "each run recomputes the coverage of those intervals."])


def _drift_heatmap(model: ModelConfig, axis: list[charts.Interval], drift: pd.DataFrame) -> Figure | None:
    if drift.empty:
        return None
    configured = [feature.name for feature in model.features]
    found = set(drift["feature"])
    rows = [name for name in configured if name in found] + sorted(found - set(configured))
    cells = []
    for (feature, interval), tests in drift.groupby(["feature", "interval"], sort=False):
        flagged = int(tests["drifted"].astype(bool).sum())
        described = "; ".join(_drift_test(test) for test in tests.itertuples())
        cells.append(charts.Cell(feature, interval, min(flagged, len(charts.DRIFT_LEVELS) - 1),
                                 f"{feature}, {tests['label'].iloc[0]}: {described}"))
    svg = charts.heatmap(chart_id=f"{model.name}-drift", title="Feature drift: tests flagging each feature",
                         axis=axis, rows=rows, cells=cells)
    return Figure(svg, ["@prediction and @score are the model's outputs. Each cell's tooltip gives every test's "
                        "statistic and limit."])


def _drift_test(test) -> str:
    p_value = _optional(test.adjusted_p_value)
    measured = f"adjusted p {charts.number(p_value)}" if p_value is not None else charts.number(test.statistic)
    verdict = "drifted" if bool(test.drifted) else "ok"
    return f"{test.method} {measured} (limit {charts.number(test.threshold)}) {verdict}"


def _anomaly_figure(model: ModelConfig, axis: list[charts.Interval],
                    checks: pd.DataFrame) -> tuple[Figure | None, str | None]:
    """The anomaly detector's scores, or why it has not judged yet (None, None: it never ran)."""
    rows = checks[checks["check_kind"] == ISOLATION_FOREST]
    if rows.empty:
        return None, None
    judged = rows[rows["status"].isin(VERDICTS) & rows["observed"].notna()]
    if judged.empty:
        return None, rows.sort_values("interval")["reason"].iloc[-1]
    points = [charts.Point(row.interval, float(row.observed), f"{row.label}: {row.reason}")
              for row in judged.itertuples()]
    svg = charts.line_chart(chart_id=f"{model.name}-anomaly", title="Anomaly score of the monitored metrics "
                            "(IsolationForest; lower is stranger)", y_label="anomaly score", axis=axis,
                            points=points, thresholds=_limits(rows, "threshold"), breaches=_breaches(rows),
                            data={"data-metric": ISOLATION_FOREST})
    return Figure(svg, _latest_reasons(rows)), None


def _decision_strip(model: ModelConfig, axis: list[charts.Interval], decisions: pd.DataFrame) -> Markup:
    marks = [charts.Mark(row.interval, row.decision, f"{row.label}: {row.decision}: {row.reason}")
             for row in decisions.itertuples()]
    return charts.decision_strip(chart_id=f"{model.name}-decisions", title="Decision of each interval",
                                 axis=axis, marks=marks)


def _decision_rows(model: ModelConfig, decisions: pd.DataFrame, airflow_root: str) -> list[DecisionRow]:
    return [
        DecisionRow(
            interval=row.interval,
            interval_label=row.label,
            decision=row.decision,
            severity=_text(row.severity),
            outcome=_text(row.outcome),
            reason=row.reason,
            champion_before=_text(row.champion_before),
            champion_after=_text(row.champion_after),
            run_id=row.run_id,
            run_href=links.dag_run_path(airflow_root, model.name, row.run_id),
        )
        for row in decisions.itertuples()
    ]


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _breach_rows(checks: pd.DataFrame) -> list[BreachRow]:
    breached = checks[checks["breached"].astype(bool)].sort_values(["interval", "check_name"])
    rows = []
    for row in breached.itertuples():
        low, high = _optional(row.limit_low), _optional(row.limit_high)
        observed = _optional(row.observed)
        rows.append(BreachRow(
            interval_label=row.label,
            check_name=row.check_name,
            observed="" if observed is None else charts.number(observed),
            limits=_range(low, high),
            severity=_text(row.severity),
            reason=row.reason,
        ))
    return rows
