"""The facts a decision needs besides the checks: versions, labels, drift, from the warehouse and the registry.

`gather` builds `decision.RunFacts` for one interval. The registry is asked
only what the rules need: the champion, when it was trained, and (only when
quality alerts while a new version serves) a replay of the previous version
on the same labeled requests.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from modelwatch.checks import CheckRow
from modelwatch.config import ModelConfig
from modelwatch.decision import RunFacts, VersionSwitch, metric_kind
from modelwatch.warehouse import queries

log = logging.getLogger(__name__)


def gather(
    model: ModelConfig,
    engine: Engine,
    staging_url: str,
    start: datetime,
    end: datetime,
    loaded: dict,
    rows: list[CheckRow],
) -> RunFacts:
    """The `RunFacts` of an interval.

    Parameters
    ----------
    loaded : dict
        What the `load` task returned: ``critical_failure``,
        ``failed_critical``, ``drifted_features``.
    rows : list of CheckRow
        The run's check rows; a version comparison is made only when a
        quality check alerts.
    """
    from modelwatch import registry

    # A re-run (a backfill over processed days) decides on the champion of the interval's first run.
    champion = queries.champion_moved_since(engine, model.name, start) or registry.champion_version(
        model.registry_name)
    quality_alerting = any(row.alerting and metric_kind(row) == "quality" for row in rows)
    switch = recent_switch(model, engine, staging_url, start, compare=quality_alerting)
    return RunFacts(
        critical_failure=bool(loaded["critical_failure"]),
        failed_critical=list(loaded["failed_critical"]),
        drifted_features=list(loaded["drifted_features"]),
        champion=champion,
        # Counting reads the staged batches of the training window: only when a retrain is in question.
        new_labels=new_labels(model, engine, staging_url, end) if quality_alerting else None,
        min_new_labels=model.retrain.min_new_labels,
        retrain_enabled=model.retrain.enabled,
        rollback_enabled=model.rollback.enabled,
        rollback_window=model.rollback.window_intervals,
        switch=switch,
        served_version=served_version(engine, model, start),
        champion_set_at=champion_set_at(model, engine, champion) if champion else None,
    )


def champion_set_at(model: ModelConfig, engine: Engine, champion: str) -> datetime | None:
    """When a decision of ModelWatch made `champion` the champion: the end of the interval whose recorded
    action did it, else the time in the version's promotion or rollback tag in the registry (which a
    re-decided interval cannot erase)."""
    from modelwatch import registry
    from modelwatch.actions import retrain, rollback

    recorded = queries.version_went_live(engine, model.name, champion)
    if recorded is not None:
        return recorded
    info = registry.get_version(model.registry_name, champion)
    tags = info.tags if info is not None else {}
    moments = [datetime.fromisoformat(tags[tag]) for tag in (retrain.PROMOTED_AT_TAG, rollback.RESTORED_AT_TAG)
               if tags.get(tag)]
    return max(moments) if moments else None


def served_version(engine: Engine, model: ModelConfig, start: datetime) -> str | None:
    """The version that answered most of the interval's requests."""
    served = queries.served_versions(engine, model.name, start, start)
    return None if served.empty else str(served["model_version"].iloc[-1])


def recent_switch(
    model: ModelConfig, engine: Engine, staging_url: str, start: datetime, compare: bool
) -> VersionSwitch | None:
    """The version serving in the interval, if it went live within the rollback window, and its predecessor.

    "Went live" is the first interval whose logs show it serving most
    requests, or its recorded promotion (or restoring rollback) if later.
    With `compare`, both versions' retrain metric is measured: by replaying
    them from the registry on the same labeled requests when it holds both,
    else from each version's own intervals in the warehouse.
    """
    step = model.interval_length
    window = model.rollback.window_intervals
    lookback = start - step * (window + model.checks.history_intervals)
    served = queries.served_versions(engine, model.name, lookback, start)
    if served.empty or served["interval_start"].iloc[-1] != pd.Timestamp(start):
        return None
    current = served["model_version"].iloc[-1]
    changed = served["model_version"] != current
    if not changed.any():
        return None
    last_other = changed[changed].index[-1]
    live_since = served["interval_start"].iloc[last_other + 1].to_pydatetime()
    # A promotion recorded after the logs first show the version (a canary, say) is when it became the champion.
    promoted = queries.version_went_live(engine, model.name, current)
    if promoted is not None and live_since < promoted <= start:
        live_since = promoted
    intervals_live = round((start - live_since) / step) + 1
    if intervals_live > window:
        return None
    previous = str(served["model_version"].iloc[last_other])
    switch = VersionSwitch(current, previous, live_since, intervals_live, model.retrain_metric)
    if not compare:
        return switch
    live = [(live_since + step * k, live_since + step * (k + 1)) for k in range(intervals_live)]
    return _compared(model, engine, staging_url, switch, live, served)


def _compared(model, engine, staging_url, switch: VersionSwitch, live, served: pd.DataFrame) -> VersionSwitch:
    from modelwatch.actions import rollback

    replayed = rollback.compare_versions(
        model, staging_url=staging_url, intervals=live, labels_until=live[-1][1],
        current=switch.version, previous=switch.previous,
    )
    if replayed is not None:
        return VersionSwitch(
            switch.version, switch.previous, switch.live_since, switch.intervals_live, switch.metric,
            previous_metric=replayed["previous"], current_metric=replayed["current"], same_requests=True,
        )
    before = served.loc[served["model_version"] == switch.previous, "interval_start"].tail(switch.intervals_live)
    previous = queries.metric_mean(engine, model.name, switch.metric, [t.to_pydatetime() for t in before],
                                   version=switch.previous)
    current = queries.metric_mean(engine, model.name, switch.metric, [s for s, _ in live], version=switch.version)
    return VersionSwitch(
        switch.version, switch.previous, switch.live_since, switch.intervals_live, switch.metric,
        previous_metric=previous, current_metric=current, same_requests=False,
    )


def new_labels(model: ModelConfig, engine: Engine, staging_url: str, end: datetime) -> int:
    """Labeled predictions of the training window that the champion was not trained on, and that no
    earlier retrain of this model has used (`actions.retrain.new_labels_since_champion`)."""
    from modelwatch.actions import retrain

    retrained = queries.last_retrain_end(engine, model.name, before=end - model.interval_length)
    return retrain.new_labels_since_champion(model, staging_url=staging_url, interval_end=end, since=retrained)
