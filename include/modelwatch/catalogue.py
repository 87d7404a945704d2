"""The metric catalogue: every metric ModelWatch measures or judges, once.

One entry per metric: its name as stored in `model_metrics.metric` (or as
derived from the run tables), its kind, the model tasks it exists for, and
which direction is better. The metrics code, the validation of threshold
keys in the models file, the checks and the reports all read it, so a
metric's name is written in one place.

Kinds:

- ``quality``: needs labels; its ``sample_size`` is the labeled predictions.
- ``system``: every request, ok or error (volume, latency, errors).
- ``data_quality``: from the interval's validation and quarantine.
- ``drift``: from the interval's drift tests.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["quality", "system", "data_quality", "drift"]
Better = Literal["higher", "lower", "neither"]

CLASSIFICATION = "binary_classification"
REGRESSION = "regression"
ALL_TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the catalogue.

    Attributes
    ----------
    name : str
        The name stored in `model_metrics.metric` and used as a threshold key.
    kind : {"quality", "system", "data_quality", "drift"}
        Where the value comes from.
    tasks : tuple of str
        The model tasks the metric exists for.
    better : {"higher", "lower", "neither"}
        Which direction is an improvement; ``neither`` for a value that is
        wrong both ways (traffic volume).
    description : str
        One line for the docs and the reasons of checks.
    rate : bool
        A proportion of ``sample_size`` trials, so its standard error is the
        binomial one.
    monitored : bool
        Judged by control limits and the anomaly detector unless a model's
        `checks.metrics` lists others.
    primary : bool
        The metric retraining compares challenger and champion on, per task.
    bounded : bool
        A quality metric whose values lie between 0 and 1: control limits judge
        it on the log-odds scale, where its sampling noise is nearly symmetric
        even close to 0 or 1.
    """

    name: str
    kind: MetricKind
    tasks: tuple[str, ...]
    better: Better
    description: str
    rate: bool = False
    monitored: bool = False
    primary: bool = False
    bounded: bool = False

    def worse(self, observed: float, reference: float) -> float:
        """How far `observed` is on the bad side of `reference` (negative: the good side).

        For ``neither`` metrics any distance is bad.
        """
        if self.better == "higher":
            return reference - observed
        if self.better == "lower":
            return observed - reference
        return abs(observed - reference)


def _quality(name: str, task: str, better: Better, description: str, **flags: bool) -> MetricSpec:
    return MetricSpec(name, "quality", (task,), better, description, **flags)


def _share(name: str, better: Better, description: str, **flags: bool) -> MetricSpec:
    """A classification quality metric between 0 and 1."""
    return MetricSpec(name, "quality", (CLASSIFICATION,), better, description, bounded=True, **flags)


CATALOGUE: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _share("accuracy", "higher", "share of labeled predictions that were right", rate=True, monitored=True),
        _share("precision", "higher", "share of predicted positives that were positive", rate=True),
        _share("recall", "higher", "share of actual positives predicted positive", rate=True),
        _share("f1", "higher", "harmonic mean of precision and recall"),
        _share("auc_roc", "higher", "area under the ROC curve of the scores", monitored=True, primary=True),
        _quality("log_loss", CLASSIFICATION, "lower", "mean negative log-likelihood of the scores"),
        _share("brier_score", "lower", "mean squared error of the scores"),
        _share("calibration_error", "lower", "expected calibration error over 10 score bins"),
        _share("positive_rate", "neither", "share of answered requests predicted positive", rate=True),
        _quality("mae", REGRESSION, "lower", "mean absolute error", monitored=True, primary=True),
        _quality("rmse", REGRESSION, "lower", "root mean squared error", monitored=True),
        _quality("mape", REGRESSION, "lower", "mean absolute percentage error (non-zero labels)"),
        _quality("r2", REGRESSION, "higher", "coefficient of determination"),
        MetricSpec("request_count", "system", ALL_TASKS, "neither", "requests logged in the interval",
                   monitored=True),
        MetricSpec("error_rate", "system", ALL_TASKS, "lower", "share of requests answered with an error",
                   rate=True, monitored=True),
        MetricSpec("throughput_mean_rps", "system", ALL_TASKS, "neither", "requests per second of the interval"),
        MetricSpec("throughput_peak_rps", "system", ALL_TASKS, "neither", "busiest minute's requests per second"),
        MetricSpec("latency_p50_ms", "system", ALL_TASKS, "lower", "median latency"),
        MetricSpec("latency_p95_ms", "system", ALL_TASKS, "lower", "95th percentile latency", monitored=True),
        MetricSpec("latency_p99_ms", "system", ALL_TASKS, "lower", "99th percentile latency", monitored=True),
        MetricSpec("latency_max_ms", "system", ALL_TASKS, "lower", "slowest request"),
        MetricSpec("quarantined_share", "data_quality", ALL_TASKS, "lower",
                   "share of the interval's records quarantined", rate=True, monitored=True),
        MetricSpec("failed_expectations", "data_quality", ALL_TASKS, "lower",
                   "data-quality expectations that failed"),
        MetricSpec("critical_failed_expectations", "data_quality", ALL_TASKS, "lower",
                   "critical data-quality expectations that failed"),
        MetricSpec("drifted_feature_share", "drift", ALL_TASKS, "lower",
                   "share of monitored features flagged as drifted", monitored=True),
    )
}
"""Every metric by name."""

LATENCY_QUANTILES = {"latency_p50_ms": 0.50, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def metric(name: str) -> MetricSpec:
    """The catalogue entry of `name`.

    Raises
    ------
    KeyError
        No such metric; the message names the nearest one.
    """
    if name not in CATALOGUE:
        raise KeyError(unknown_metric_message(name, list(CATALOGUE)))
    return CATALOGUE[name]


def names(kind: MetricKind | None = None, task: str | None = None) -> list[str]:
    """Metric names in catalogue order, optionally of one kind and one task."""
    return [
        spec.name
        for spec in CATALOGUE.values()
        if (kind is None or spec.kind == kind) and (task is None or task in spec.tasks)
    ]


def monitored(task: str) -> list[str]:
    """The metrics judged by control limits and anomaly detection by default for a task."""
    return [spec.name for spec in CATALOGUE.values() if spec.monitored and task in spec.tasks]


def primary(task: str) -> str:
    """The metric retraining compares models on for a task."""
    (name,) = [spec.name for spec in CATALOGUE.values() if spec.primary and task in spec.tasks]
    return name


def unknown_metric_message(name: str, valid: list[str]) -> str:
    """``unknown metric 'auc' (did you mean 'auc_roc'?)``, listing the valid names when none is near."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {valid}"
    return f"unknown metric {name!r} ({hint})"


def check_metric_for_task(name: str, task: str) -> None:
    """Raise ValueError unless `name` is a catalogue metric that exists for `task`.

    The message names the nearest valid metric of the task.
    """
    valid = names(task=task)
    if name in valid:
        return
    if name in CATALOGUE:
        spec = CATALOGUE[name]
        same_kind = names(spec.kind, task)
        raise ValueError(
            f"metric {name!r} exists for {', '.join(spec.tasks)} models, not {task}"
            f" ({spec.kind} metrics of {task}: {', '.join(same_kind)})"
        )
    raise ValueError(unknown_metric_message(name, valid))
