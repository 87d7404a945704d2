"""Control limits: is this interval's value where the model's own history says it should be?

Quality metrics are judged with limits that follow the interval's sample
size. Their spread is modelled as ``v / n``: ``n`` labels give a standard
error of ``sqrt(v / n)``, so a metric from 300 labels is allowed to wander
further than one from 30,000. The per-label variance ``v`` is estimated from
the history (``sum n_i (x_i - mean)^2 / (N - 1)``, with the sample-size
weighted mean); for a rate it is at least the binomial ``p (1 - p)``. The
limit is ``k`` standard errors of the difference between the interval and
the history's mean, with ``k`` widened to the Student t quantile of the same
tail probability, as the variance itself is estimated from N intervals.

A small sustained shift hides inside one interval's noise, so the latest
`sustained_intervals` intervals are also pooled (their labels summed) and
judged against the history before them with `sustained_sigma`.

System, data-quality and drift metrics are dominated by day-to-day variation
rather than sampling: their limits are the history's mean plus or minus ``k``
standard deviations (widened the same way), with the binomial spread of the
interval as a floor for rates.

Shares between 0 and 1 (accuracy, AUC, ...) are judged on the log-odds scale
and system KPIs on the log scale, where their noise is nearly symmetric; the
limits stored are translated back to the metric's own units.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from scipy import stats

from modelwatch import catalogue
from modelwatch.checks.rows import (
    BREACHED,
    INSUFFICIENT_HISTORY,
    INSUFFICIENT_LABELS,
    NOT_MEASURED,
    OK,
    CheckRow,
    History,
    MetricHistory,
)
from modelwatch.config import ModelConfig

KIND = "control_limit"


def check_name(metric: str) -> str:
    return f"{KIND}:{metric}"


def widened(sigma: float, intervals: int, sides: int = 1) -> float:
    """`sigma` as the Student t quantile of the same one-sided tail, for a spread estimated from `intervals`.

    A metric judged on both sides (`sides=2`) splits that tail between them, so that it breaches
    as rarely as a one-sided one.
    """
    return float(stats.t.isf(stats.norm.sf(sigma) / sides, df=max(intervals - 1, 1)))


def _sides(spec: catalogue.MetricSpec) -> int:
    return 2 if spec.better == "neither" else 1


def _bounds(spec: catalogue.MetricSpec, center: float, half_width: float) -> tuple[float | None, float | None]:
    if spec.better == "higher":
        return center - half_width, None
    if spec.better == "lower":
        return None, center + half_width
    return center - half_width, center + half_width


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def evaluate(
    model: ModelConfig, start: datetime, end: datetime, history: History, metrics: list[str] | None = None
) -> list[CheckRow]:
    """One row per checked metric (`model.checked_metrics`, or `metrics`) for the interval."""
    chosen = model.checked_metrics if metrics is None else [m for m in model.checked_metrics if m in metrics]
    return [_judge(model, start, end, history, metric) for metric in chosen]


def _judge(model: ModelConfig, start: datetime, end: datetime, history: History, metric: str) -> CheckRow:
    spec = catalogue.metric(metric)
    settings = model.checks
    observed, size = history.value(start, metric)
    row = CheckRow(
        start, end, check_name(metric), KIND, metric, OK, settings.control_limit_severity, "",
        observed=observed, sample_size=size, consecutive=settings.control_limit_consecutive,
    )
    if observed is None:
        return row.but(status=NOT_MEASURED, reason=f"{metric} was not measured in this interval")
    quality = spec.kind == "quality"
    if quality and (size or 0) < settings.min_labels:
        return row.but(
            status=INSUFFICIENT_LABELS,
            reason=f"{metric} from {size} labels; judged from {settings.min_labels} (checks.min_labels)",
        )
    past = _usable(history.before(start, metric, settings.history_intervals), quality, settings.min_labels)
    if len(past) < settings.min_history:
        return row.but(
            status=INSUFFICIENT_HISTORY,
            reason=f"{len(past)} earlier intervals with {metric}; limits need {settings.min_history} "
            "(checks.min_history)",
        )
    if quality:
        scale = _Scale(spec)
        center_on_scale, error = _sample_spread(spec, scale.of_history(past), size)
        k = widened(settings.control_limit_sigma, len(past), _sides(spec))
        low, high = scale.bounds(center_on_scale, k * error)
        score = _standardized(spec.worse(scale.forward(observed, size), center_on_scale), error)
        center = scale.back(center_on_scale)
    else:
        scale = _Scale(spec)
        center_on_scale, error = _interval_spread(spec, scale, scale.of_history(past), size)
        k = widened(settings.control_limit_sigma, len(past), _sides(spec))
        low, high = scale.bounds(center_on_scale, k * error)
        score = _standardized(spec.worse(scale.forward(observed, size), center_on_scale), error)
        center = scale.back(center_on_scale)
    breached = score > k
    reason = (
        f"{metric} {_fmt(observed)} {'outside' if breached else 'within'} its control limits "
        f"[{_fmt(low)}, {_fmt(high)}] ({score:+.1f} standard errors from {_fmt(center)} over {len(past)} intervals"
        + (f", {size} labels" if quality else "")
        + ")"
    )
    row = row.but(
        status=BREACHED if breached else OK, reason=reason, limit_low=low, limit_high=high, baseline=center,
        score=float(score) if math.isfinite(score) else None,
    )
    if quality and not breached and settings.sustained_intervals > 1:
        pooled = _sustained(model, start, history, metric, spec)
        if pooled is not None and not pooled["breached"]:
            return row.but(facts=pooled)
        if pooled is not None:
            # The row then shows the pooled value against the pooled limits, so it reads as breached.
            return row.but(
                status=BREACHED, observed=pooled["pooled"], limit_low=pooled["low"], limit_high=pooled["high"],
                baseline=pooled["center"], score=pooled["score"], sample_size=pooled["labels"], facts=pooled,
                reason=(
                    f"{metric} {_fmt(pooled['pooled'])} over the last {pooled['intervals']} intervals "
                    f"({pooled['labels']} labels) is {_sigmas(pooled['score'])} standard errors worse than "
                    f"{_fmt(pooled['center'])}, outside [{_fmt(pooled['low'])}, {_fmt(pooled['high'])}]: "
                    f"a sustained shift (this interval alone: {_fmt(observed)} from {size} labels, within "
                    f"[{_fmt(low)}, {_fmt(high)}])"
                ),
            )
    return row


def _sigmas(score: float | None) -> str:
    """A score for a reason; None stands for a change from a history that never moved."""
    return "infinitely many" if score is None else f"{score:.1f}"


def _standardized(worse: float, error: float) -> float:
    """`worse` in standard errors; with no spread at all, any change for the worse is infinitely far."""
    if error > 0:
        return worse / error
    return math.inf if worse > 0 else 0.0


def _usable(past: MetricHistory, quality: bool, min_labels: int) -> MetricHistory:
    """The history entries a limit may learn from: for quality metrics, those with enough labels."""
    if not quality:
        return past
    keep = past.sample_sizes >= min_labels
    return MetricHistory(past.values[keep], past.sample_sizes[keep],
                         [s for s, k in zip(past.starts, keep, strict=True) if k])


class _Scale:
    """Where a metric is judged: log-odds for quality metrics between 0 and 1, logarithms for system
    KPIs, the metric itself otherwise.

    Near 0 or 1 the sampling noise of a share is lopsided (an AUC of 0.996 can fall far more than it
    can rise), and latencies, volumes and error rates move by factors rather than by amounts; on these
    scales the noise is nearly symmetric, so limits of k standard errors breach as rarely as they
    should. A share is first kept half a label away from 0 and 1, a KPI half a request above 0.
    """

    def __init__(self, spec: catalogue.MetricSpec):
        self.spec = spec
        self.kind = "log_odds" if spec.bounded else "log" if spec.kind == "system" else "identity"

    def forward(self, value: float, size: int | None) -> float:
        margin = 0.5 / max(size or 1, 1)
        if self.kind == "log_odds":
            share = min(max(value, margin), 1 - margin)
            return math.log(share / (1 - share))
        if self.kind == "log":
            return math.log(max(value, margin if self.spec.rate else 1e-9))
        return value

    def back(self, value: float) -> float:
        if self.kind == "log_odds":
            return 1 / (1 + math.exp(-value))
        return math.exp(value) if self.kind == "log" else value

    def of_history(self, past: MetricHistory) -> MetricHistory:
        values = np.array([self.forward(v, n) for v, n in zip(past.values, past.sample_sizes, strict=True)])
        return MetricHistory(values, past.sample_sizes, past.starts)

    def bounds(self, center: float, half_width: float) -> tuple[float | None, float | None]:
        low, high = _bounds(self.spec, center, half_width)
        return (None if low is None else self.back(low)), (None if high is None else self.back(high))

    def binomial_variance(self, center: float) -> float:
        """One trial's binomial variance on this scale (the delta method for log-odds and logarithms)."""
        share = self.back(center)
        if self.kind == "log_odds":
            return 1 / (share * (1 - share))
        if self.kind == "log":
            return (1 - share) / share
        return share * (1 - share)


