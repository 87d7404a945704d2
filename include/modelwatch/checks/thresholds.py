"""Threshold checks: the bounds a model's config sets on its metrics.

A threshold has absolute bounds (`min`, `max`), a bound relative to a
baseline (the champion's holdout value in the registry, or the trailing
median of the model's own intervals), or both; the tightest applies.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from modelwatch import catalogue
from modelwatch.checks.rows import (
    BREACHED,
    INSUFFICIENT_HISTORY,
    INSUFFICIENT_LABELS,
    NO_BASELINE,
    NOT_MEASURED,
    OK,
    CheckRow,
    History,
)
from modelwatch.config import MetricThreshold, ModelConfig

KIND = "threshold"


def check_name(metric: str) -> str:
    return f"{KIND}:{metric}"


def relative_bounds(spec: catalogue.MetricSpec, baseline: float, max_worse: float) -> tuple[float | None, float | None]:
    """The range a value may take when it may be at most `max_worse` (a fraction) worse than `baseline`."""
    allowed = abs(baseline) * max_worse
    if spec.better == "higher":
        return baseline - allowed, None
    if spec.better == "lower":
        return None, baseline + allowed
    return baseline - allowed, baseline + allowed


def _tightest(*bounds: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
    lows = [low for low, _ in bounds if low is not None]
    highs = [high for _, high in bounds if high is not None]
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def evaluate(
    model: ModelConfig,
    start: datetime,
    end: datetime,
    history: History,
    champion_reference: dict[str, float],
    metrics: list[str] | None = None,
) -> list[CheckRow]:
    """One row per configured threshold (or per threshold on `metrics`) for the interval.

    Parameters
    ----------
    model : ModelConfig
        Its `thresholds` and `checks` settings.
    start, end : datetime
        The judged interval.
    history : History
        The model's interval values, the judged interval's included.
    champion_reference : dict
        The champion's holdout metrics from the registry (empty when unknown).
    metrics : list of str, optional
        Judge only thresholds on these metrics (re-judging late labels).
    """
    rows = []
    for metric, rule in model.thresholds.items():
        if metrics is not None and metric not in metrics:
            continue
        rows.append(_judge(model, start, end, history, champion_reference, metric, rule))
    return rows


def _judge(
    model: ModelConfig,
    start: datetime,
    end: datetime,
    history: History,
    champion_reference: dict[str, float],
    metric: str,
    rule: MetricThreshold,
) -> CheckRow:
    spec = catalogue.metric(metric)
    observed, size = history.value(start, metric)
    row = CheckRow(
        start, end, check_name(metric), KIND, metric, OK, rule.severity, "", observed=observed,
        sample_size=size, consecutive=rule.consecutive,
    )
    if observed is None:
        return row.but(status=NOT_MEASURED, reason=f"{metric} was not measured in this interval")
    if spec.kind == "quality" and (size or 0) < model.checks.min_labels:
        return row.but(
            status=INSUFFICIENT_LABELS,
            reason=f"{metric} from {size} labels; judged from {model.checks.min_labels} (checks.min_labels)",
        )
    bounds = [(rule.min, rule.max)]
    baseline = None
    notes = []
    if rule.relative_to is not None:
        baseline, missing = _baseline(model, start, history, champion_reference, metric, rule)
        if baseline is None:
            if rule.min is None and rule.max is None:
                status = INSUFFICIENT_HISTORY if rule.relative_to == "trailing_median" else NO_BASELINE
                return row.but(status=status, reason=missing)
            notes.append(missing)
        else:
            bounds.append(relative_bounds(spec, baseline, rule.max_worse))
    low, high = _tightest(*bounds)
    breached = (low is not None and observed < low) or (high is not None and observed > high)
    where = f"[{_fmt(low)}, {_fmt(high)}]"
    against = ""
    if baseline is not None:
        against = f" ({rule.relative_to.replace('_', ' ')} {_fmt(baseline)}, at most {rule.max_worse:.0%} worse)"
    if breached:
        side = "below" if low is not None and observed < low else "above"
        limit = low if side == "below" else high
        reason = f"{metric} {_fmt(observed)} {side} its threshold {_fmt(limit)}{against}"
    else:
        reason = f"{metric} {_fmt(observed)} within {where}{against}"
    if notes:
        reason += "; " + "; ".join(notes)
    return row.but(status=BREACHED if breached else OK, reason=reason, limit_low=low, limit_high=high,
                   baseline=baseline)


def _baseline(
    model: ModelConfig,
    start: datetime,
    history: History,
    champion_reference: dict[str, float],
    metric: str,
    rule: MetricThreshold,
) -> tuple[float | None, str]:
    """The baseline of a relative threshold, or None and why there is none."""
    if rule.relative_to == "champion":
        value = champion_reference.get(metric)
        if value is None:
            return None, f"relative bound not applied: the registry holds no {metric} for the champion"
        return float(value), ""
    past = history.before(start, metric, model.checks.history_intervals)
    if catalogue.metric(metric).kind == "quality":
        past_values = past.values[past.sample_sizes >= model.checks.min_labels]
    else:
        past_values = past.values
    if len(past_values) < model.checks.min_history:
        return None, (
            f"relative bound not applied: {len(past_values)} earlier intervals with {metric}, "
            f"{model.checks.min_history} needed (checks.min_history)"
        )
    return float(np.median(past_values)), ""
