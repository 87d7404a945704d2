"""Push each run's findings to a Prometheus Pushgateway, as gauges Prometheus scrapes from there.

A run pushes its interval's rows as the warehouse holds them after `load` and
`decide`: the system KPIs (overall and per segment), the overall quality
metrics with the models file's absolute quality thresholds, the drifted-feature
share and the recorded decisions. docs/prometheus.md lists every gauge.

Grouping and replacement
------------------------
Each model has one group, ``job="modelwatch", model=<name>``, pushed with PUT
(`prometheus_client.push_to_gateway`), which replaces every series of the
group. A re-run of the interval therefore replaces its earlier push, and a
series the interval no longer has (a segment value that disappeared, a
version no longer served) goes with it instead of lingering.

The interval is not part of the grouping key. The Pushgateway keeps a group
until someone deletes it, and Prometheus scrapes every group as current: a key
per interval would leave a group per day forever, each series of every past
day looking live. The interval is a value instead:
``modelwatch_interval_start_timestamp_seconds`` (and ``…_end_…``) say which
interval the group's values are for.

So the group holds the model's latest interval. A re-run of an older interval
(a backfill) pushes nothing once a later interval of the model is loaded: it
would make last month's values, and last month's decision, look like now.
The warehouse keeps the history; the gateway shows the present.

Dry runs
--------
The push projects the interval's warehouse rows, whichever run makes it. The
measured values are the same whatever the `actions` mode (a dry run loads
them alike), so they are pushed in both. The decision gauges carry a ``mode``
label with each mode's decision recorded for the interval: a dry run adds its
decision as ``mode="dry_run"`` beside the interval's real one and never
replaces it. The shipped alerting rules act on ``mode="on"`` only.

Failures
--------
A push that fails (the gateway down, refusing, too slow, answering with an
HTTP error) logs a warning naming the URL and the error and returns: it never
fails the monitoring run. Every connect and read of a push has a timeout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from sqlalchemy import Engine, select

from modelwatch import catalogue, facts
from modelwatch.batch import ALL
from modelwatch.config import ModelConfig
from modelwatch.warehouse import queries, schema
from modelwatch.warehouse.load import read_frame

log = logging.getLogger(__name__)

JOB = "modelwatch"
"""The ``job`` of every group ModelWatch pushes."""

LOADED_STATUSES = ("success", "halted")
"""Run statuses of an interval whose rows are in the warehouse."""

UNKNOWN_VERSION = "unknown"
"""The ``version`` label when the interval shows no served version and no champion was recorded."""

SEVERITY_LEVELS = {None: 0, "warning": 1, "critical": 2}
"""``modelwatch_decision_severity``: healthy 0, warning 1, critical 2."""

SYSTEM_GAUGES: dict[str, tuple[str, dict[str, str], float]] = {
    "request_count": ("modelwatch_requests", {}, 1.0),
    "error_rate": ("modelwatch_error_ratio", {}, 1.0),
    "throughput_mean_rps": ("modelwatch_throughput_requests_per_second", {"statistic": "mean"}, 1.0),
    "throughput_peak_rps": ("modelwatch_throughput_requests_per_second", {"statistic": "peak"}, 1.0),
    **{name: ("modelwatch_latency_seconds", {"quantile": f"{quantile:g}"}, 1e-3)
       for name, quantile in catalogue.LATENCY_QUANTILES.items()},
    "latency_max_ms": ("modelwatch_latency_seconds", {"quantile": "1"}, 1e-3),
}
"""Each system KPI of the catalogue as a gauge: its name, its own labels and the factor to base units
(Prometheus measures time in seconds, so latencies are converted from milliseconds)."""

GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "modelwatch_interval_start_timestamp_seconds": ("Start of the interval the group's values are for.", ()),
    "modelwatch_interval_end_timestamp_seconds": ("End (exclusive) of the interval the group's values are for.", ()),
    "modelwatch_requests": ("Requests logged in the interval.", ("version", "segment")),
    "modelwatch_error_ratio": ("Share of the interval's requests answered with an error.", ("version", "segment")),
    "modelwatch_throughput_requests_per_second": (
        "Requests per second: the interval's mean, or its busiest minute's.", ("version", "segment", "statistic")),
    "modelwatch_latency_seconds": (
        "Latency quantile of the interval's requests (quantile 1: the slowest).",
        ("version", "segment", "quantile")),
    "modelwatch_quality": (
        "A model-quality metric of the interval, from the labels joined so far.", ("version", "segment", "metric")),
    "modelwatch_quality_threshold": (
        "An absolute bound on a quality metric from the models file.", ("metric", "bound")),
    "modelwatch_drifted_feature_ratio": ("Share of monitored features flagged as drifted.", ("version",)),
    "modelwatch_decision": (
        "1 for the decision recorded for the interval in this actions mode, 0 for the others.",
        ("version", "mode", "decision")),
    "modelwatch_decision_severity": (
        "Severity of the recorded decision: 0 healthy, 1 warning, 2 critical.", ("version", "mode")),
}
"""Every gauge pushed: help text and labels (the group adds ``job`` and ``model``)."""


@dataclass(frozen=True)
class Publication:
    """What a call of `publish` did.

    Attributes
    ----------
    pushed : bool
        Whether the gateway now holds the interval's values.
    detail : str
        What was pushed, or why nothing was.
    series : int
        Series pushed (0 when nothing was).
    """

    pushed: bool
    detail: str
    series: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def grouping_key(model_name: str) -> dict[str, str]:
    """The labels (besides ``job``) naming the model's group: one group per model, whatever the interval."""
    return {"model": model_name}