def _per_label_variance(spec: catalogue.MetricSpec, past: MetricHistory) -> tuple[float, float]:
    """Sample-size weighted mean of the history (on the judging scale) and one label's variance there."""
    weights = past.sample_sizes.astype(float)
    center = float(np.average(past.values, weights=weights))
    variance = float(np.sum(weights * (past.values - center) ** 2) / max(len(past) - 1, 1))
    if spec.rate:
        variance = max(variance, _Scale(spec).binomial_variance(center))
    return center, variance


def _sample_spread(spec: catalogue.MetricSpec, past: MetricHistory, size: int | None) -> tuple[float, float]:
    """The history's centre and the standard error of an interval of `size` labels against it."""
    center, variance = _per_label_variance(spec, past)
    error = math.sqrt(variance * (1 / max(size or 1, 1) + 1 / float(past.sample_sizes.sum())))
    return center, error


def _interval_spread(
    spec: catalogue.MetricSpec, scale: _Scale, past: MetricHistory, size: int | None
) -> tuple[float, float]:
    """The history's mean and the spread of one new interval around it, both on the judging scale."""
    center = float(np.mean(past.values))
    deviation = float(np.std(past.values, ddof=1)) if len(past) > 1 else 0.0
    if spec.rate and size:
        # A rate cannot be steadier than its own sampling noise, however calm its history was.
        share = min(max(scale.back(center), 1 / size), 1 - 1 / size)
        deviation = max(deviation, math.sqrt(scale.binomial_variance(scale.forward(share, size)) / size))
    # Predicting one new interval: its own spread plus the uncertainty of the mean.
    return center, deviation * math.sqrt(1 + 1 / len(past))


