"""IsolationForest over each interval's vector of monitored metrics.

The forest is fitted on the trailing history only, never on the interval it
judges, after each metric is put on the scale of its own history (robust z:
distance from the median in units of the spread). The interval is anomalous
when its score falls below the forest's threshold for the configured
contamination. The reason names the metrics that deviate most from their
history, with their values and typical range, so a person sees why.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from modelwatch import catalogue
from modelwatch.checks.rows import BREACHED, INSUFFICIENT_HISTORY, NOT_MEASURED, OK, CheckRow, History
from modelwatch.config import ModelConfig

KIND = "isolation_forest"
CHECK_NAME = KIND
TREES = 200
SHOWN_METRICS = 3
# Deviations beyond this many spreads all look alike to the trees; the cap keeps one wild value from
# stretching the scale.
MAX_Z = 50.0


def evaluate(model: ModelConfig, start: datetime, end: datetime, history: History) -> list[CheckRow]:
    """The anomaly row of the interval (an empty list when the detector is switched off)."""
    settings = model.checks.isolation_forest
    if not settings.enabled:
        return []
    row = CheckRow(start, end, CHECK_NAME, KIND, None, OK, settings.severity, "", consecutive=settings.consecutive)
    metrics = _judged_metrics(model, start, history)
    past, own = history.vectors(start, metrics, model.checks.history_intervals)
    if own is None or own.dropna().empty:
        return [row.but(status=NOT_MEASURED, reason="no monitored metric was measured in this interval")]
    columns = [c for c in own.dropna().index if past[c].notna().sum() >= settings.min_history]
    past = past[columns].dropna()
    if len(past) < settings.min_history or not columns:
        return [row.but(
            status=INSUFFICIENT_HISTORY,
            reason=f"{len(past)} earlier intervals with every monitored metric; the forest needs "
            f"{settings.min_history} (checks.isolation_forest.min_history)",
        )]
    center, spread = _scale(past)
    # The cap is for the trees; the reason ranks metrics by how far out they really are, so that a metric
    # 150 spreads out is named before one 50 out, and the decision reads the right kind from the first.
    deviation = (own[columns].astype(float) - center) / spread
    own_z = deviation.clip(-MAX_Z, MAX_Z)
    past_z = ((past - center) / spread).clip(-MAX_Z, MAX_Z)
    forest = _forest(settings.contamination).fit(past_z.to_numpy())
    score = float(forest.score_samples(own_z.to_numpy()[None, :])[0])
    threshold = float(forest.offset_)
    breached = score < threshold
    deviating = _most_deviating(own[columns], deviation, past)
    shown = "; ".join(
        f"{d['metric']} {d['value']:.4g} (typical {d['low']:.4g} to {d['high']:.4g})" for d in deviating
    )
    verdict = "anomalous" if breached else "not anomalous"
    reason = (
        f"{verdict} against {len(past)} earlier intervals (score {score:.3f}, threshold {threshold:.3f}); "
        f"furthest from their history: {shown}"
    )
    return [row.but(
        status=BREACHED if breached else OK, reason=reason, observed=score, limit_low=threshold,
        score=score, sample_size=len(past), facts={"deviating": deviating},
    )]


def _judged_metrics(model: ModelConfig, start: datetime, history: History) -> list[str]:
    """The monitored metrics, without quality metrics that have too few labels in this interval."""
    judged = []
    for metric in model.checked_metrics:
        _, size = history.value(start, metric)
        if catalogue.metric(metric).kind == "quality" and (size or 0) < model.checks.min_labels:
            continue
        judged.append(metric)
    return judged


def _scale(past: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Median and spread of each column: 1.4826 MAD, or the standard deviation where that is 0."""
    center = past.median()
    mad = (past - center).abs().median() * 1.4826
    spread = mad.where(mad > 0, past.std(ddof=1))
    # A metric that never moved: any change is large, but not infinite.
    floor = (center.abs() * 0.01).where(center.abs() > 0, 1e-6)
    return center, spread.where(spread > 0, floor).fillna(floor)


def _forest(contamination: float):
    from sklearn.ensemble import IsolationForest

    # A fixed seed: the same history and interval always give the same verdict.
    return IsolationForest(n_estimators=TREES, contamination=contamination, random_state=0)


def _most_deviating(own: pd.Series, own_z: pd.Series, past: pd.DataFrame) -> list[dict]:
    """The metrics furthest from their history (uncapped `own_z`), with their value and the history's 5th-95th
    percentiles."""
    order = own_z.abs().sort_values(ascending=False, kind="stable").index[:SHOWN_METRICS]
    return [
        {
            "metric": metric,
            "kind": catalogue.metric(metric).kind,
            "value": float(own[metric]),
            "z": float(own_z[metric]),
            "low": float(np.percentile(past[metric], 5)),
            "high": float(np.percentile(past[metric], 95)),
        }
        for metric in order
    ]