def publish(engine: Engine, model: ModelConfig, start: datetime, end: datetime, url: str,
            timeout_s: float) -> Publication:
    """Push the interval's findings to the Pushgateway at `url`, replacing the model's group.

    Parameters
    ----------
    engine : Engine
        The warehouse, holding the interval's loaded rows and recorded decisions.
    model : ModelConfig
        The model; gives its name and its quality thresholds.
    start, end : datetime
        The interval, aware UTC.
    url : str
        The Pushgateway, e.g. ``http://pushgateway:9091``.
    timeout_s : float
        Seconds each connect and read of the push may take.

    Returns
    -------
    Publication
        Not pushed when the interval is not loaded, when a later interval is
        (a backfill), or when the push failed; a failure is also logged as a
        warning naming `url` and the error.
    """
    latest = _latest_loaded_interval(engine, model.name, start)
    if latest is None:
        return _skipped(model, start, "its rows are not loaded")
    if latest > start:
        return _skipped(model, start, f"the later interval from {latest.isoformat()} is loaded, and the gateway "
                                      "shows the latest one")
    registry = interval_registry(engine, model, start, end)
    series = sum(len(family.samples) for family in registry.collect())
    try:
        push_to_gateway(url, job=JOB, registry=registry, grouping_key=grouping_key(model.name), timeout=timeout_s)
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        log.warning("%s %s: metrics NOT pushed to the Pushgateway at %s: %s: %s (the monitoring run goes on)",
                    model.name, start.isoformat(), url, type(error).__name__, error)
        return Publication(False, f"push to {url} failed: {type(error).__name__}: {error}")
    log.info("%s %s: %d series pushed to the Pushgateway at %s", model.name, start.isoformat(), series, url)
    return Publication(True, f"{series} series pushed to {url}", series)


def _skipped(model: ModelConfig, start: datetime, why: str) -> Publication:
    detail = f"not pushed: {why}"
    log.info("%s %s: %s", model.name, start.isoformat(), detail)
    return Publication(False, detail)


def _latest_loaded_interval(engine: Engine, model_name: str, start: datetime) -> datetime | None:
    """The start of the model's latest loaded interval from `start` on, or None if there is none."""
    runs = schema.monitoring_runs
    statement = (
        select(runs.c.interval_start)
        .where(runs.c.model_name == model_name, runs.c.interval_start >= start,
               runs.c.status.in_(LOADED_STATUSES))
        .order_by(runs.c.interval_start.desc())
        .limit(1)
    )
    with engine.connect() as connection:
        return connection.execute(statement).scalar()