def _sustained(model: ModelConfig, start: datetime, history: History, metric: str, spec) -> dict | None:
    """The latest `sustained_intervals` intervals pooled and judged against the history before them."""
    settings = model.checks
    window = settings.sustained_intervals
    recent = history.recent(start, metric, window)
    if len(recent) < window or (recent.sample_sizes < settings.min_labels).any():
        return None
    past = _usable(history.before(start, metric, settings.history_intervals, exclude=window - 1), True,
                   settings.min_labels)
    if len(past) < settings.min_history:
        return None
    labels = float(recent.sample_sizes.sum())
    pooled = float(np.average(recent.values, weights=recent.sample_sizes.astype(float)))
    scale = _Scale(spec)
    center, variance = _per_label_variance(spec, scale.of_history(past))
    error = math.sqrt(variance * (1 / labels + 1 / float(past.sample_sizes.sum())))
    score = _standardized(spec.worse(scale.forward(pooled, int(labels)), center), error)
    k = widened(settings.sustained_sigma, len(past), _sides(spec))
    low, high = scale.bounds(center, k * error)
    return {
        "intervals": window, "labels": int(labels), "pooled": pooled, "center": scale.back(center),
        "low": low, "high": high,
        "score": float(score) if math.isfinite(score) else None, "limit_sigma": k, "breached": bool(score > k),
    }