def interval_registry(engine: Engine, model: ModelConfig, start: datetime, end: datetime) -> CollectorRegistry:
    """The interval's findings as gauges in a registry of their own (never the process's global one).

    Parameters
    ----------
    engine : Engine
        The warehouse holding the interval's rows.
    model : ModelConfig
        The model; gives its name and its quality thresholds.
    start, end : datetime
        The interval, aware UTC.

    Returns
    -------
    CollectorRegistry
        Every gauge of `GAUGES`, with a series per value the interval has.
        Values the warehouse holds as null or NaN (a quality metric without
        labels, a latency without requests) are left out, not pushed as NaN.
    """
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in GAUGES.items()}
    decisions = {mode: queries.decision(engine, model.name, start, mode) for mode in schema.ACTION_MODES}
    version = _judged_version(engine, model, start, decisions)

    gauges["modelwatch_interval_start_timestamp_seconds"].set(start.timestamp())
    gauges["modelwatch_interval_end_timestamp_seconds"].set(end.timestamp())
    rows = _interval_metrics(engine, model.name, start)
    for row in rows.loc[rows["kind"] == "system"].itertuples():
        if row.metric in SYSTEM_GAUGES and _finite(row.value):
            name, labels, factor = SYSTEM_GAUGES[row.metric]
            gauges[name].labels(version=version, segment=row.segment, **labels).set(row.value * factor)
    for row in rows.loc[(rows["kind"] == "quality") & (rows["segment"] == ALL)].itertuples():
        if _finite(row.value):
            gauges["modelwatch_quality"].labels(version=version, segment=ALL, metric=row.metric).set(row.value)
    for metric, rule in model.thresholds.items():
        if catalogue.metric(metric).kind == "quality":
            for bound in ("min", "max"):
                if getattr(rule, bound) is not None:
                    gauges["modelwatch_quality_threshold"].labels(metric=metric, bound=bound).set(
                        getattr(rule, bound))
    drifted = _drifted_feature_share(engine, model.name, start)
    if drifted is not None:
        gauges["modelwatch_drifted_feature_ratio"].labels(version=version).set(drifted)
    for mode, recorded in decisions.items():
        if recorded is None:
            continue
        for decision in schema.DECISIONS:
            gauges["modelwatch_decision"].labels(version=version, mode=mode, decision=decision).set(
                int(decision == recorded["decision"]))
        gauges["modelwatch_decision_severity"].labels(version=version, mode=mode).set(
            SEVERITY_LEVELS[recorded["severity"]])
    return registry


def _judged_version(engine: Engine, model: ModelConfig, start: datetime, decisions: dict[str, dict | None]) -> str:
    """The version the run judged: the one that served most of the interval, else the champion it recorded."""
    served = facts.served_version(engine, model, start)
    champions = [recorded["from_version"] for recorded in decisions.values() if recorded and recorded["from_version"]]
    return served or next(iter(champions), UNKNOWN_VERSION)


def _interval_metrics(engine: Engine, model_name: str, start: datetime) -> pd.DataFrame:
    """The interval's `model_metrics` rows over all versions (overall and per segment)."""
    metrics = schema.model_metrics
    statement = select(metrics.c.segment, metrics.c.metric, metrics.c.kind, metrics.c.value).where(
        metrics.c.model_name == model_name, metrics.c.interval_start == start, metrics.c.model_version == ALL,
    )
    return read_frame(engine, statement)


def _drifted_feature_share(engine: Engine, model_name: str, start: datetime) -> float | None:
    """``drifted_feature_share`` of the interval as the checks read it, or None when no feature was tested."""
    values = queries.interval_values(engine, model_name, start, start)
    share = values.loc[values["metric"] == "drifted_feature_share", "value"]
    return float(share.iloc[0]) if len(share) and _finite(share.iloc[0]) else None


def _finite(value) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(value)
